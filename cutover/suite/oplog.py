"""The operator log (runbook step 6) and the Allure report that goes with it, in artifacts/<timestamp>/.

Written once per run by the controller at session end, also when the run failed: a failed
rehearsal's log is the one an operator most needs. Every file is swept for secrets before the HTML
report is rendered from the results (the single-file HTML embeds them encoded, where a later sweep
could not see them), and again after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cutover.core import db
from cutover.core.errors import CutoverError
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.core.private import make_private, private_dir, write_private
from cutover.core.redact import mask_url, redact
from cutover.reference import report as reports
from cutover.suite import bundle, forecast
from cutover.suite.catalogue import NOT_APPLICABLE, SET_B, Catalogue
from cutover.suite.manual.answers import Answer, Journal
from cutover.suite.rehearsal import Record, load_record
from cutover.suite.state import RunState
from cutover.suite.verdict import NOT_CONFIGURED

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
WORDS = {"passed": "PASS", "pass": "PASS", "failed": "FAIL", "fail": "FAIL", "skipped": "SKIP", "skip": "SKIP",
         NOT_APPLICABLE: "N/A", NOT_CONFIGURED: "NOT CONFIGURED"}
CATEGORIES = [
    {"name": "Cutover check failed", "matchedStatuses": ["failed"]},
    {"name": "Setup or infrastructure error", "matchedStatuses": ["broken"]},
    {"name": "Needs an operator", "matchedStatuses": ["skipped"], "messageRegex": ".*needs operator.*"},
    {"name": "Skipped", "matchedStatuses": ["skipped"]},
]


@dataclass(frozen=True)
class CheckRow:
    """One line of the A1-A21 table."""

    check: str
    title: str
    kind: str
    result: str
    observation: str = ""
    operator: str = ""
    at: str = ""


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path.cwd(), capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def server_version(url: str | None) -> str:
    """A --db-url target's PostgreSQL version (the rehearsal records a sandbox's): what the report's
    reader compares with production's; never a reason for the log to be missing."""
    if url is None:
        return "unknown"
    try:
        with db.connection(url, read_only=True, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except Exception as exc:  # an unreachable target is already the verdict's setup error
        return f"unknown ({type(exc).__name__})"
    return str(row[0]) if row else "unknown"


def _redact_json(value: Any) -> Any:
    """Every string of a parsed JSON document redacted. Its text is not what was said: a password
    with a quote or a non-ASCII letter is escaped there (``p\\u00e4ss``), where no mask finds it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_json(v) for k, v in value.items()}
    return value


def _redact_file_text(path: Path, text: str) -> str:
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError:
            return redact(text)
        clean = _redact_json(data)
        return text if clean == data else json.dumps(clean, indent=2, default=str)
    if path.suffix == ".jsonl":
        lines = []
        for line in text.splitlines():
            try:
                lines.append(json.dumps(_redact_json(json.loads(line))) if line.strip() else line)
            except ValueError:
                lines.append(redact(line))
        return "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    return redact(text)


def sweep_secrets(root: Path) -> int:
    """Redact every text file under ``root`` in place (JSON by its strings); returns how many files changed."""
    changed = 0
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        clean = _redact_file_text(path, text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")
            changed += 1
    return changed


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


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def markdown(log: Mapping[str, Any]) -> str:
    """The human half of the operator log: what the runbook's step 6 asks for, in its order."""
    r = log["rehearsal"] or {}
    bound = log.get("rollback_time_bound") or {}
    lines = [f"# Operator log: {log['verdict']}", ""]
    if log.get("setup_error"):
        lines.append(f"- setup error: {log['setup_error']}")
    if log.get("interrupted_at"):
        lines.append(f"- interrupted at: {log['interrupted_at']}")
    if log.get("answers_warning"):
        lines.append(f"- {log['answers_warning']}")
    for check, why in (log.get("not_applicable") or {}).items():
        lines.append(f"- {check} {why}")
    if log.get("next_step"):
        lines += ["## Next step", "", "```", *log["next_step"], "```", ""]
    lines += [f"- run: {log['started_at']} to {log['finished_at']}, exit status {log['exit_status']}",
             f"- command: `{log['command']}`",
             f"- operator: {log['operator']}", f"- git: {log['environment'].get('git_sha', 'unknown')}",
             f"- target: {r.get('target') or log['environment'].get('target', '-')}",
             f"- snapshot: {r.get('snapshot') or '-'}"
             + (f" (restored by the earlier run {r['restored_by_run']}: this run found the target restored; its "
                "snapshot timestamp and restore time below are that run's)" if r.get("restored_by_run") else ""),
             f"- snapshot timestamp: {r.get('snapshot_timestamp') or '-'}",
             f"- PostgreSQL: the snapshot was dumped from {r.get('snapshot_source') or 'an unstated version'}, "
             f"rehearsed on {r.get('postgres') or log['environment'].get('postgres', '-')}"
             + (f" ({r['major_note']})" if r.get("major_note") else ""),
             f"- restore wall-clock: {_fmt_s(r.get('restore_s'))}"
             + (f" (measured on {r['restore_measured_on']})" if r.get("restore_measured_on") else ""),
             *([f"- roles created for the restore (NOLOGIN, sandbox only; the snapshot's policies, owners or "
                f"grants name them): {', '.join(r['created_roles'])}"] if r.get("created_roles") else []),
             f"- dry-run verdict: {r.get('dry_run') or '-'}"
             + (f" ({'; '.join(r['blockers'])})" if r.get("blockers") else ""),
             f"- execute duration: {_fmt_s(r.get('execute_s'))} ({r.get('execute_via') or '-'})",
             f"- report path: {r.get('report_path') or log.get('report_path') or '-'}"]
    if bound:
        lines.append(f"- rollback time bound: {bound['total_s'] / 60:.1f} min = restore {bound['restore_s']:.1f} s + "
                     f"revert deploys {bound['revert_deploys_s'] // 60} min + smoke {bound['smoke_s'] // 60} min "
                     f"(runbook budget {bound['budget_s'] // 60} min: "
                     f"{'within' if bound['within_budget'] else 'OVER'}; restore measured on "
                     f"{bound.get('restore_measured_on', 'unknown')})")
    html = log["allure"]["html"]
    lines += [f"- Allure report: [{html}]({html})" if html else f"- Allure report: {log['allure']['note']}",
              f"- Allure results: {log['allure']['results']}", f"- journal: {log['journal']}", "",
              "## Checks A1-A21", "", "| check | kind | result | title | observation | operator | at |",
              "|---|---|---|---|---|---|---|"]
    for c in log["checks"]:
        obs = str(c["observation"]).replace("|", "\\|").replace("\n", " ")
        word = WORDS.get(c["result"], c["result"].upper())
        lines.append(f"| {c['check']} | {c['kind']} | {word} | {c['title']} | {obs} | "
                     f"{c['operator']} | {c['at']} |")
    lines += ["", "## Timeline", "", "| step | started | seconds | status | detail |", "|---|---|---|---|---|"]
    for t in log["timeline"]:
        lines.append(f"| {t['step']} | {t['started_at']} | {t['seconds']} | {t['status']} | {t['detail']} |")
    if log.get("window_timeline"):
        lines += ["", "## Window timeline (T+ since the cutover's commit, from the database)", "", "```",
                  *log["window_timeline"], "```"]
    lines += ["", "## Summary", "", "```", *log["summary_lines"], "```", ""]
    return "\n".join(lines)


def write(artifacts_root: Path, stamp: str, log: dict[str, Any], results: Path, journal: Path,
          allure: Path | None) -> Path:
    """artifacts/<stamp>/: results, journal, HTML report, operator-log.md/.json; artifacts/latest → it.

    The directory is 0700 and every file in it 0600 (they name patients' rows and the captured
    idempotency key), whatever the umask; see cutover.core.private."""
    out = private_dir((artifacts_root / stamp).resolve())
    results_out = out / "allure-results"
    if results.exists() and results.resolve() != results_out.resolve():
        shutil.copytree(results, results_out, dirs_exist_ok=True)
        sweep_secrets(results)  # an --alluredir of the operator's own is an artifact too
        make_private(results)
    results_out.mkdir(exist_ok=True)
    if journal.exists():  # headed by the verdict and the rehearsal; the answers loader skips that line on a replay
        head = {"verdict": log["verdict"], **({"rehearsal": log["answers_for"]} if log.get("answers_for") else {})}
        write_private(out / "journal.jsonl", json.dumps(head) + "\n" + journal.read_text())
    write_results_metadata(results_out, log["environment"], stamp, log["verdict"])
    log["journal"] = "journal.jsonl" if journal.exists() else "none (no manual answers)"
    # The log goes into the report as its own attachment, so it is written first, naming the report
    # it expects; a report that could not be made is then said in the log, rewritten.
    log["allure"] = {"results": "allure-results", "html": "allure-report/index.html",
                     "note": "single-file HTML, offline"}
    write_private(out / "operator-log.md", markdown(log))
    make_private(out)  # the copied results, before the report is rendered from them
    sweep_secrets(out)  # before rendering: the HTML embeds the results and the log encoded
    html, note = render_html(results_out, out, allure, log["verdict"], attach=("operator-log.md",))
    log["allure"] = {"results": "allure-results", "html": str(html.relative_to(out)) if html else None,
                     "note": note or "single-file HTML, offline, with the operator log attached"}
    write_private(out / "operator-log.json", json.dumps(log, indent=2, default=str))
    write_private(out / "operator-log.md", markdown(log))
    sweep_secrets(out)
    make_private(out)  # the Allure report as its generator left it
    latest = artifacts_root / "latest"
    tmp = artifacts_root / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(stamp)
    os.replace(tmp, latest)
    return out


def build(*, started_at: str, exit_status: int, command: str, operator: str, verdict: str,
          summary_lines: list[str], checks: list[CheckRow], record: Record | None, environment: dict[str, str],
          report_path: str | None, setup_error: str | None = None,
          interrupted_at: str | None = None, next_step: list[str] | None = None) -> dict[str, Any]:
    """The JSON half of the operator log (the Markdown is rendered from it)."""
    return {
        "started_at": started_at, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "exit_status": exit_status, "command": redact(command), "operator": operator, "verdict": verdict,
        "setup_error": setup_error, "interrupted_at": interrupted_at, "next_step": next_step or [],
        "environment": environment, "rehearsal": record.to_json() if record else None,
        "rollback_time_bound": record.rollback_bound() if record and record.restore_s is not None else None,
        "report_path": report_path, "checks": [c.__dict__ for c in checks],
        "timeline": record.timeline if record else [], "summary_lines": summary_lines,
        "allure": {"results": "allure-results", "html": None, "note": ""}, "journal": "",
    }


def manual_rows(titles: Mapping[str, str], outcomes: Mapping[str, str], answers: Mapping[str, Answer],
                reasons: Mapping[str, str]) -> list[CheckRow]:
    """A11-A19 rows: the journaled answer when there is one, else the outcome and its reason."""
    rows = []
    for check, title in titles.items():
        a = answers.get(check)
        if a is not None:
            rows.append(CheckRow(check, title, "manual", a.result, a.observation, a.operator, a.at))
        else:
            outcome, why = outcomes.get(check, "not run"), reasons.get(check, "")
            if outcome == "skipped" and why.startswith(NOT_CONFIGURED):  # the plan cannot supply its values
                outcome = NOT_CONFIGURED
            rows.append(CheckRow(check, title, "manual", outcome, why))
    return rows


def forecast_basis(record: Record | None, plan: Plan, settings: Settings,
                   seconds: Mapping[str, float]) -> dict[str, Any] | None:
    """What the go/no-go's forecast scales to production's rows: None unless this run executed a cutover."""
    if record is None or not record.report_path or not Path(record.report_path).is_file():
        return None
    try:
        report = reports.load_streamed(Path(record.report_path))
    except CutoverError:
        return None
    owed = sorted(c.id for c in Catalogue.for_plan(plan).counted(SET_B))  # Set B's applicable checks, all timed
    setb = [seconds[c] for c in owed if c in seconds]
    reverse = (record.rollback or {}).get("seconds")
    return forecast.basis(report, plan, wal_bytes=record.wal_bytes,
                          setb_s=round(sum(setb), 3) if len(setb) == len(owed) else None,
                          reverse_s=float(reverse) if reverse is not None else None, restore_s=record.restore_s,
                          durable=settings.sandbox_durable or not record.sandbox).to_json()


def operator_log(settings: Settings, plan: Plan, shared: Path, run: RunState, summary: Any,
                 exit_status: int, command: str) -> Path:
    """Gather the run (rehearsal record, check outcomes, journal) and write artifacts/<stamp>/."""
    record = load_record(shared)
    journal = Path(run.journal)
    answers = Journal(journal).read()
    outcomes: Mapping[str, str] = summary.outcomes
    reasons: Mapping[str, str] = summary.reasons
    catalogue = Catalogue.for_plan(plan)
    manual = {c.id: c.title for c in catalogue if c.kind == "manual" and catalogue.applicable(c.id)}
    rows = [CheckRow(c.id, c.title, c.kind, outcomes.get(c.id, "not run"), reasons.get(c.id, ""))
            if catalogue.applicable(c.id) else
            CheckRow(c.id, c.title, c.kind, NOT_APPLICABLE, catalogue.why_not_applicable(c.id))
            for c in catalogue if c.kind == "sql" or (c.kind == "rehearsal" and c.id in outcomes)
            or (c.kind == "manual" and not catalogue.applicable(c.id))]
    rows += manual_rows(manual, outcomes, answers, reasons)
    order = {c.id: i for i, c in enumerate(catalogue)}  # the runbook's order: A1..A21, A20-active after A20
    rows.sort(key=lambda r: (order.get(r.check, len(order)), r.check))
    found = summary.verdict()
    lines = [*(text for text, _ in summary.lines()), found.line]
    verdict, setup_error, interrupted_at = found.line, found.setup_error, found.interrupted_at
    if run.window:  # a go/no-go run: its prerequisite lines and WINDOW GO / NO-GO
        lines, verdict, exit_status = run.window["lines"], run.window["verdict"], run.window["exit_status"]
        setup_error = interrupted_at = None
    environment = {
        "backend": "url" if settings.db_url is not None else settings.sandbox,
        "postgres": (record.postgres if record else "") or server_version(settings.db_url),
        "snapshot": (record.snapshot if record else "") or "not restored by this run",
        "snapshot_source": (record.snapshot_source if record else "") or "-",
        "git_sha": git_sha(),
        "target": (record.target if record else "") or (mask_url(settings.db_url) if settings.db_url else "-"),
        "plan": plan.name,
    }
    log = build(started_at=run.started_at, exit_status=exit_status, command=command,
                operator=settings.operator_name, verdict=verdict, summary_lines=lines, checks=rows,
                record=record, environment=environment, report_path=settings.report_path,
                setup_error=setup_error, interrupted_at=interrupted_at,
                next_step=list(getattr(summary, "next_steps", [])))
    log["run"] = "go/no-go" if run.window else summary.kind  # step 5a's evidence is never a rehearsal's
    log["not_applicable"] = {c: catalogue.why_not_applicable(c) for c in catalogue.not_applicable}
    log["forecast_basis"] = forecast_basis(record, plan, settings, getattr(summary, "seconds", {}))
    log["window_timeline"] = run.window_timeline or []
    log["answers_for"], log["answers_warning"] = run.rehearsal, run.answers_warning
    results = Path(run.results) if run.results else shared / "allure-results"
    out = write(Path(settings.artifacts_dir), run.stamp, log, results, journal, allure_command(settings.allure_bin))
    bundle.write(out, settings, plan, log, record, sweep_secrets)
    make_private(out)  # evidence.json and the inputs copied in beside it
    return out
