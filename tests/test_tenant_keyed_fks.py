"""Tenant-keyed foreign keys: ``FOREIGN KEY (tenant_id, patient_id) REFERENCES patients (tenant_id, id)``.

The pattern multi-tenant schemas use so that no row can point at another tenant's parent. The
cutover changes the tenant column on both sides, one table at a time, so such a key holds only if
its check waits for the end of the moves. Each case adds one such key to a fresh copy of the
reference data (the only change), as an operator's schema has it, and runs the commands as an
operator does: a key the cutover cannot move is a blocker everywhere the schema is judged (dry
run, execute's in-transaction pre-flight, ``plan check``, A1) and nothing is written; a DEFERRABLE
one is deferred for the transaction and checked before COMMIT.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import checksum, execute_sql, failing_evidence, run_cutover, scalar

# The parent's (tenant, id) must be unique for a key to point at it.
PARENT_UNIQUE = "ALTER TABLE patients ADD CONSTRAINT patients_tenant_id_id_key UNIQUE (tenant_id, id)"
CONSTRAINT = "cases_tenant_patient_fkey"


def tenant_key(clause: str) -> list[str]:
    return [PARENT_UNIQUE, f"ALTER TABLE cases ADD CONSTRAINT {CONSTRAINT} FOREIGN KEY (tenant_id, patient_id) "
                           f"REFERENCES patients (tenant_id, id) {clause}"]


BLOCKED = {
    # clause: (blocker code, what its message must say)
    "": ("tenant-key-not-deferrable", f"ALTER TABLE cases ALTER CONSTRAINT {CONSTRAINT} DEFERRABLE"),
    "ON UPDATE NO ACTION NOT DEFERRABLE": ("tenant-key-not-deferrable", "ALTER CONSTRAINT"),
    "ON UPDATE RESTRICT": ("tenant-key-restrict", "ON UPDATE NO ACTION DEFERRABLE"),
    "ON UPDATE RESTRICT DEFERRABLE": ("tenant-key-restrict", "ON UPDATE NO ACTION DEFERRABLE"),
    "ON UPDATE SET NULL DEFERRABLE": ("tenant-key-cuts-links", "SET NULL"),
    "ON UPDATE SET DEFAULT": ("tenant-key-cuts-links", "SET DEFAULT"),
    "ON UPDATE CASCADE": ("tenant-key-not-deferrable", "ALTER CONSTRAINT"),
}


@pytest.mark.parametrize("clause", sorted(BLOCKED))
def test_a_tenant_key_the_cutover_cannot_move_blocks_everywhere_and_writes_nothing(
        fresh_db: str, cutover_plan: Plan, cutover_settings: Settings, tmp_path: Path, clause: str) -> None:
    execute_sql(fresh_db, *tenant_key(clause))
    code, fix = BLOCKED[clause]

    dry = run_cutover(fresh_db, "dry-run", "--json")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    found = [b for b in json.loads(dry.stdout)["blockers"] if b["code"] == code]
    assert len(found) == 1, dry.stdout
    message = found[0]["message"]
    assert CONSTRAINT in message and "cases" in message and "patients" in message and fix in message, message

    before = checksum(fresh_db, cutover_plan, include_audit=True)
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={tmp_path / 'r.json'}")
    assert done.returncode == 1, done.stderr
    assert "BLOCKED inside the transaction" in done.stderr and code in done.stderr
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before

    check = run_cutover(fresh_db, "plan", "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert any(line.startswith(f"{code}: ") and CONSTRAINT in line for line in check.stdout.splitlines()), check.stdout

    failed = failing_evidence(DatabaseUnderCheck(fresh_db, None, None, sandbox=True), cutover_plan, cutover_settings)
    assert "A1" in failed and CONSTRAINT in failed["A1"], failed.get("A1")


@pytest.mark.parametrize("clause", ["DEFERRABLE INITIALLY IMMEDIATE", "ON UPDATE CASCADE DEFERRABLE"])
def test_a_deferrable_tenant_key_is_deferred_for_the_moves_and_every_command_is_clean(
        fresh_db: str, cutover_plan: Plan, cutover_settings: Settings, tmp_path: Path, clause: str) -> None:
    # DEFERRABLE INITIALLY IMMEDIATE: without SET CONSTRAINTS the move of patients broke it at step 9.
    # ON UPDATE CASCADE: the move of patients moved their cases too, and step 14 rolled back on the counts.
    # It replaces the plain key, as in a schema that has only the tenant-keyed one.
    execute_sql(fresh_db, "ALTER TABLE cases DROP CONSTRAINT cases_patient_id_fkey", *tenant_key(clause))
    planned = json.loads(run_cutover(fresh_db, "dry-run", "--json").stdout)["planned"]
    dry = run_cutover(fresh_db, "dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"deferred during the moves: {CONSTRAINT} (cases -> patients)" in dry.stdout, dry.stdout
    check = run_cutover(fresh_db, "plan", "check")
    assert "tenant-key" not in check.stdout and CONSTRAINT not in check.stdout, check.stdout
    # ... and it is the foreign key behind the plan's reference cases.patient_id -> patients.
    assert "cases.patient_id" not in check.stdout, check.stdout

    report = tmp_path / "r.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={report}")
    assert done.returncode == 0, done.stderr
    cut = json.loads(report.read_text())
    assert cut["deferred_constraints"] == [CONSTRAINT]
    assert cut["moved"] == planned, (cut["moved"], planned)  # the cascade moved nothing on its own
    assert failing_evidence(DatabaseUnderCheck(fresh_db, cut, report, sandbox=True), cutover_plan,
                            cutover_settings) == {}

    # A late patient with a case on the source after the commit: the sweep moves both under the same key.
    execute_sql(fresh_db, "INSERT INTO patients (id, tenant_id) VALUES ('pat-late', 'tenant-apollo-001')",
                "INSERT INTO cases (id, tenant_id, patient_id, status, specialty) VALUES "
                "('case-late', 'tenant-apollo-001', 'pat-late', 'open', 'x')")
    swept = run_cutover(fresh_db, "sweep", f"--report-path={report}")
    assert swept.returncode == 0, swept.stderr
    assert scalar(fresh_db, "SELECT tenant_id FROM cases WHERE id = 'case-late'") == "tenant-curaway-patients"

    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", f"--report-path={report}")
    assert back.returncode == 0, back.stderr
    assert scalar(fresh_db, "SELECT count(*) FROM cases WHERE tenant_id = 'tenant-curaway-patients'") == 0


def test_a_deferred_tenant_key_that_would_break_rolls_back_naming_it_before_commit(
        fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    # A provider-owned row (it never moves) pinned to a patient on the source by a deferrable key: the
    # patient's move breaks it, and the check at verification says so instead of a COMMIT-time error.
    execute_sql(fresh_db, PARENT_UNIQUE, "ALTER TABLE provider_profiles ADD COLUMN patient_id text",
                "UPDATE provider_profiles SET tenant_id = 'tenant-apollo-001', patient_id = (SELECT min(id) FROM "
                "patients WHERE tenant_id = 'tenant-apollo-001') WHERE id = (SELECT min(id) FROM provider_profiles)",
                "ALTER TABLE provider_profiles ADD CONSTRAINT profiles_tenant_patient_fkey FOREIGN KEY "
                "(tenant_id, patient_id) REFERENCES patients (tenant_id, id) DEFERRABLE")
    before = checksum(fresh_db, cutover_plan, include_audit=True)
    report = tmp_path / "r.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={report}")
    assert done.returncode == 4, done.stderr
    assert "profiles_tenant_patient_fkey" in done.stderr and "provider_profiles -> patients" in done.stderr, done.stderr
    assert json.loads(report.read_text())["commit_status"] == "rolled_back"
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before


def test_a_cascade_that_would_move_a_row_the_plan_keeps_blocks(fresh_db: str) -> None:
    # A provider-owned row (it never moves) under an ON UPDATE CASCADE key to a patient who moves: the
    # cascade would carry it to the patient tenant against the plan.
    execute_sql(fresh_db, PARENT_UNIQUE, "ALTER TABLE provider_profiles ADD COLUMN patient_id text",
                "UPDATE provider_profiles SET tenant_id = 'tenant-apollo-001', patient_id = (SELECT min(id) FROM "
                "patients WHERE tenant_id = 'tenant-apollo-001') WHERE id = (SELECT min(id) FROM provider_profiles)",
                "ALTER TABLE provider_profiles ADD CONSTRAINT profiles_tenant_patient_fkey FOREIGN KEY "
                "(tenant_id, patient_id) REFERENCES patients (tenant_id, id) ON UPDATE CASCADE DEFERRABLE")
    dry = run_cutover(fresh_db, "dry-run", "--json")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    found = [b for b in json.loads(dry.stdout)["blockers"] if b["code"] == "tenant-key-cascade"]
    assert len(found) == 1 and "profiles_tenant_patient_fkey" in found[0]["message"], dry.stdout
    assert "1 provider_profiles rows" in found[0]["message"], found
