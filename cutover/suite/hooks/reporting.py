"""What the run shows: every report redacted, the operator log written at the end and pointed to.

Redaction is done once here, on the report, rather than in each fixture's repr: pytest prints a
failing test's arguments, and a --db-url carries a password.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from cutover.core.redact import redact
from cutover.suite import oplog, workers
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
    if not run.artifacts:
        return
    settings, shared = config.stash[SETTINGS], config.stash[SHARED_DIR]
    summary = config.pluginmanager.get_plugin("cutover-summary")
    try:
        out = oplog.operator_log(settings, config.stash[PLAN], shared, run, summary, int(exitstatus),
                                 " ".join(["pytest", *config.invocation_params.args]))
    except Exception as exc:  # the log must never turn a result into a crash; say why it is missing
        run.log_error = f"operator log not written: {type(exc).__name__}: {redact(str(exc))}"
        return
    run.log = str(out)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is None:
        return
    if run.log:
        terminalreporter.write_line(f"operator log: {run.log}/operator-log.md (artifacts/latest)")
    elif run.log_error:
        terminalreporter.write_line(run.log_error, red=True)
