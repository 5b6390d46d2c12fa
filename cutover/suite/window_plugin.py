"""The go/no-go's pytest wiring (``pytest -m prereq --db-url=PROD --evidence=DIR``) and the window's T+ timeline.

Refuses before anything runs unless production and the rehearsal's evidence are named (a --rehearse is
refused earlier, with Set B's, by ``suite.pytest_options.check_write_opt_in``: nothing here may write); keeps
prereq tests out of every other run; collects one :class:`~cutover.suite.window.Item` per prerequisite
from the tests' reports (xdist workers too); prints one line each and the verdict; and makes the exit
status 0 only for WINDOW GO. A Set B run (and a rehearsal) is placed on the window's timeline: the
commit, the sweeps, the run and the rollback decision with their T+ times, on the terminal and in the
operator log.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cutover.core import evidence
from cutover.core.errors import CutoverError
from cutover.core.exit_codes import ExitCode
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.core.redact import redact
from cutover.suite import timeline, verdicts, window
from cutover.suite.catalogue import SET_B
from cutover.suite.fixtures.manual import _terminal
from cutover.suite.hooks import session
from cutover.suite.manual import answers
from cutover.suite.state import ANSWERS, CATALOGUE, PLAN, RUN, SETTINGS, SHARED_DIR

MARKER = "prereq: production window go/no-go prerequisite (pytest -m prereq --db-url=PROD --evidence=DIR)"


def _wanted(config: pytest.Config) -> bool:
    """The go/no-go: ``-m`` selects a prerequisite and no check (``-m "not prereq"`` is not it)."""
    return session.selected(config).prereq


def _expected() -> list[str]:
    """Every prerequisite; drain-streams only when its URL and token are configured (else drain-baked stands)."""
    probe = bool(os.environ.get(window.DRAIN_URL_ENV)) and bool(os.environ.get(window.DRAIN_TOKEN_ENV))
    return [i for i in window.TITLES_BY_ID if probe or i != "drain-streams"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    config.pluginmanager.register(Collector(), "cutover-window")
    if not _wanted(config) or getattr(config, "workerinput", None) is not None:
        return
    settings = config.stash[SETTINGS]
    if settings.db_url is None:
        raise pytest.UsageError("the go/no-go reads production: pass --db-url=PROD (or set DATABASE_URL); "
                                "no sandbox is started for -m prereq")
    if settings.evidence is None:
        raise pytest.UsageError("the go/no-go compares production with the rehearsal: pass "
                                "--evidence=artifacts/<timestamp> (the rehearsal's artifacts directory)")
    if settings.allowed_signers is not None:
        try:
            evidence.check_signers(Path(settings.allowed_signers))
        except CutoverError as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A prereq test runs only when asked for: a plain run has no evidence to compare with."""
    if _wanted(config):
        return
    drop = [i for i in items if i.get_closest_marker("prereq") is not None]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i.get_closest_marker("prereq") is None]


@pytest.fixture
def prereq(request: pytest.FixtureRequest) -> Callable[[window.Item], None]:
    """Record a prerequisite's outcome with the test's report; fail or skip the test to match."""

    def record(item: window.Item) -> None:
        request.node.user_properties.append((window.PROPERTY, item.to_json()))
        if item.status in ("UNANSWERED", window.NOT_SET):
            pytest.skip(item.detail)
        if not item.ok:
            pytest.fail(item.line(), pytrace=False)

    return record


@pytest.fixture
def prereq_answer(pytestconfig: pytest.Config, cutover_plan: Plan,
                  cutover_settings: Settings) -> Callable[[str], window.Item]:
    """An operator item's answer, through the manual checks' machinery: --answers, the terminal, the journal."""

    def ask(item_id: str) -> window.Item:
        check = window.operator_items(cutover_plan)[item_id]
        capman = pytestconfig.pluginmanager.get_plugin("capturemanager")
        answer, why = answers.resolve(
            check, check.steps, None, pytestconfig.stash[ANSWERS], cutover_settings.operator_name,
            getattr(pytestconfig, "workerinput", None) is not None, functools.partial(_terminal, capman),
            answers.Journal(Path(pytestconfig.stash[RUN].journal)))
        return window.answered(item_id, answer, why)

    return ask


