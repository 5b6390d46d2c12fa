"""The fault corpus: each deliberate fault on a correctly cut-over database, and which checks catch it.

Every fault is applied to a private copy of a database the reference cutover moved correctly (where
all 12 checks pass: the first test). The expected set is exact: a check that starts catching more
or less than it should shows up here, in both directions.
"""

# The faults are fixed SQL over constant tenant ids, written as an operator would type them: no input
# reaches them, so string-built SQL is the readable choice here (library code uses psycopg.sql).
# ruff: noqa: S608

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.suite.catalogue import AUTOMATED, SET_B_IDS
from cutover.suite.checks.base import Checker
from cutover.suite.under_check import DatabaseUnderCheck, check_connection
from tests.support import execute_sql, run_checks

SRC, TGT, FORTIS = "'tenant-apollo-001'", "'tenant-curaway-patients'", "'tenant-fortis-002'"
LEFT = {"A3", "A5", "A10", "A20", "A21"}  # a patient row left on the source


def one(table: str, where: str, key: str = "id") -> str:
    return f"(SELECT min({key}) FROM {table} WHERE {where})"


def left_behind(table: str, where: str = "true", key: str = "id") -> list[str]:
    return [f"UPDATE {table} SET tenant_id = {SRC} WHERE {key} = {one(table, f'tenant_id = {TGT} AND {where}', key)}"]


def dragged(table: str, where: str, key: str = "id") -> list[str]:
    return [f"UPDATE {table} SET tenant_id = {TGT} WHERE {key} = {one(table, f'tenant_id <> {TGT} AND {where}', key)}"]


def _moved_count_off(r: dict[str, Any]) -> None:
    r["moved"]["messages"] += 1


def _allow_list_missing(r: dict[str, Any]) -> None:
    r["allow_list"]["messages"].pop()


def _not_committed(r: dict[str, Any]) -> None:
    r["commit_status"] = "rolled_back"


CHILD_CASE = one("cases", f"tenant_id = {TGT} AND EXISTS (SELECT 1 FROM messages m WHERE m.case_id = cases.id)")
FORTIS_QUOTE = one("quotes", f"tenant_id = {FORTIS}")

