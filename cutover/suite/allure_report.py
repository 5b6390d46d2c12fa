"""The offline HTML report: the pinned Allure 3 found, the results' metadata written, the single file rendered.

Apart from the operator log that writes it because the report is an external program's output
(``allure generate``, pinned in tools/allure and installed by scripts/bootstrap.sh so a run needs
no network): finding it, configuring its categories and saying in one line why no report was made.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from cutover.core.redact import redact

PINNED_ALLURE = Path("tools") / "allure" / "node_modules" / ".bin" / "allure"


def allure_command(configured: str | None) -> Path | None:
    """--allure-bin when given; else the pinned install of a checkout run from its root, else PATH.

    Looked up from the working directory, not the package: a plain ``pip install .`` has no tools/."""
    if configured is not None:
        return Path(configured)
    if PINNED_ALLURE.exists():
        return PINNED_ALLURE.resolve()
    found = shutil.which("allure")
    return Path(found) if found is not None else None


CATEGORIES = [
    {"name": "Cutover check failed", "matchedStatuses": ["failed"]},
    {"name": "Setup or infrastructure error", "matchedStatuses": ["broken"]},
    {"name": "Needs an operator", "matchedStatuses": ["skipped"], "messageRegex": ".*needs operator.*"},
    {"name": "Skipped", "matchedStatuses": ["skipped"]},
]


def write_results_metadata(results: Path, environment: Mapping[str, str], build: str,
                           verdict: str = "Patient tenant cutover") -> None:
    """environment.properties, executor.json and categories.json: what Allure shows beside the tests."""
    results.mkdir(parents=True, exist_ok=True)
    (results / "environment.properties").write_text(
        "".join(f"{k}={str(v).replace(chr(10), ' ')}\n" for k, v in environment.items()))
    (results / "executor.json").write_text(json.dumps(
        {"name": "cutover-suite", "type": "local", "buildName": build, "reportName": verdict}))
    (results / "categories.json").write_text(json.dumps(CATEGORIES, indent=2))


def render_html(results: Path, out_dir: Path, allure: Path | None, title: str = "Patient tenant cutover",
                single_file: bool = True, attach: tuple[str, ...] = ()) -> tuple[Path | None, str]:
    """Single-file HTML with the pinned Allure 3 (offline); (path, "") or (None, why not).

    The categories go in the config: Allure 3 reads ``categories.json`` from the results but groups
    by its own defaults ("Product errors") unless the config names them, so a failed check, a setup
    error and an unanswered manual check would all have landed in one undifferentiated list.
    ``attach`` names files in ``out_dir`` shown as the report's own attachments (the operator log)."""
    if allure is None or not allure.exists():
        return None, (f"not generated: {allure or PINNED_ALLURE} is missing; run scripts/bootstrap.sh (it installs "
                      "the pinned Allure) or pass --allure-bin")
    rc = out_dir / "allurerc.mjs"
    rc.write_text(f'export default {{ name: {json.dumps(title)}, categories: {json.dumps(CATEGORIES)}, '
                  f'globalAttachments: {json.dumps(list(attach))}, '
                  f'plugins: {{ awesome: {{ options: {{ singleFile: {json.dumps(single_file)}, '
                  'reportLanguage: "en" } } } };\n')
    report_dir = out_dir / "allure-report"
    try:
        proc = subprocess.run([str(allure), "generate", str(results), "-c", str(rc), "-o", str(report_dir)],
                              capture_output=True, text=True, timeout=300, check=False, cwd=out_dir)
    except subprocess.TimeoutExpired:
        return None, "not generated: allure generate took over 300 s"
    finally:
        rc.unlink(missing_ok=True)
    html = report_dir / "index.html"
    if proc.returncode != 0 or not html.exists():
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        return None, f"not generated: allure generate exited {proc.returncode}: {redact(last)}"
    return html, ""