class Collector:
    """Gathers the items from every test report, the workers' included (registered once per run)."""

    def __init__(self) -> None:
        self.seen: dict[str, window.Item] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == window.PROPERTY:
                item = window.Item.from_json(str(value))
                self.seen[item.id] = item

    def outcome(self) -> tuple[bool, list[str]]:
        """(go, lines): one line per prerequisite in the runbook's order, then the verdict."""
        expected = _expected()
        lines = [self.seen[i].line() if i in self.seen else f"{'NOT RUN':<10} {i:<19} {window.TITLES_BY_ID[i]}"
                 for i in window.TITLES_BY_ID if i in expected or i in self.seen]
        go, text = window.verdict(self.seen, expected)
        return go, [*lines, text]


def _collector(config: pytest.Config) -> Collector:
    found = config.pluginmanager.get_plugin("cutover-window")
    assert isinstance(found, Collector)
    return found


def _target_url(config: pytest.Config) -> str | None:
    """The database the run looked at: --db-url, else the rehearsal's clone (still up until unconfigure)."""
    settings = config.stash[SETTINGS]
    if settings.db_url is not None:
        return settings.db_url
    marker = config.stash[SHARED_DIR] / "rehearsal-url" if SHARED_DIR in config.stash else None
    return marker.read_text().strip() if marker is not None and marker.is_file() else None


def _set_b_passed(config: pytest.Config) -> bool | None:
    summary = config.pluginmanager.get_plugin("cutover-summary")
    owed = {c.id for c in config.stash[CATALOGUE].counted(SET_B)}  # the applicable ones: the plan's [features]
    outcomes = {c: o for c, o in getattr(summary, "outcomes", {}).items() if c in owed}
    if not outcomes:
        return None
    if any(o == "failed" for o in outcomes.values()):
        return False
    return all(o == "passed" for o in outcomes.values()) and set(outcomes) == owed


def _place_on_timeline(config: pytest.Config) -> None:
    """Set B (and a rehearsal) on the window's T+ timeline, for the terminal and the operator log."""
    run = config.stash.get(RUN, None)
    kind = session.run_kind(config)
    if run is None or kind is None:
        return
    url = _target_url(config)
    if url is None:
        return
    label = "Set B" if kind == verdicts.SET_B else "Set A"
    started = timeline.parse(run.started_at) or datetime.now(UTC)
    try:
        found = timeline.read(url, config.stash[PLAN])
    except Exception as exc:  # the timeline informs; it must never turn a verdict into a crash
        first = (str(exc).strip().splitlines() or [""])[0]  # a server error's LINE/caret lines stay out
        run.window_timeline = [redact(f"timeline: not read from the database ({type(exc).__name__}: {first})")]
        return
    run.window_timeline = timeline.lines(found, started, datetime.now(UTC), label, _set_b_passed(config))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """NO-GO is never exit 0, also when every test 'passed' or was skipped; the operator log gets the lines."""
    config = session.config
    if getattr(config, "workerinput", None) is not None:
        return
    _place_on_timeline(config)
    if not _wanted(config):
        return
    go, lines = _collector(config).outcome()
    if not go and session.exitstatus == ExitCode.OK:
        session.exitstatus = ExitCode.NO_GO
    run = config.stash.get(RUN, None)
    if run is not None:
        run.window = {"lines": lines, "verdict": lines[-1], "exit_status": int(session.exitstatus)}


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if getattr(config, "workerinput", None) is not None:
        return
    run = config.stash.get(RUN, None)
    placed = run.window_timeline if run is not None else None
    if placed:
        terminalreporter.section("window timeline (T+ since the cutover's commit)")
        for line in placed:
            terminalreporter.write_line(line, bold="rollback decision" in line)
    if not _wanted(config):
        return
    go, lines = _collector(config).outcome()
    terminalreporter.section("window go/no-go")
    for line in lines[:-1]:
        terminalreporter.write_line(line, green=line.startswith("PASS"), red=not line.startswith("PASS"))
    terminalreporter.write_line(lines[-1], green=go, red=not go, bold=True)

