"""Regression tests for bugs the Hypothesis row mixes found, each named after what it broke."""

from __future__ import annotations

import json
from pathlib import Path

from cutover.core import db
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import checksum, execute_sql, run_checks, run_cutover

ODD_IDS = ("evt-back\\slash", "evt-tab\there", "evt-new\nline", 'evt-"quoted", comma', "evt-患者😀")


def test_ids_with_backslashes_tabs_and_newlines_reach_the_report_unchanged(
    fresh_db: str, cutover_plan: Plan, cutover_settings: Settings, tmp_path: Path
) -> None:
    """The allow-list was spooled with COPY's text format, which escapes backslashes (and tabs,
    newlines): an id ``idk-11\\`` came back as ``idk-11\\\\``, so A10 failed and reverse missed it."""
    before = checksum(fresh_db, cutover_plan)
    with db.connection(fresh_db) as conn:
        for i, rid in enumerate(ODD_IDS):
            conn.execute("INSERT INTO events (id, tenant_id, event_type, payload, source_service) "
                         "VALUES (%s, 'tenant-apollo-001', 'case.created', NULL, %s)", (rid, f"api{i}"))
        conn.commit()
    report_path = tmp_path / "r.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert set(ODD_IDS) <= set(report["allow_list"]["events"])
    assert run_checks(DatabaseUnderCheck(fresh_db, report, report_path, True), cutover_plan, cutover_settings) == set()
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", "--report-path", str(report_path))
    assert back.returncode == 0, back.stderr
    execute_sql(fresh_db, "DELETE FROM events WHERE source_service LIKE 'api_'")
    assert checksum(fresh_db, cutover_plan) == before


def test_a5_counts_the_audit_event_each_sweep_writes(
    fresh_db: str, cutover_plan: Plan, cutover_settings: Settings, tmp_path: Path
) -> None:
    """A5 expected the audit table to grow by the execute's own events only; every sweep writes a
    ``cutover.swept`` event too, so Set A failed A5 after any sweep that moved something."""
    report_path = tmp_path / "r.json"
    assert run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report_path)).returncode == 0
    execute_sql(fresh_db, "INSERT INTO events (id, tenant_id, event_type, payload, source_service) "
                          "VALUES ('evt-late', 'tenant-apollo-001', 'message.sent', NULL, 'api')")
    swept = run_cutover(fresh_db, "sweep", "--report-path", str(report_path))
    assert swept.returncode == 0 and "SWEEP COMMITTED" in swept.stdout, swept.stderr
    report = json.loads(report_path.read_text())
    assert len(report["sweeps"]) == 1
    assert run_checks(DatabaseUnderCheck(fresh_db, report, report_path, True), cutover_plan, cutover_settings) == set()
