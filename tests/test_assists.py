"""Each assist against a fake dev branch on 127.0.0.1: it passes when the service behaves and fails,
saying why, when it does not (5xx, wrong tenant, no drained frame, a slow close, ...)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cutover.core.plan import Plan
from cutover.core.redact import redact
from cutover.suite.manual import assists
from cutover.suite.manual.assists import AssistConfig
from cutover.suite.rehearsals import key_facts, manual_values
from cutover.suite.under_check import DatabaseUnderCheck
from tests.fakes import TARGET, DevBranch, dev_branch

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnktYXNzaXN0In0.c2lnbmF0dXJlLWNhbmFyeQ"
SOURCE = "tenant-apollo-001"


@pytest.fixture
def fake() -> Iterator[DevBranch]:
    with dev_branch() as backend:
        yield backend


def config(fake: DevBranch, **over: str | None) -> AssistConfig:
    env = {"CUTOVER_API_URL": fake.http_url, "CUTOVER_WS_URL": fake.ws_url, "CUTOVER_PATIENT_JWT": JWT,
           "CUTOVER_PROVIDER_JWT": JWT, "CUTOVER_ADMIN_JWT": JWT, "CUTOVER_LANGFUSE_URL": fake.http_url,
           "CUTOVER_LANGFUSE_PUBLIC_KEY": "pk-test", "CUTOVER_LANGFUSE_SECRET_KEY": "sk-test",
           "CUTOVER_A18_CMD": f"echo {TARGET}"}
    env.update({k: v for k, v in over.items() if v is not None})
    return AssistConfig.from_env({k: v for k, v in env.items() if v != ""})


CACHED = {"case_id": "case-1", "status": "created"}


def test_a12_passes_when_the_cached_response_comes_back_and_the_case_moved(fake: DevBranch) -> None:
    fake.state["replay_body"] = CACHED
    found = assists.a12_replay(config(fake), "key-1", "/api/v1/cases", CACHED, TARGET, TARGET)
    assert found.ok is True, found.summary
    assert fake.requests[-1]["headers"]["X-Idempotency-Key"] == "key-1"


@pytest.mark.parametrize(("status", "body", "tenant", "why"), [
    (500, CACHED, TARGET, "HTTP 500, expected 2xx"),
    (200, {"case_id": "other"}, TARGET, "the body differs from the cached response"),
    (200, CACHED, SOURCE, f"the cached case is on {SOURCE}, expected {TARGET}"),
])
def test_a12_fails_on_an_error_a_different_body_or_the_wrong_tenant(fake: DevBranch, status: int, body: object,
                                                                     tenant: str, why: str) -> None:
    fake.state.update(replay_status=status, replay_body=body)
    found = assists.a12_replay(config(fake), "key-1", "/api/v1/cases", CACHED, tenant, TARGET)
    assert found.ok is False and why in found.summary


def test_a15_wants_403_and_an_empty_sql_probe(fake: DevBranch) -> None:
    assert assists.a15_cross_tenant(config(fake), "pat-1", 0).ok is True
    fake.state["patient_status"] = 200
    found = assists.a15_cross_tenant(config(fake), "pat-1", 0)
    assert found.ok is False and "HTTP 200, expected 403" in found.summary
    fake.state["patient_status"] = 403
    found = assists.a15_cross_tenant(config(fake), "pat-1", 1)
    assert found.ok is False and "sees 1 rows" in found.summary


def test_a16_reads_the_latest_trace_tenant(fake: DevBranch) -> None:
    assert assists.a16_langfuse(config(fake), TARGET).ok is True
    fake.state["trace_tenant"] = SOURCE
    found = assists.a16_langfuse(config(fake), TARGET)
    assert found.ok is False and f"tenant_id='{SOURCE}'" in found.summary
    fake.state["traces"] = False
    assert "no trace" in assists.a16_langfuse(config(fake), TARGET).summary
    wrong = assists.a16_langfuse(config(fake, CUTOVER_LANGFUSE_SECRET_KEY="sk-wrong"), TARGET)
    assert wrong.ok is False and "401" in wrong.summary


def test_a17_needs_a_2xx_callback_and_the_document_on_the_target(fake: DevBranch) -> None:
    assert assists.a17_callback(config(fake), "doc-1", TARGET, TARGET).ok is True
    assert json.loads(fake.requests[-1]["body"]) == {"document_reference_id": "doc-1"}
    fake.state["qstash_status"] = 503
    assert "HTTP 503" in assists.a17_callback(config(fake), "doc-1", TARGET, TARGET).summary
    fake.state["qstash_status"] = 200
    found = assists.a17_callback(config(fake), "doc-1", SOURCE, TARGET)
    assert found.ok is False and f"is on {SOURCE}" in found.summary


def test_a18_compares_the_printed_constant(fake: DevBranch) -> None:
    assert assists.a18_constant(config(fake), TARGET).ok is True
    found = assists.a18_constant(config(fake, CUTOVER_A18_CMD=f"echo {SOURCE}"), TARGET)
    assert found.ok is False and f"printed '{SOURCE}'" in found.summary
    assert "exited 3" in assists.a18_constant(config(fake, CUTOVER_A18_CMD="exit 3"), TARGET).summary


def test_a18s_command_text_is_not_in_the_shells_argv(fake: DevBranch) -> None:
    """A railway/heroku command often carries a token; ps shows the shell's argv to every user."""
    canary = "canary-a18-7f3e"  # in no secret's shape: the evidence's masking cannot hide it, only argv can lack it
    found = assists.a18_constant(config(fake, CUTOVER_A18_CMD=f": {canary}; tr '\\000' ' ' "
                                                              "< /proc/$$/cmdline; echo; echo " + TARGET), TARGET)
    assert found.ok is True, found.summary
    argv = found.evidence["stdout"].splitlines()[0]
    assert "sh" in argv and canary not in argv, argv


