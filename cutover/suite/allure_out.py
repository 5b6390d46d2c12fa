"""Turning a check's evidence into a verdict: the pytest failure text, Allure steps and attachments.

Everything shown goes through :func:`redact` first; an operator pastes this into the operator log
and a ticket, and neither may carry the database password.
"""

from __future__ import annotations

import csv
import io
import json

import allure
import pytest

from cutover.core.redact import redact
from cutover.suite.catalogue import SET_NAMES, Check
from cutover.suite.checks.base import Evidence
from cutover.suite.manual.answers import Answer
from cutover.suite.manual.assists import Assist

NEEDS_OPERATOR = "needs operator"


def label(check: Check) -> None:
    """Group the test by set, then by check (one group per check, its per-table tests inside), so a
    reader finds Set B's checks, and a check's every table, together."""
    allure.dynamic.parent_suite(" + ".join(SET_NAMES[s] for s in check.sets))  # type: ignore[no-untyped-call]
    allure.dynamic.suite(redact(check.heading()))  # type: ignore[no-untyped-call]
    allure.dynamic.tag(check.id, *check.sets, check.kind)  # type: ignore[no-untyped-call]
    allure.dynamic.label("check_id", check.id)  # type: ignore[no-untyped-call]


def title(test: object, check: Check) -> None:
    """``A3 nothing patient-owned remains on the source [events]`` as the test's Allure title.

    Set on the test function at collection, as ``@allure.title`` does: allure-pytest renames the
    result after setup, so a title set from a fixture was lost; it formats the per-table parameter in."""
    if test is None or hasattr(test, "__allure_display_name__"):
        return
    heading = redact(check.heading()).replace("{", "{{").replace("}", "}}")
    test.__allure_display_name__ = heading + (f" [{{{check.per}}}]" if check.per else "")  # type: ignore[attr-defined]


def _attach(body: str, name: str, kind: object) -> None:
    allure.attach(redact(body), name=name, attachment_type=kind)


def verdict(ev: Evidence) -> None:
    """Attach the evidence, then fail the test with it when the check found a problem."""
    with allure.step(redact(f"{ev.heading}: {'ok' if ev.ok else 'FAILED'}")):
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


def assist(found: Assist) -> None:
    """An assist's finding as an Allure step with its evidence; a failed assist fails the check."""
    with allure.step(redact(f"assist {found.check}: {found.line()}")):
        _attach(json.dumps(found.evidence, indent=2, default=str), "assist-evidence.json",
                allure.attachment_type.JSON)
    if found.ok is False:
        pytest.fail(redact(f"{found.check} assist failed: {found.summary}\n")  # masked, then cut
                    + f"evidence: {redact(json.dumps(found.evidence, default=str), limit=2000)}", pytrace=False)


def manual(check: str, instructions: str, answer: Answer | None, why_none: str) -> None:
    """Record a manual check's instructions and answer in Allure, then pass, fail or skip the test."""
    _attach(instructions, "instructions.txt", allure.attachment_type.TEXT)
    if answer is None:
        pytest.skip(f"{NEEDS_OPERATOR}: {why_none}")
    with allure.step(redact(f"operator {answer.operator}: {answer.result.upper()} at {answer.at} ({answer.source})")):
        _attach(json.dumps(answer.__dict__, indent=2, ensure_ascii=False), "answer.json", allure.attachment_type.JSON)
    if answer.result == "fail":
        pytest.fail(redact(f"{check} failed (operator {answer.operator}, {answer.at}): {answer.observation}"),
                    pytrace=False)
    if answer.result == "skip":
        pytest.skip(redact(f"operator skipped {check}: {answer.observation or 'no reason given'}"))
