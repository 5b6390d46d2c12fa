"""Each pre-flight blocker, on a deliberately broken database: BLOCKED, named, and nothing written.

Every case breaks one thing in a fresh copy of the default snapshot, then runs the dry-run (exit 1,
the blocker named) and the execute (exit 1, refused inside the transaction, the database's
checksum unchanged). The same copy, unbroken, is READY: the control that makes each case mean
something.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cutover.core.plan import Plan
from cutover.core.redact import split_password
from tests.support import checksum, execute_sql, run_cutover

BROKEN = {
    "wrong-schema-head": ["UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'"],
    "two-schema-heads": ["INSERT INTO alembic_version VALUES ('ffffffffffff')"],
    "target-missing": ["DELETE FROM events WHERE tenant_id = 'tenant-curaway-patients'",
                       "DELETE FROM tenants WHERE id = 'tenant-curaway-patients'"],
    "target-settings": ["UPDATE tenants SET settings = settings || '{\"currency\": \"USD\"}' "
                        "WHERE id = 'tenant-curaway-patients'"],
    "target-inactive": ["UPDATE tenants SET is_active = false WHERE id = 'tenant-curaway-patients'"],
    "target-unprotected": ["UPDATE tenants SET is_protected = false WHERE id = 'tenant-curaway-patients'"],
    "unclassified-event": ["INSERT INTO events (id, tenant_id, event_type, payload, source_service) VALUES "
                           "('evt-x', 'tenant-fortis-002', 'mystery.happened', '{}', 'x')"],
    "unclassified-route": ["INSERT INTO idempotency_keys (key, tenant_id, route, request_hash, response_status) "
                           "VALUES ('idk-x', 'tenant-apollo-001', 'POST /api/v1/new-thing', 'h', 200)"],
    "orphan-patient": ["UPDATE patients SET user_id = 'usr-a000000' WHERE id = (SELECT min(id) FROM patients "
                       "WHERE user_id IS NOT NULL)"],
    "orphan-quote": ["INSERT INTO quotes (id, tenant_id, case_id, amount, currency) VALUES "
                     "('quo-x', 'tenant-fortis-002', (SELECT min(c.id) FROM cases c WHERE NOT EXISTS (SELECT 1 "
                     "FROM case_shares s WHERE s.case_id = c.id AND s.target_tenant_id = 'tenant-fortis-002')), 1, "
                     "'INR')"],
    "orphan-idempotency-case": ["INSERT INTO idempotency_keys (key, tenant_id, route, request_hash, response_status, "
                                "response_body) VALUES ('idk-y', 'tenant-apollo-001', 'POST /api/v1/cases', 'h', 201, "
                                "'{\"case_id\": \"case-does-not-exist\"}')"],
    "rls-disabled": ["ALTER TABLE messages DISABLE ROW LEVEL SECURITY"],
    "rls-not-forced": ["ALTER TABLE cases NO FORCE ROW LEVEL SECURITY"],
    "rls-no-policy": ["DROP POLICY tenant_isolation ON quotes"],
}
EXPECTED = {
    "wrong-schema-head": ("wrong-schema-head", "a1b2c3d4e5f6"),
    "two-schema-heads": ("wrong-schema-head", "ffffffffffff"),
    "target-missing": ("target-tenant", "does not exist"),
    "target-settings": ("target-tenant", "currency"),
    "target-inactive": ("target-tenant", "not active"),
    "target-unprotected": ("target-tenant", "not protected"),
    "unclassified-event": ("unclassified-event_type", "mystery.happened"),
    "unclassified-route": ("unclassified-route", "POST /api/v1/new-thing"),
    "orphan-patient": ("orphans", "patients.user_id -> users"),
    "orphan-quote": ("orphans", "quo-x"),
    "orphan-idempotency-case": ("orphans", "idk-y"),
    "rls-disabled": ("rls-off", "messages: RLS lacks enabled"),
    "rls-not-forced": ("rls-off", "cases: RLS lacks forced"),
    "rls-no-policy": ("rls-off", "quotes: RLS lacks policy"),
}


def test_the_unbroken_copy_is_ready(fresh_db: str) -> None:
    done = run_cutover(fresh_db, "dry-run", "--json")
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["verdict"] == "READY"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_blocker_blocks_and_writes_nothing(fresh_db: str, cutover_plan: Plan, tmp_path: Path, case: str) -> None:
    execute_sql(fresh_db, *BROKEN[case])
    code, fragment = EXPECTED[case]
    dry = run_cutover(fresh_db, "dry-run", "--json")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    result = json.loads(dry.stdout)
    assert result["verdict"] == "BLOCKED"
    found = [b for b in result["blockers"] if b["code"] == code]
    assert found, result["blockers"]
    assert any(fragment in b["message"] or fragment in b["rows"] for b in found), found

    before = checksum(fresh_db, cutover_plan, include_audit=True)
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report))
    assert done.returncode == 1, done.stderr
    assert "BLOCKED" in done.stderr and code in done.stderr
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before
    assert json.loads(report.read_text())["commit_status"] == "rolled_back"

    script = run_cutover(fresh_db, "--dry-run", script=True)
    assert script.returncode == 1 and "BLOCKED" in script.stdout


def test_a_committed_cutover_is_reported_as_already_done(fresh_db: str, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    first = run_cutover(fresh_db, "--execute", "--operator-confirmed", "--report-path", str(report), script=True)
    assert first.returncode == 0, first.stderr
    dry = run_cutover(fresh_db, "--dry-run", "--json", script=True)
    assert dry.returncode == 1
    assert [b["code"] for b in json.loads(dry.stdout)["blockers"]] == ["already-cut-over"]


@pytest.mark.parametrize("args, env, fragment", [
    (["execute"], {}, "--operator-confirmed"),
    (["execute", "--operator-confirmed"], {"CUTOVER_ACTOR": ""}, "CUTOVER_ACTOR"),
    (["execute", "--operator-confirmed", "--lock-timeout", "soon"], {}, "--lock-timeout must be a duration"),
    (["execute", "--operator-confirmed", "--report-path", "/nonexistent-dir/r.json"], {}, "does not exist"),
    (["execute", "--operator-confirmed", "--report-path", "/proc/version"], {}, "not writable"),
    (["reverse", "--operator-confirmed", "--report-path", "/nonexistent-dir/r.json"], {}, "not found"),
    (["--execute", "--sweep"], {}, "pass one of"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(fresh_db: str, cutover_plan: Plan, args: list[str],
                                                         env: dict[str, str], fragment: str) -> None:
    before = checksum(fresh_db, cutover_plan, include_audit=True)
    script = args[0].startswith("--")
    done = run_cutover(fresh_db, *args, script=script, extra_env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before


def test_the_database_password_never_appears(fresh_db: str, tmp_path: Path) -> None:
    _, password = split_password(fresh_db)
    assert password
    report = tmp_path / "r.json"
    outputs = []
    for args in (["dry-run"], ["execute", "--operator-confirmed", "--report-path", str(report), "--json"],
                 ["sweep", "--report-path", str(report)], ["execute", "--operator-confirmed", "--report-path",
                                                          str(tmp_path / "again.json")]):
        done = run_cutover(fresh_db, *args, extra_env={"CUTOVER_LOCK_TIMEOUT": "2s"})
        outputs += [done.stdout, done.stderr]
    bad = fresh_db.replace(password, password + "-wrong")
    done = run_cutover(bad, "dry-run")
    assert done.returncode == 2 and "authentication failed" in done.stderr
    outputs += [done.stdout, done.stderr, report.read_text()]
    assert all(password not in text for text in outputs)
    assert json.loads(report.read_text())["database"].count("***") == 1
