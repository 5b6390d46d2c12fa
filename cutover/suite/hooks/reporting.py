"""What the run shows: every report redacted, the operator log written at the end and pointed to.

Redaction is done once here, on the report, rather than in each fixture's repr: pytest prints a
failing test's arguments, and a --db-url carries a password.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from cutover.core import evidence
from cutover.core.errors import CutoverError
from cutover.core.exit_codes import ExitCode
from cutover.core.redact import redact
from cutover.suite import nextstep, oplog, rehearsals, verdicts, workers
from cutover.suite.state import PLAN, RUN, SETTINGS, SHARED_DIR


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Redact every report, so assertion messages, captured output and locals (``-l``) are covered too,
    whatever a check puts in them."""
    report: pytest.TestReport = yield
    if report.longrepr is not None:
        text = str(report.longrepr)
        clean = redact(text)
        if clean != text:
            report.longrepr = clean
    report.sections = [(title, redact(content)) for title, content in report.sections]
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The controller writes the operator log and the Allure report, also after a failed run."""
    config = session.config
    if workers.is_worker(config) or RUN not in config.stash:
        return
    run = config.stash[RUN]
    if not run.artifacts or exitstatus == ExitCode.USAGE:  # bad input: nothing ran, nothing written
        return
    settings, shared = config.stash[SETTINGS], config.stash[SHARED_DIR]
    summary = config.pluginmanager.get_plugin("cutover-summary")
    if summary is not None and summary.kind is not None:
        if summary.interrupted_at is not None:
            record = rehearsals.load_record(shared)
            stopped = [t for t in (record.timeline if record else []) if t["status"] != "ok"]
            if stopped:
                summary.interrupted_at = f"the rehearsal step '{stopped[-1]['step']}'"
        record = rehearsals.load_record(shared)
        summary.note = record.major_note if record else ""
        found = summary.verdict()
        if exitstatus != ExitCode.NOTHING_COLLECTED:
            session.exitstatus = found.exit_code  # the verdict's code, documented, is the run's
        if summary.kind == verdicts.SET_B and found.exit_code == ExitCode.FAILED and settings.db_url:
            failed = [c for c in summary.expected if summary.outcomes.get(c) == "failed"]
            summary.next_steps = nextstep.for_set_b(settings.db_url, config.stash[PLAN], failed, settings)
    try:
        out = oplog.operator_log(settings, config.stash[PLAN], shared, run, summary, int(session.exitstatus),
                                 " ".join(["pytest", *config.invocation_params.args]))
    except Exception as exc:  # the log must never turn a result into a crash; say why it is missing
        run.log_error = f"operator log not written: {type(exc).__name__}: {redact(str(exc))}"
        return
    run.log = str(out)
    if settings.sign_with is not None:
        _sign(session, out, Path(settings.sign_with))


def _sign(session: pytest.Session, out: Path, key: Path) -> None:
    """Sign the bundle as asked; a signature asked for and not made is a setup error, never a green run:
    the go/no-go with --allowed-signers would refuse the unsigned bundle a day later, in the window."""
    run = session.config.stash[RUN]
    try:
        sig = evidence.sign(out, key)
    except (CutoverError, OSError) as exc:
        run.log_error = redact(f"{exc}" if isinstance(exc, CutoverError) else f"evidence not signed: {exc}")
        session.exitstatus = ExitCode.SETUP
        return
    run.signature = f"evidence signed: {sig} (namespace {evidence.NAMESPACE}, key {key})"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is None:
        return
    if run.log:
        terminalreporter.write_line(f"operator log: {run.log}/operator-log.md (artifacts/latest)")
    if run.signature:
        terminalreporter.write_line(run.signature)
    if run.log_error:
        terminalreporter.write_line(run.log_error, red=True)
