"""A target with rows of its own (issue 27, point 4): there before the cutover, they are not a fault.

A new organization comes with its own billing entity (a provider-owned row) and may already hold rows
the plan calls patient-owned. The placement checks compare with the report's baseline of what the
target held; "already cut over" is what the audit trail says, never rows found on the target; the
allow-list is the rows the cutover moved, not the target's own; and the reverse leaves those alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import checksum, execute_sql, failing_evidence, run_cutover, scalar

TGT = "tenant-curaway-patients"
OWN = [  # the target's own billing entity (provider-owned) and one event of its own (patient-classified)
    "INSERT INTO provider_profiles (id, tenant_id, display_name, specialty) VALUES ('prof-own', "
    "'tenant-curaway-patients', 'Curaway billing', 'billing')",
    "INSERT INTO events (id, tenant_id, event_type, payload, source_service) VALUES ('evt-own', "
    "'tenant-curaway-patients', 'intake.started', '{}', 'api')",
]


def test_a_target_with_rows_of_its_own_is_cut_over_checked_and_reversed(
        fresh_db: str, cutover_plan: Plan, tmp_path: Path, cutover_settings: Settings) -> None:
    execute_sql(fresh_db, *OWN)
    before = checksum(fresh_db, cutover_plan)
    dry = run_cutover(fresh_db, "dry-run")
    assert dry.returncode == 0 and "READY" in dry.stdout, dry.stdout + dry.stderr
    assert "tenant-curaway-patients holds patient-owned rows of its own (events=1): they stay there" in dry.stdout
    path = tmp_path / "r.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={path}")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(path.read_text())
    assert "evt-own" not in report["allow_list"]["events"]  # the cutover's rows, not the target's own
    assert report["moved"]["events"] == len(report["allow_list"]["events"])
    target = DatabaseUnderCheck(fresh_db, report, path, sandbox=True)
    assert failing_evidence(target, cutover_plan, cutover_settings) == {}
    again = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={tmp_path / 'again.json'}")
    assert again.returncode == 3, again.stdout + again.stderr
    preview = run_cutover(fresh_db, "reverse", "--dry-run", f"--report-path={path}")
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert f"REVERSE DRY RUN: {sum(report['moved'].values())} rows would move back" in preview.stdout, preview.stdout
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", f"--report-path={path}")
    assert back.returncode == 0, back.stdout + back.stderr
    assert scalar(fresh_db, "SELECT tenant_id FROM events WHERE id = 'evt-own'") == TGT
    assert checksum(fresh_db, cutover_plan) == before


def test_a_provider_owned_row_the_target_held_before_is_no_a6_fault_but_one_added_since_is(
        fresh_db: str, cutover_plan: Plan, tmp_path: Path, cutover_settings: Settings) -> None:
    execute_sql(fresh_db, OWN[0])
    path = tmp_path / "r.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={path}")
    assert done.returncode == 0, done.stdout + done.stderr
    target = DatabaseUnderCheck(fresh_db, json.loads(path.read_text()), path, sandbox=True)
    assert failing_evidence(target, cutover_plan, cutover_settings) == {}
    # Set B without the report: A6 takes the baseline from the committed cutover's audit event.
    unreported = DatabaseUnderCheck(fresh_db, None, None, sandbox=True)
    assert set(failing_evidence(unreported, cutover_plan, cutover_settings)) == {"A5", "A10"}
    execute_sql(fresh_db, "UPDATE provider_profiles SET tenant_id = 'tenant-curaway-patients' WHERE id = "
                          "(SELECT min(id) FROM provider_profiles WHERE tenant_id = 'tenant-apollo-001')")
    failed = failing_evidence(target, cutover_plan, cutover_settings)
    assert set(failed) == {"A5", "A6"}, failed  # A5: a row left the source's counts after the baseline
    assert "found:    2 provider-owned rows, 1 of them held before the cutover" in failed["A6"], failed["A6"]