FAULTS: dict[str, tuple[list[str] | Callable[[dict[str, Any]], None], set[str]]] = {
    # users.organization_id is tenant-bound: an organization left behind or dragged splits it from its users
    "org-left-behind": (left_behind("organizations", "kind = 'patient'"), LEFT | {"A4"}),
    "user-left-behind": (left_behind("users", "role = 'patient' AND EXISTS (SELECT 1 FROM patients p WHERE "
                                     "p.user_id = users.id)"), LEFT | {"A4"}),
    "patient-left-behind": (left_behind("patients", "EXISTS (SELECT 1 FROM cases c WHERE c.patient_id = "
                                        "patients.id)"), LEFT | {"A4"}),
    "case-left-behind": (left_behind("cases", "EXISTS (SELECT 1 FROM case_shares s WHERE s.case_id = cases.id)"),
                         LEFT | {"A4", "A7"}),
    "share-left-behind": (left_behind("case_shares", "true"), LEFT | {"A4", "A7"}),
    "message-left-behind": (left_behind("messages"), LEFT | {"A4"}),
    "document-left-behind": (left_behind("document_references"), LEFT | {"A4"}),
    "match-request-left-behind": (left_behind("match_requests"), LEFT | {"A4"}),
    "idempotency-key-left-behind": (left_behind("idempotency_keys", "route = 'POST /api/v1/cases' AND "
                                                "response_body ? 'case_id'", "key"), LEFT | {"A9"}),
    "patient-event-left-behind": (left_behind("events", "event_type = 'intake.started'"), LEFT | {"A8"}),
    "provider-user-dragged": (dragged("users", "role = 'provider'"), {"A4", "A5", "A6"}),
    "coordinator-org-dragged": (dragged("organizations", "kind = 'coordinator'"), {"A4", "A5", "A6"}),
    "provider-profile-dragged": (dragged("provider_profiles", "true"), {"A5", "A6"}),
    "quote-dragged": (dragged("quotes", f"tenant_id = {FORTIS}"), {"A5", "A6"}),
    "provider-event-dragged": (dragged("events", "event_type = 'quote.issued'"), {"A5", "A6", "A8"}),
    "provider-route-key-dragged": (dragged("idempotency_keys", "route = 'POST /api/v1/provider/quotes'", "key"),
                                   {"A5", "A6"}),
    "share-targets-its-own-tenant": ([f"UPDATE case_shares SET target_tenant_id = {TGT} WHERE id = "
                                      f"{one('case_shares', f'target_tenant_id = {FORTIS}')}"], {"A7"}),
    "share-on-the-wrong-tenant": ([f"UPDATE case_shares SET tenant_id = {FORTIS} WHERE id = "
                                   f"{one('case_shares', f'target_tenant_id = {SRC}')}"], {"A4", "A5", "A7", "A10"}),
    "case-moved-without-its-children": ([f"UPDATE messages SET tenant_id = {SRC} WHERE case_id = {CHILD_CASE}"],
                                        LEFT | {"A4"}),
    "quote-without-its-share": ([f"DELETE FROM case_shares WHERE target_tenant_id = {FORTIS} AND case_id = "
                                 f"(SELECT case_id FROM quotes WHERE id = {FORTIS_QUOTE})"], {"A4", "A5", "A9", "A10"}),
    "unclassified-event-type": ([f"INSERT INTO events (id, tenant_id, event_type, payload, source_service) VALUES "
                                 f"('evt-mystery', {FORTIS}, 'mystery.happened', '{{}}', 'x')"], {"A5", "A8"}),
    "idempotency-key-names-missing-case": ([f"UPDATE idempotency_keys SET response_body = "
                                            f"'{{\"case_id\": \"case-x\"}}' WHERE key = "
                                            f"{one('idempotency_keys', f'tenant_id = {TGT}', 'key')}"],
                                           {"A9"}),
    "tenant-setting-changed": ([f"UPDATE tenants SET settings = settings || '{{\"digest\": \"weekly\"}}' "
                                f"WHERE id = {TGT}"], {"A2"}),
    "target-tenant-inactive": ([f"UPDATE tenants SET is_active = false WHERE id = {TGT}"], {"A2"}),
    "rls-disabled": (["ALTER TABLE messages DISABLE ROW LEVEL SECURITY"], {"A21"}),
    "rls-not-forced": (["ALTER TABLE events NO FORCE ROW LEVEL SECURITY"], {"A21"}),
    "rls-policy-dropped": (["DROP POLICY tenant_isolation ON provider_profiles"], {"A21"}),
    "app-role-bypassrls": (["CREATE ROLE {role} BYPASSRLS", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
                            "GRANT {role} TO current_user"], {"A7", "A21"}),
    "schema-head-moved": (["UPDATE alembic_version SET version_num = '0000aaaa1111'"], {"A1"}),
    "straggler": ([f"INSERT INTO events (id, tenant_id, event_type, payload, source_service) VALUES "
                   f"('evt-late', {SRC}, 'message.sent', '{{}}', 'sse')"], {"A3", "A5", "A8", "A20", "A21"}),
    "row-deleted": ([f"DELETE FROM match_requests WHERE id = {one('match_requests', f'tenant_id = {TGT}')}"],
                    {"A5", "A10"}),
    "completed-event-tampered": (["UPDATE events SET payload = jsonb_set(payload, '{moved,messages}', '0') "
                                  "WHERE event_type = 'cutover.completed'"], {"A10"}),
    "report-moved-count-off": (_moved_count_off, {"A5", "A10"}),
    "report-allow-list-short": (_allow_list_missing, {"A10"}),
    "report-not-committed": (_not_committed, {"A5", "A10"}),
}


def test_a_correct_cutover_passes_every_check(cut_over_db: DatabaseUnderCheck, cutover_plan: Plan,
                                               cutover_settings: Settings) -> None:
    assert run_checks(cut_over_db, cutover_plan, cutover_settings) == set()


def test_without_a_report_A5_and_A10_fail_and_say_so(cut_over_db: DatabaseUnderCheck, cutover_plan: Plan,
                                                     cutover_settings: Settings) -> None:
    conn = check_connection(cut_over_db.url, cutover_settings, cutover_plan)
    try:
        checker = Checker(conn, cutover_plan, None)
        for ev in (c.evaluate(checker) for c in AUTOMATED if c.id in ("A5", "A10")):
            assert not ev.ok and "--report-path" in ev.text()
    finally:
        conn.close()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_is_caught_by_exactly_the_expected_checks(cut_over_db: DatabaseUnderCheck, cutover_plan: Plan,
                                                        cutover_settings: Settings, fault: str) -> None:
    change, expected = FAULTS[fault]
    report = json.loads(json.dumps(cut_over_db.report))
    plan = cutover_plan
    role = f"app_fault_{uuid.uuid4().hex[:6]}"  # roles are cluster-wide: never alter the shared app role
    if callable(change):
        change(report)
    else:
        execute_sql(cut_over_db.url, *[s.replace("{role}", role) for s in change])
        if any("{role}" in s for s in change):
            plan = dataclasses.replace(cutover_plan, app_role=role)
    try:
        caught = run_checks(cut_over_db, plan, cutover_settings, report)
    finally:
        if plan is not cutover_plan:
            execute_sql(cut_over_db.url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")
    assert sorted(caught) == sorted(expected), f"caught {sorted(caught)}, expected {sorted(expected)}"
    if expected & SET_B_IDS:
        assert caught & SET_B_IDS, "Set B misses a fault a Set B check covers"


def test_the_corpus_is_big_enough() -> None:
    assert len(FAULTS) >= 25
