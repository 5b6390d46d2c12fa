"""The evidence bundle: every run's artifacts directory gets evidence.json, and `cutover evidence verify`
names each artifact that was edited or lost since the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core import evidence
from cutover.core.options import resolve
from cutover.core.plan import DEFAULT_PLAN
from cutover.core.redact import register_secret
from cutover.reference.version import module_version
from cutover.suite.bundle import cutover_command
from tests.support import REHEARSAL

ALL_PASS = "".join(f"A{i}: {{result: pass, observation: 'A{i} seen working end to end'}}\n" for i in range(11, 20))


def verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cutover.cli", "evidence", "verify", str(directory)],
                          capture_output=True, text=True, timeout=120, check=False)


def bundle(tmp_path: Path) -> Path:
    (tmp_path / "operator-log.md").write_text("# Operator log\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("<html></html>")
    evidence.write(tmp_path, {"operator_log_md": tmp_path / "operator-log.md",
                              "allure_html": tmp_path / "sub" / "index.html", "journal": None},
                   {"verdict": "READY"})
    return tmp_path


def test_an_untouched_bundle_verifies(tmp_path: Path) -> None:
    done = verify(bundle(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "EVIDENCE VERIFIED: 2 files match" in done.stdout


@pytest.mark.parametrize(("damage", "named"), [
    (lambda d: (d / "operator-log.md").write_text("# Operator log: edited\n"), "operator-log.md: differs"),
    (lambda d: (d / "sub" / "index.html").unlink(), "sub/index.html: missing"),
    (lambda d: (d / "evidence.json").write_text((d / "evidence.json").read_text().replace("READY", "NOT READY")),
     "evidence.json: its contents were edited"),
])
def test_an_edited_or_missing_artifact_is_named(tmp_path: Path, damage: Callable[[Path], object], named: str) -> None:
    damage(bundle(tmp_path))
    done = verify(tmp_path)
    assert done.returncode == 1, done.stdout
    assert f"MISMATCH {named}" in done.stdout
    assert "EVIDENCE DOES NOT VERIFY" in done.stdout


def test_each_damaged_file_is_named_not_only_the_first(tmp_path: Path) -> None:
    bundle(tmp_path)
    (tmp_path / "operator-log.md").write_text("x")
    (tmp_path / "sub" / "index.html").unlink()
    done = verify(tmp_path)
    assert done.returncode == 1
    assert "operator-log.md: differs" in done.stdout and "sub/index.html: missing" in done.stdout


def test_a_path_leaving_the_bundle_is_refused(tmp_path: Path) -> None:
    bundle(tmp_path)
    body = json.loads((tmp_path / "evidence.json").read_text())
    body["files"]["operator_log_md"]["path"] = "../../etc/passwd"
    body["bundle_sha256"] = evidence._digest(body)
    (tmp_path / "evidence.json").write_text(json.dumps(body))
    done = verify(tmp_path)
    assert done.returncode == 1 and "is not a path inside the bundle" in done.stdout


@pytest.mark.parametrize("content", [None, "not json", "[]"])
def test_no_bundle_is_a_usage_error(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "evidence.json").write_text(content)
    done = verify(tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("cutover: error: ")


def test_a_rehearsal_bundles_its_evidence_and_verify_catches_an_edit(
        pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    args = example(**REHEARSAL)
    (pytester.path / "answers.yaml").write_text(ALL_PASS)
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", "--answers=answers.yaml", *args)
    assert result.ret == 0, result.stdout.str()
    latest = pytester.path / "artifacts" / "latest"
    body = json.loads((latest / "evidence.json").read_text())
    files = body["files"]
    for role in ("cutover_report", "operator_log_md", "operator_log_json", "journal", "allure_html", "plan",
                 "snapshot_manifest"):
        assert files[role] is not None, role
        assert (latest / files[role]["path"]).is_file(), role
    assert (latest / "plan.toml").read_bytes() == DEFAULT_PLAN.read_bytes()
    assert body["plan"]["sha256"] == evidence.sha256_file(DEFAULT_PLAN)
    assert body["cutover_command"] == f"bundled {module_version()}"
    assert body["passed"] == body["required"] == 21 and body["not_passed"] == []
    assert body["snapshot"]["timestamp"] and body["times"]["restore_s"] is not None
    assert body["times"]["started_at"] and body["times"]["finished_at"] and body["suite_version"]
    assert verify(latest).returncode == 0

    log = latest / "operator-log.json"
    log.write_text(log.read_text().replace('"failed"', '"passed"') + " ")
    done = verify(latest)
    assert done.returncode == 1 and "operator-log.json: differs" in done.stdout, done.stdout


def test_the_cutover_command_is_the_bundled_version_or_the_operators_command_masked() -> None:
    assert cutover_command(resolve({}, {}, {})) == f"bundled {module_version()}"
    register_secret("tok-9f8e7d")
    given = resolve({"cutover_cmd": "TOKEN=tok-9f8e7d python scripts/cutover_patient_tenant.py --execute"}, {}, {})
    assert cutover_command(given) == "--cutover-cmd TOKEN=*** python scripts/cutover_patient_tenant.py --execute"
