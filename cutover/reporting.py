"""Turning a check's evidence into a verdict: the pytest failure text, Allure steps and attachments.

Everything shown goes through :func:`redact` first; an operator pastes this into the operator log
and a ticket, and neither may carry the database password.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import allure
import pytest

from cutover.checks import SET_B, TITLES, Evidence
from cutover.redact import redact


def label(check: str, title: str) -> None:
    """Name the test in Allure by its check id and title."""
    allure.dynamic.title(redact(title))  # type: ignore[no-untyped-call]
    allure.dynamic.tag(check)  # type: ignore[no-untyped-call]
    allure.dynamic.label("check_id", check)  # type: ignore[no-untyped-call]


def _attach(body: str, name: str, kind: object) -> None:
    allure.attach(redact(body), name=name, attachment_type=kind)


def verdict(ev: Evidence) -> None:
    """Attach the evidence, then fail the test with it when the check found a problem."""
    with allure.step(redact(f"{ev.title}: {'ok' if ev.ok else 'FAILED'}")):
        _attach("\n\n".join(ev.queries), "query.sql", allure.attachment_type.TEXT)
        _attach(json.dumps({"check": ev.check, "tenant": ev.tenant, "expected": ev.expected, "found": ev.found,
                            "problems": ev.problems, "rows": ev.rows}, indent=2), "evidence.json",
                allure.attachment_type.JSON)
        if ev.rows:
            out = io.StringIO()
            csv.writer(out).writerows([["row_id"], *[[r] for r in ev.rows]])
            _attach(out.getvalue(), "rows.csv", allure.attachment_type.CSV)
    if not ev.ok:
        pytest.fail(ev.text(), pytrace=False)


class Summary:
    """Each check's worst outcome over its tests (per-table checks have several): a pytest plugin
    registered per run, printing one line per check and the runbook's verdict line at the end."""

    RANK = {"passed": 0, "skipped": 1, "failed": 2}

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        check = dict(report.user_properties).get("cutover_check")
        if check is not None:
            self.record(str(check), report)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if getattr(config, "workerinput", None) is not None or not self.outcomes:
            return
        terminalreporter.section("smoke matrix")
        for line, colour in self.lines():
            terminalreporter.write_line(line, **{colour: True})

    def record(self, check: str, report: pytest.TestReport) -> None:
        if report.when != "call" and not (report.failed or report.skipped):
            return
        outcome = "failed" if report.failed else ("skipped" if report.skipped else "passed")
        if self.RANK[outcome] >= self.RANK[self.outcomes.get(check, "passed")]:
            self.outcomes[check] = outcome

    def lines(self) -> list[tuple[str, str]]:
        """(text, colour) lines: one per check in matrix order, then the verdict."""
        order = {c: i for i, c in enumerate(TITLES)}
        checks = sorted(self.outcomes, key=lambda c: order.get(c, 99))
        words = {"passed": ("PASS", "green"), "failed": ("FAIL", "red"), "skipped": ("SKIP", "yellow")}
        out = [(f"{c:<4} {words[self.outcomes[c]][0]}  {TITLES.get(c, '')}", words[self.outcomes[c]][1])
               for c in checks]
        failed = [c for c in checks if self.outcomes[c] == "failed"]
        kind = "SET B " if set(checks) <= set(SET_B) else ""
        if failed:
            out.append((f"{len(failed)} OF {len(checks)} {kind}CHECKS FAILED: {', '.join(failed)}", "red"))
        elif all(self.outcomes[c] == "passed" for c in checks):
            out.append((f"ALL {len(checks)} {kind}CHECKS PASSED", "green"))
        else:
            out.append((f"{len(checks)} {kind}CHECKS RAN, SOME SKIPPED: not a pass", "yellow"))
        return out
