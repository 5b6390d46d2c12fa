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
from cutover.suite.catalogue import SCHEMA_HEAD, TARGET_TENANT, Check
from cutover.suite.checks.base import Checker, Evidence
from cutover.suite.under_check import server_version

pytestmark = pytest.mark.prereq
Record = Callable[[window.Item], None]
EVIDENCE = ["evidence-verifies", "evidence-ready", "evidence-fresh", "same-plan", "same-cutover", "restore-budget"]


def _sql(check: Check, checker: Checker) -> window.Item:
    """The go/no-go's schema and tenant items are checks A1 and A2, run as the matrix runs them."""
    ev: Evidence = check.evaluate(checker)
    if ev.ok:
        return window.passed(check.id, ev.found or ev.expected)
    return window.failed(check.id, f"expected {ev.expected}; found {ev.found or '; '.join(ev.problems)}")


@pytest.fixture(scope="session")
def evidence_items(cutover_settings: Settings, cutover_plan: Plan) -> dict[str, window.Item]:
    assert cutover_settings.evidence is not None
    items = window.evidence_items(Path(cutover_settings.evidence), cutover_plan, cutover_settings)
    return {i.id: i for i in items}


def test_prereq_schema_head(cutover_checker: Checker, prereq: Record) -> None:
    prereq(_sql(SCHEMA_HEAD, cutover_checker))


def test_prereq_target_tenant(cutover_checker: Checker, prereq: Record) -> None:
    prereq(_sql(TARGET_TENANT, cutover_checker))


@pytest.mark.parametrize("item", EVIDENCE)
def test_prereq_evidence(evidence_items: dict[str, window.Item], prereq: Record, item: str) -> None:
    prereq(evidence_items[item])


def test_prereq_same_major(cutover_settings: Settings, prereq: Record) -> None:
    assert cutover_settings.evidence is not None
    prereq(window.same_major(Path(cutover_settings.evidence), server_version(cutover_settings.db_url)))


@pytest.fixture(scope="session")
def forecast_items(cutover_checker: Checker, cutover_settings: Settings, cutover_plan: Plan) -> dict[str, window.Item]:
    """The window's times at production's size, from production's planned counts (read-only)."""
    assert cutover_settings.evidence is not None
    items = window.forecast_items(cutover_checker.conn, cutover_plan, Path(cutover_settings.evidence),
                                  cutover_settings)
    return {i.id: i for i in items}


@pytest.mark.parametrize("item", window.FORECAST_IDS)
def test_prereq_forecast(forecast_items: dict[str, window.Item], prereq: Record, item: str) -> None:
    prereq(forecast_items[item])


def test_prereq_drain_streams(prereq: Record) -> None:
    prereq(window.drain_streams())


def test_prereq_alerts(cutover_plan: Plan, prereq: Record) -> None:
    prereq(window.alerts_item(cutover_plan))


@pytest.mark.parametrize("item", ["drain-baked", "backend-image", "maintenance-rewrite"])
def test_prereq_operator(prereq_answer: Callable[[str], window.Item], prereq: Record, item: str) -> None:
    prereq(prereq_answer(item))
