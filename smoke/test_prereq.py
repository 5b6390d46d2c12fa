"""The production window's go/no-go: ``pytest -m prereq --db-url=PROD --evidence=artifacts/<timestamp>``.

Read-only like Set B. One line per runbook prerequisite, then ``WINDOW GO`` or ``WINDOW NO-GO: <which>``;
exit 0 only for GO. The logic is in cutover/suite/window.py; these tests only hand each item over.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.suite import window
from cutover.suite.checks.sql import Checker, Evidence

pytestmark = pytest.mark.prereq
Record = Callable[[window.Item], None]
EVIDENCE = ["evidence-verifies", "evidence-ready", "evidence-fresh", "same-plan", "same-cutover", "restore-budget"]


def _sql(item_id: str, ev: Evidence) -> window.Item:
    if ev.ok:
        return window.passed(item_id, ev.found or ev.expected)
    return window.failed(item_id, f"expected {ev.expected}; found {ev.found or '; '.join(ev.problems)}")


@pytest.fixture(scope="session")
def evidence_items(cutover_settings: Settings, cutover_plan: Plan) -> dict[str, window.Item]:
    assert cutover_settings.evidence is not None
    items = window.evidence_items(Path(cutover_settings.evidence), cutover_plan, cutover_settings)
    return {i.id: i for i in items}


def test_prereq_A1_schema_head(cutover_checker: Checker, prereq: Record) -> None:
    prereq(_sql("A1", cutover_checker.a1()))


def test_prereq_A2_target_tenant(cutover_checker: Checker, prereq: Record) -> None:
    prereq(_sql("A2", cutover_checker.a2()))


@pytest.mark.parametrize("item", EVIDENCE)
def test_prereq_evidence(evidence_items: dict[str, window.Item], prereq: Record, item: str) -> None:
    prereq(evidence_items[item])


def test_prereq_drain_streams(prereq: Record) -> None:
    prereq(window.drain_streams())


def test_prereq_alerts(cutover_plan: Plan, prereq: Record) -> None:
    prereq(window.alerts_item(cutover_plan))


@pytest.mark.parametrize("item", ["drain-baked", "backend-image", "maintenance-rewrite"])
def test_prereq_operator(prereq_answer: Callable[[str], window.Item], prereq: Record, item: str) -> None:
    prereq(prereq_answer(item))
