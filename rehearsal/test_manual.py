"""Manual checks A11-A19 (runbook step 5b): the operator's answer, helped by an assist where one exists.

Each test shows the runbook's steps with real values, runs its assist when configured (a failing
assist fails the check outright), then asks: an answers file, the terminal, or "needs operator".
Their sets and markers come from the check catalogue; their titles and steps from the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cutover.core.plan import Plan
from cutover.suite.manual import assists
from cutover.suite.manual.assists import AssistConfig
from cutover.suite.rehearsals import key_facts
from cutover.suite.under_check import DatabaseUnderCheck

Confirm = Callable[..., None]


@pytest.fixture(scope="module")
def facts(database_under_check: DatabaseUnderCheck, cutover_plan: Plan,
          manual_values: dict[str, str]) -> dict[str, Any]:
    """What the assists compare the services' answers with, read from the target (read-only)."""
    return key_facts(database_under_check.url, cutover_plan, manual_values.get("idempotency_key"),
                     manual_values.get("key_case_id"), manual_values.get("document_id"),
                     manual_values.get("patient_id"))


@pytest.mark.check("A11")
def test_A11_patient_login_e2e(manual_check: Confirm) -> None:
    manual_check()


@pytest.mark.check("A12")
def test_A12_idempotency_key_replay(manual_check: Confirm, assist_config: AssistConfig,
                                    manual_values: dict[str, str], facts: dict[str, Any], cutover_plan: Plan) -> None:
    manual_check(assists.a12_replay(assist_config, manual_values.get("idempotency_key"), manual_values.get("route"),
                                    facts["cached"], facts["case_tenant"], cutover_plan.target))


@pytest.mark.check("A13")
def test_A13_provider_portal(manual_check: Confirm) -> None:
    manual_check()


@pytest.mark.check("A14")
def test_A14_coordinator_portal(manual_check: Confirm) -> None:
    manual_check()


@pytest.mark.check("A15")
def test_A15_cross_tenant_read_is_403(manual_check: Confirm, assist_config: AssistConfig,
                                      manual_values: dict[str, str], facts: dict[str, Any]) -> None:
    manual_check(assists.a15_cross_tenant(assist_config, manual_values.get("patient_id"),
                                          facts["patient_visible_to_source"]))


@pytest.mark.check("A16")
def test_A16_langfuse_trace_tenant(manual_check: Confirm, assist_config: AssistConfig, cutover_plan: Plan) -> None:
    manual_check(assists.a16_langfuse(assist_config, cutover_plan.target))


@pytest.mark.check("A17")
def test_A17_qstash_callback(manual_check: Confirm, assist_config: AssistConfig, manual_values: dict[str, str],
                             facts: dict[str, Any], cutover_plan: Plan) -> None:
    manual_check(assists.a17_callback(assist_config, manual_values.get("document_id"), facts["document_tenant"],
                                      cutover_plan.target))


@pytest.mark.check("A18")
def test_A18_module_constant_reload(manual_check: Confirm, assist_config: AssistConfig, cutover_plan: Plan) -> None:
    manual_check(assists.a18_constant(assist_config, cutover_plan.target))


@pytest.mark.check("A19")
def test_A19_drain_streams(manual_check: Confirm, assist_config: AssistConfig,
                           manual_values: dict[str, str]) -> None:
    manual_check(assists.a19_drain(assist_config, manual_values.get("case_id")))