def test_a19_passes_on_a_drained_frame_and_a_prompt_close(fake: DevBranch) -> None:
    found = assists.a19_drain(config(fake), "case-1")
    assert found.ok is True, found.summary
    assert found.evidence["frames"][0]["type"] == "drained"
    assert JWT not in str(found.evidence) and JWT not in found.line()


@pytest.mark.parametrize(("change", "why"), [
    ({"send_drained": False}, "without a {\"type\":\"drained\"} frame"),
    ({"close_delay": 2.0}, "still open 1 s after drain-streams"),
    ({"drain_status": 500}, "drain-streams returned HTTP 500"),
])
def test_a19_fails_without_the_frame_on_a_slow_close_or_a_5xx(fake: DevBranch, change: dict[str, object],
                                                               why: str) -> None:
    fake.state.update(change)
    found = assists.a19_drain(config(fake), "case-1")
    assert found.ok is False and why in found.summary, found.summary


def test_an_unconfigured_assist_says_what_to_set(fake: DevBranch) -> None:
    empty = AssistConfig.from_env({})
    for found in (assists.a12_replay(empty, "k", "/r", None, None, TARGET), assists.a16_langfuse(empty, TARGET),
                  assists.a18_constant(empty, TARGET), assists.a19_drain(empty, "c")):
        assert found.ok is None and "not configured: set CUTOVER_" in found.summary


def test_an_unreachable_service_is_a_failure_not_a_crash() -> None:
    cfg = AssistConfig.from_env({"CUTOVER_API_URL": "http://127.0.0.1:9"})
    assert assists.a17_callback(cfg, "doc-1", TARGET, TARGET).ok is False
    assert assists.a19_drain(cfg, "case-1").ok is False


def test_tokens_are_secrets_once_loaded(fake: DevBranch) -> None:
    config(fake)
    assert JWT not in redact(f"Authorization: Bearer {JWT}") and "sk-test" not in redact("key sk-test")


def test_the_facts_the_assists_compare_with_come_from_the_target(cut_over_db: DatabaseUnderCheck,
                                                                  cutover_plan: Plan) -> None:
    values = manual_values(cut_over_db.url, cutover_plan, None)
    assert {"case_id", "patient_id", "document_id", "idempotency_key", "route"} <= set(values)
    facts = key_facts(cut_over_db.url, cutover_plan, values["idempotency_key"], values["key_case_id"],
                      values["document_id"], values["patient_id"])
    assert facts["cached"]["case_id"] == values["key_case_id"]
    assert facts["case_tenant"] == facts["document_tenant"] == cutover_plan.target
    assert facts["patient_visible_to_source"] == 0
