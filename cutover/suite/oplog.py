"""The operator log (runbook step 6) and the Allure report that goes with it, in artifacts/<timestamp>/.

Written once per run by the controller at session end, also when the run failed: a failed
rehearsal's log is the one an operator most needs. Every file is swept for secrets before the HTML
report is rendered from the results (the single-file HTML embeds them encoded, where a later sweep
could not see them), and again after.

This module gathers the run and writes the directory; its parts are their own modules: the Markdown
(``oplog_markdown``), the HTML report (``allure_report``), the secret sweep (``secret_sweep``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cutover.core.errors import CutoverError
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.core.private import make_private, private_dir, write_private
from cutover.core.redact import mask_url, redact
from cutover.reference import reports
from cutover.suite import bundle, forecast
from cutover.suite.allure_report import allure_command, render_html, write_results_metadata
from cutover.suite.catalogue import NOT_APPLICABLE, SET_B, Catalogue
from cutover.suite.git_revision import git_sha
from cutover.suite.manual.answers import Answer, Journal
from cutover.suite.oplog_markdown import markdown
from cutover.suite.rehearsals import Record, load_record
from cutover.suite.secret_sweep import sweep_secrets
from cutover.suite.state import RunState
from cutover.suite.under_check import server_version
from cutover.suite.verdicts import NOT_CONFIGURED


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
