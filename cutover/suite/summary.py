"""The end of a run on the terminal: one line per check with its worst outcome, then the one verdict line.

Per-table checks run as several tests; an operator wants one line per check, in the runbook's
order and with the catalogue's title, and then the single line that says whether to proceed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from cutover.core.exit_codes import ExitCode
from cutover.core.redact import redact
from cutover.suite import verdicts
from cutover.suite.allure_out import NEEDS_OPERATOR
from cutover.suite.catalogue import Catalogue


class Summary:
    """Each check's worst outcome over its tests (per-table checks have several): a pytest plugin
    registered per run, printing one line per check and, last, the run's one verdict line."""

    RANK = {"passed": 0, "skipped": 1, "failed": 2}

    def __init__(self, catalogue: Catalogue, kind: str | None = None, expected: tuple[str, ...] = (),
                 also_required: tuple[str, ...] = (), not_applicable: Mapping[str, str] | None = None) -> None:
        self.outcomes: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        self.catalogue = catalogue
        self.manual = tuple(c.id for c in catalogue if c.kind == "manual" and catalogue.applicable(c.id))
        self.kind = kind  # None: not an operator's run (the project's own tests): no verdict
        self.expected = expected
        # The checks this kind of run would wait for that the plan declares without a subject: named, not run.
        self.not_applicable: Mapping[str, str] = dict(not_applicable or {})
        self.also_required = also_required  # beside the counted checks: the rehearsal's proofs
        self.current: tuple[str, str] | None = None
        self.setup_error: str | None = None
        self.interrupted_at: str | None = None
        self.next_steps: list[str] = []  # Set B's failure: what the runbook says to do now
        self.notes: list[str] = []  # what a READY line adds, from the tests that measured it
        self.seconds: dict[str, float] = {}  # per check, its tests' call time
        self.note = ""  # the rehearsal's newer-server note (--allow-newer-server), ends the verdict line

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        check = properties.get("cutover_check")
        if check is not None:
            self.record(str(check), report)
            if report.when == "call":  # the checks' own time: Set B's is what the forecast scales
                self.seconds[str(check)] = self.seconds.get(str(check), 0.0) + report.duration
        if properties.get("cutover_note") and report.when == "call" and report.passed:
            self.notes.append(str(properties["cutover_note"]))  # e.g. "rollback rehearsed in 4.1 s"

    def _at(self, item: pytest.Item, phase: str) -> None:
        check = dict(item.user_properties).get("cutover_check")
        self.current = (str(check), phase) if check is not None else (item.nodeid, phase)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self._at(item, "setup")

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        self._at(item, "call")

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """A setup error ends the run through ``pytest.exit(returncode=ExitCode.SETUP)``; anything else is
        Ctrl-C or SIGTERM."""
        value = excinfo.value
        if isinstance(value, pytest.exit.Exception) and value.returncode == ExitCode.SETUP:
            self.setup_error = redact(str(value.msg)).removeprefix("cutover: error: ")
            return
        self.interrupted_at = self.where()

    def where(self) -> str:
        """Where the run stood, in the operator's words: a check's prompt, a check, or before any check."""
        if self.current is None:
            return "start-up, before any check"
        check, phase = self.current
        if check in self.manual and phase == "call":
            return f"the {check} prompt"
        return f"{check} ({'preparing it' if phase == 'setup' else 'running it'})"

    def verdict(self) -> verdicts.Verdict:
        return verdicts.decide(self.kind or verdicts.REHEARSAL, self.expected, self.outcomes, self.reasons,
                               self.manual, setup_error=self.setup_error,
                               interrupted_at=self.interrupted_at, also_required=self.also_required,
                               notes=tuple(self.notes), note=self.note,
                               not_applicable=self.not_applicable)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if getattr(config, "workerinput", None) is not None or (not self.outcomes and self.kind is None):
            return
        if exitstatus == ExitCode.USAGE:  # bad input: nothing ran, so there is nothing to judge
            return
        terminalreporter.section("smoke matrix")
        for line, colour in self.lines():
            terminalreporter.write_line(line, **{colour: True})
        if self.kind is not None:
            found = self.verdict()
            terminalreporter.write_line(found.line, **{found.colour: True, "bold": True})
            for line in self.next_steps:
                terminalreporter.write_line(line, yellow=True)

    def record(self, check: str, report: pytest.TestReport) -> None:
        if report.when != "call" and not (report.failed or report.skipped):
            return
        outcome = "failed" if report.failed else ("skipped" if report.skipped else "passed")
        if report.skipped and isinstance(report.longrepr, tuple):
            self.reasons[check] = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif report.failed:
            self.reasons[check] = redact(str(report.longrepr)).strip().splitlines()[-1][:300] if report.longrepr else ""
        if self.RANK[outcome] >= self.RANK[self.outcomes.get(check, "passed")]:
            self.outcomes[check] = outcome

    def lines(self) -> list[tuple[str, str]]:
        """(text, colour) lines: one per SQL check in matrix order and their tally, then the manual
        checks and A20-active with their tally. Tallies only: the verdict is the one line after them."""
        words = {"passed": ("PASS", "green"), "failed": ("FAIL", "red"), "skipped": ("SKIP", "yellow")}
        ran = [c for c in self.catalogue if c.id in self.outcomes]
        checks = [c.id for c in ran if c.kind == "sql"]
        na = [c for c in self.not_applicable if c not in self.outcomes
              and (entry := self.catalogue.get(c)) is not None and entry.kind == "sql"]
        order = {c.id: i for i, c in enumerate(self.catalogue)}
        out = [(f"{c:<4} {words[self.outcomes[c]][0]}  {self.catalogue.title(c)}", words[self.outcomes[c]][1])
               if c in self.outcomes else
               (f"{c:<4} N/A   {self.catalogue.title(c)} ({self.catalogue.why_not_applicable(c)})", "cyan")
               for c in sorted([*checks, *na], key=order.__getitem__)]
        out += self._tally(checks)
        others = [c.id for c in ran if c.kind != "sql"] + sorted(set(self.outcomes) - {c.id for c in ran})
        for c in others:
            word, colour = words[self.outcomes[c]]
            reason = self.reasons.get(c, "")
            if self.outcomes[c] == "skipped" and reason.startswith(verdicts.NOT_CONFIGURED):
                word = verdicts.NOT_CONFIGURED.upper()
            reason = NEEDS_OPERATOR if reason.startswith(NEEDS_OPERATOR) else reason
            why = f" ({reason})" if self.outcomes[c] != "passed" and reason else ""
            out.append((f"{c:<4} {word}  {self.catalogue.title(c)}{why}", colour))
        for c in (c for c in self.not_applicable if c not in self.outcomes and c not in na):
            out.append((f"{c:<4} N/A   {self.catalogue.title(c)} ({self.catalogue.why_not_applicable(c)})", "cyan"))
        manual = [c for c in others if c in self.manual]
        if manual:
            waiting = [c for c in manual if self.outcomes[c] == "skipped"
                       and self.reasons.get(c, "").startswith(NEEDS_OPERATOR)]
            unset = [c for c in manual if self.outcomes[c] == "skipped"
                     and self.reasons.get(c, "").startswith(verdicts.NOT_CONFIGURED)]
            passed = [c for c in manual if self.outcomes[c] == "passed"]
            colour = "yellow" if waiting or unset else (
                "red" if any(self.outcomes[c] == "failed" for c in manual) else "green")
            out.append((f"manual checks: {len(passed)} of {len(self.manual)} passed, "
                        f"{len(manual) - len(waiting) - len(unset)} answered"
                        + (f"; {len(unset)} {verdicts.NOT_CONFIGURED}: {', '.join(unset)}" if unset else "")
                        + (f"; {len(waiting)} need an operator: {', '.join(waiting)}" if waiting else ""), colour))
            if waiting:
                out.append((f"  ({self.reasons[waiting[0]].removeprefix(NEEDS_OPERATOR + ': ')})", colour))
        return out

    def _tally(self, checks: list[str]) -> list[tuple[str, str]]:
        if not checks:
            return []
        failed = [c for c in checks if self.outcomes[c] == "failed"]
        passed = [c for c in checks if self.outcomes[c] == "passed"]
        colour = "red" if failed else ("green" if len(passed) == len(checks) else "yellow")
        owed = {c for c in self.expected if (entry := self.catalogue.get(c)) is not None and entry.kind == "sql"}
        if len(passed) == len(checks) and set(checks) == owed:  # the runbook's step 5a message, word for word
            return [(f"ALL {len(checks)} CHECKS PASSED", colour)]
        return [(f"SQL checks: {len(passed)} of {len(checks)} passed"
                 + (f"; failed: {', '.join(failed)}" if failed else ""), colour)]
