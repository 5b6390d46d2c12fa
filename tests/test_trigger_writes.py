"""Rows that triggers write (issue 23, point 2).

Medical applications keep an audit trail: a trigger records every UPDATE of ``patients`` into a
tenant-scoped ``audit_log`` (the row's new tenant, the table, the row id). The cutover's move of
``patients`` is such an UPDATE, so it writes one ``audit_log`` row per moved patient, on the tenant the
trigger gives it. Undeclared, that trigger is a blocker naming it, both tables and the plan line to add;
declared on the written table (``written_by = ["patients.patients_audit"]``) the cutover expects those
rows and verifies them, and the report, A5, A10, the sweep and the reverse account for them.

The schema is the reference model plus this one table and trigger, written here (not the shared third
model) so that each test reads in one place what it runs on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from cutover.core import db
from cutover.core.errors import PlanError
from cutover.core.options import Settings
from cutover.core.plan import DEFAULT_PLAN, load_plan
from cutover.sandbox.backends import ServerInfo
from cutover.suite import content
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import execute_sql, failing_evidence, operator_tests, rehearse_on, run_cutover, scalar

SRC, TGT = "tenant-apollo-001", "tenant-curaway-patients"

AUDIT_LOG = (
    "CREATE TABLE audit_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "tenant_id text NOT NULL REFERENCES tenants (id), table_name text NOT NULL, row_id text NOT NULL, "
    "logged_at timestamptz NOT NULL DEFAULT now())",
    "ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE audit_log FORCE ROW LEVEL SECURITY",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON audit_log TO app_user",
    "CREATE POLICY tenant_isolation ON audit_log USING (tenant_id = current_setting('app.tenant_id', true))",
    # The trail as the application left it: one row per patient, on the patient's tenant.
    "INSERT INTO audit_log (tenant_id, table_name, row_id) SELECT tenant_id, 'patients', id FROM patients",
    """CREATE FUNCTION patients_audit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO audit_log (tenant_id, table_name, row_id) VALUES (NEW.tenant_id, TG_TABLE_NAME, NEW.id);
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER patients_audit AFTER UPDATE ON patients FOR EACH ROW EXECUTE FUNCTION patients_audit()",
)

# audit_log planned like any patient table: its own rows move with their patients.
PLANNED = '\n[tables.audit_log]\nkey = "id"\nowner = "patient"\n'
DECLARED = PLANNED + 'written_by = ["patients.patients_audit"]\n'


def plan_file(tmp_path: Path, table: str) -> Path:
    text = DEFAULT_PLAN.read_text()
    steps = '    ["events"],\n]'
    assert steps in text
    path = tmp_path / "plan.toml"
    path.write_text(text.replace(steps, '    ["events"],\n    ["audit_log"],\n]', 1) + table)
    return path


@pytest.fixture
def audited_db(fresh_db: str) -> str:
    """The restored reference snapshot with the audit trail and its trigger."""
    execute_sql(fresh_db, *AUDIT_LOG)
    return fresh_db


def audit_rows(url: str) -> dict[str, int]:
    rows = scalar_rows(url, "SELECT tenant_id, count(*) FROM audit_log GROUP BY 1")
    return {str(t): int(str(n)) for t, n in rows}


def scalar_rows(url: str, query: str) -> list[tuple[object, ...]]:
    with db.connection(url, read_only=True) as conn:
        return [tuple(r) for r in conn.execute(query).fetchall()]


def dry_run(url: str, plan: Path) -> dict[str, object]:
    dry = run_cutover(url, "dry-run", "--json", f"--plan={plan}")
    assert dry.returncode in (0, 1), dry.stderr
    result: dict[str, object] = json.loads(dry.stdout)
    return result


def test_an_undeclared_audit_trigger_blocks_the_dry_run_and_execute_changes_nothing(
        audited_db: str, tmp_path: Path, cutover_settings: Settings) -> None:
    """The issue's report: READY, then execute rolled back at verification with
    ``audit_log: total 2000, baseline 1000 + written 0``."""
    plan = plan_file(tmp_path, PLANNED)
    found = dry_run(audited_db, plan)
    assert found["verdict"] == "BLOCKED", found
    assert found["trigger_writes"] == [{"trigger": "patients.patients_audit", "writes": "audit_log",
                                        "declared": False}]
    shown = run_cutover(audited_db, "dry-run", f"--plan={plan}").stdout
    assert "trigger patients_audit on patients writes audit_log on each moved row: NOT declared" in shown
    (blocker,) = [b for b in found["blockers"] if b["code"] == "undeclared-trigger-writes"]  # type: ignore[attr-defined]
    message = blocker["message"]
    assert "trigger patients_audit on patients" in message and "writes audit_log" in message, message
    assert 'written_by = ["patients.patients_audit"]' in message and "[tables.audit_log]" in message, message

    before = audit_rows(audited_db)
    report = tmp_path / "r.json"
    done = run_cutover(audited_db, "execute", "--operator-confirmed", f"--plan={plan}", f"--report-path={report}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "undeclared-trigger-writes" in done.stderr
    assert audit_rows(audited_db) == before
    assert scalar(audited_db, "SELECT count(*) FROM patients WHERE tenant_id = %s", (TGT,)) == 0
    # Check A1 compares the plan with the schema in Set A and Set B: the same finding.
    a1 = failing_evidence(DatabaseUnderCheck(audited_db, None, None, sandbox=True), load_plan(plan),
                          cutover_settings)["A1"]
    assert "trigger patients_audit on patients writes audit_log" in a1, a1


def test_a_declared_audit_trigger_commits_and_its_rows_are_verified_where_the_trigger_put_them(
        audited_db: str, tmp_path: Path, cutover_settings: Settings) -> None:
    plan = plan_file(tmp_path, DECLARED)
    found = dry_run(audited_db, plan)
    assert found["verdict"] == "READY", found
    patients = scalar(audited_db, "SELECT count(*) FROM patients WHERE tenant_id = %s", (SRC,))
    before = audit_rows(audited_db)
    report_path = tmp_path / "r.json"
    done = run_cutover(audited_db, "execute", "--operator-confirmed", f"--plan={plan}",
                       f"--report-path={report_path}")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    assert report["moved"]["audit_log"] == before[SRC]  # the trail's own rows moved with their patients
    assert report["triggered"] == {"audit_log": {TGT: patients}}
    # Patient-owned on the target, the trigger's rows are listed with the moved ones: A10 and the reverse
    # find every patient row the cutover put there.
    assert len(report["allow_list"]["audit_log"]) == before[SRC] + patients
    after = audit_rows(audited_db)
    assert after == {TGT: before[SRC] + patients, **{t: n for t, n in before.items() if t != SRC}}
    # A5 counts the trigger's rows as written where they landed; A10 finds them in the allow-list.
    target = DatabaseUnderCheck(audited_db, report, report_path, sandbox=True)
    assert failing_evidence(target, load_plan(plan), cutover_settings) == {}
    without = {k: v for k, v in report.items() if k != "triggered"}
    assert "audit_log: 2000 rows, expected 1000" in failing_evidence(target, load_plan(plan), cutover_settings,
                                                                     without)["A5"]

    rebuilt_path = tmp_path / "rebuilt.json"
    rebuilt = run_cutover(audited_db, "report", "--rebuild", f"--plan={plan}", f"--report-path={rebuilt_path}")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    again = json.loads(rebuilt_path.read_text())
    assert again["triggered"] == report["triggered"] and again["listed_written"] == {"audit_log": patients}
    assert failing_evidence(DatabaseUnderCheck(audited_db, again, rebuilt_path, sandbox=True), load_plan(plan),
                            cutover_settings) == {}


def _cut_over_and_sweep_a_late_patient(
        audited_db: str, tmp_path: Path) -> tuple[Path, Path, int, dict[str, int], Any]:
    """Execute under the declared plan, then sweep one patient that landed on the source after it: the
    sweep fires the trigger once, on the target. Returns the plan, the report's path, the source's
    patients and audit rows before the cutover, and the report after the sweep."""
    plan = plan_file(tmp_path, DECLARED)
    patients = int(scalar(audited_db, "SELECT count(*) FROM patients WHERE tenant_id = %s", (SRC,)))
    before = audit_rows(audited_db)
    report_path = tmp_path / "r.json"
    done = run_cutover(audited_db, "execute", "--operator-confirmed", f"--plan={plan}",
                       f"--report-path={report_path}")
    assert done.returncode == 0, done.stdout + done.stderr
    execute_sql(audited_db, sql.SQL("INSERT INTO patients (id, tenant_id) VALUES ('late-patient', {})").format(
        sql.Literal(SRC)))
    swept = run_cutover(audited_db, "sweep", "--json", f"--plan={plan}", f"--report-path={report_path}")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    record = json.loads(swept.stdout)
    assert record["moved"] == {"patients": 1} and record["triggered"] == {"audit_log": {TGT: 1}}
    report = json.loads(report_path.read_text())
    return plan, report_path, patients, before, report


def test_the_sweep_and_the_reverse_expect_the_rows_the_trigger_writes_on_their_moves(
        audited_db: str, tmp_path: Path, cutover_settings: Settings) -> None:
    """A late patient swept fires the trigger once more, on the target; the reverse moves every patient row
    the cutover and the sweep put on the target back (the trigger's included) and fires it per row again."""
    plan, report_path, patients, before, report = _cut_over_and_sweep_a_late_patient(audited_db, tmp_path)
    assert len(report["sweeps"][-1]["ids"]["audit_log"]) == 1  # the trigger's row, listed for A10 and the reverse
    target = DatabaseUnderCheck(audited_db, report, report_path, sandbox=True)
    assert failing_evidence(target, load_plan(plan), cutover_settings) == {}

    back = run_cutover(audited_db, "reverse", "--json", "--operator-confirmed", f"--plan={plan}",
                       f"--report-path={report_path}")
    assert back.returncode == 0, back.stdout + back.stderr
    reversed_ = json.loads(back.stdout)
    assert reversed_["moved"]["patients"] == patients + 1
    assert reversed_["triggered"] == {"audit_log": {SRC: patients + 1}}
    # Every row on the source again: the trail as it was, the cutover's and the sweep's rows moved back,
    # and one more per patient the reverse moved.
    assert audit_rows(audited_db) == {**before, SRC: before[SRC] + 2 * (patients + 1)}
    assert scalar(audited_db, "SELECT count(*) FROM patients WHERE tenant_id = %s", (TGT,)) == 0


def test_plan_check_names_the_undeclared_trigger_and_a_declared_one_the_database_lacks(
        audited_db: str, tmp_path: Path) -> None:
    check = run_cutover(audited_db, "plan", "check", f"--plan={plan_file(tmp_path, PLANNED)}")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "undeclared-trigger-writes: trigger patients_audit on patients writes audit_log" in check.stdout

    execute_sql(audited_db, "DROP TRIGGER patients_audit ON patients")
    check = run_cutover(audited_db, "plan", "check", f"--plan={plan_file(tmp_path, DECLARED)}")
    assert check.returncode == 1, check.stdout + check.stderr
    assert ("missing-trigger: [tables.audit_log].written_by: no enabled trigger patients_audit on patients fires "
            "on the move's UPDATE of tenant_id") in check.stdout


def test_only_triggers_the_move_fires_count_and_a_declaration_covers_what_the_source_does_not_show(
        audited_db: str, tmp_path: Path) -> None:
    """``UPDATE OF`` another column is not fired by a move (it sets the tenant only); dynamic SQL is not read,
    and the plan's declaration is what covers it; a per-statement trigger cannot be expected per row."""
    execute_sql(audited_db, "DROP TRIGGER patients_audit ON patients",
                "CREATE TRIGGER patients_audit AFTER UPDATE OF user_id ON patients FOR EACH ROW "
                "EXECUTE FUNCTION patients_audit()")
    assert dry_run(audited_db, plan_file(tmp_path, PLANNED))["verdict"] == "READY"

    execute_sql(audited_db, "DROP TRIGGER patients_audit ON patients",
                """CREATE FUNCTION patients_audit_dynamic() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    EXECUTE format('INSERT INTO %I (tenant_id, table_name, row_id) VALUES ($1, $2, $3)',
                                   'audit_' || 'log') USING NEW.tenant_id, TG_TABLE_NAME, NEW.id;
                    RETURN NEW;
                END $$""",
                "CREATE TRIGGER patients_audit AFTER UPDATE ON patients FOR EACH ROW "
                "EXECUTE FUNCTION patients_audit_dynamic()")
    assert dry_run(audited_db, plan_file(tmp_path, PLANNED))["verdict"] == "READY"  # not seen: not readable
    found = dry_run(audited_db, plan_file(tmp_path, DECLARED))
    assert found["verdict"] == "READY", found
    assert found["trigger_writes"] == [{"trigger": "patients.patients_audit", "writes": "audit_log",
                                        "declared": True}]
    report = tmp_path / "r.json"
    done = run_cutover(audited_db, "execute", "--operator-confirmed", f"--plan={plan_file(tmp_path, DECLARED)}",
                       f"--report-path={report}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit_log: 1000 rows written by its triggers" in done.stdout

    execute_sql(audited_db, "DROP TRIGGER patients_audit ON patients",
                "CREATE TRIGGER patients_audit AFTER UPDATE ON patients FOR EACH STATEMENT "
                "EXECUTE FUNCTION patients_audit()")
    (blocker,) = [b for b in dry_run(audited_db, plan_file(tmp_path, DECLARED))["blockers"]  # type: ignore[attr-defined]
                  if b["code"] == "trigger-per-statement"]
    assert "FOR EACH STATEMENT" in blocker["message"] and "DISABLE TRIGGER patients_audit" in blocker["message"]


@pytest.mark.parametrize(("entry", "error"), [
    ("patients", r'"patients" is not "table.trigger" with a moving table of the plan'),
    ("tenants.audit", r'"tenants.audit" is not "table.trigger"'),
    ("audit_log.own", r'"audit_log.own" is a trigger on audit_log itself'),
])
def test_a_written_by_entry_that_names_no_moving_table_stops_the_plan(tmp_path: Path, entry: str,
                                                                      error: str) -> None:
    with pytest.raises(PlanError, match=r"plan \[tables.audit_log\].written_by: " + error):
        load_plan(plan_file(tmp_path, PLANNED + f'written_by = ["{entry}"]\n'))


def test_the_written_table_must_move_after_the_table_whose_trigger_writes_it(tmp_path: Path) -> None:
    path = plan_file(tmp_path, DECLARED)
    path.write_text(path.read_text().replace('    ["patients"],\n', '    ["audit_log"],\n    ["patients"],\n', 1)
                    .replace('    ["audit_log"],\n]', ']', 1))
    with pytest.raises(PlanError, match=r"audit_log moves before patients, whose trigger writes it; list audit_log "
                                        r"in a later \[plan\].move_steps group"):
        load_plan(path)


def test_the_content_proofs_expect_exactly_the_rows_the_triggers_wrote(
        audited_db: str, tmp_path: Path, cutover_server: ServerInfo) -> None:
    """A5-content (after the cutover) and the rollback proof (after the reverse) compare every planned row with
    the database as it was: the trigger's rows are new rows, as many as the audit events record, no more."""
    plan_path = plan_file(tmp_path, DECLARED)
    plan = load_plan(plan_path)
    before = db.create_database(cutover_server.admin_url, f"{db.database_name(audited_db)}_before",
                                template=db.database_name(audited_db))
    try:
        report = tmp_path / "r.json"
        done = run_cutover(audited_db, "execute", "--operator-confirmed", f"--plan={plan_path}",
                           f"--report-path={report}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert content.compare(before, audited_db, plan, moved_back=True).same

        back = run_cutover(audited_db, "reverse", "--operator-confirmed", f"--plan={plan_path}",
                           f"--report-path={report}")
        assert back.returncode == 0, back.stdout + back.stderr
        assert content.compare(before, audited_db, plan, moved_back=False).same

        execute_sql(audited_db, "INSERT INTO audit_log (tenant_id, table_name, row_id) "
                                "VALUES ('tenant-apollo-001', 'patients', 'not-by-the-cutover')")
        found = content.compare(before, audited_db, plan, moved_back=False)
        assert [d.line() for d in found.differences] == [
            "audit_log [*] (rows written by its written_by triggers): before 2000 recorded in the audit events, "
            "after 2001 new rows"]
    finally:
        db.drop_database(cutover_server.admin_url, db.database_name(before))


def test_a_declared_trigger_that_writes_fewer_rows_or_takes_rows_away_rolls_the_cutover_back(
        audited_db: str, tmp_path: Path) -> None:
    """Declared is not trusted: the rows must be there, one per moved row, and no tenant may lose any."""
    plan = plan_file(tmp_path, DECLARED)
    before = audit_rows(audited_db)
    execute_sql(audited_db, "DROP TRIGGER patients_audit ON patients",
                "CREATE TRIGGER patients_audit AFTER UPDATE ON patients FOR EACH ROW "
                "WHEN (NEW.user_id IS NOT NULL) EXECUTE FUNCTION patients_audit()")
    without_user = int(scalar(audited_db, "SELECT count(*) FROM patients WHERE tenant_id = %s AND user_id IS NULL",
                              (SRC,)))
    assert without_user > 0
    report = tmp_path / "r.json"
    done = run_cutover(audited_db, "execute", "--operator-confirmed", f"--plan={plan}", f"--report-path={report}")
    assert done.returncode == 4, done.stdout + done.stderr
    assert (f"audit_log: total {sum(before.values()) + 1000 - without_user}, baseline {sum(before.values())} + "
            f"written 0 + 1000 by its written_by triggers") in done.stderr
    assert audit_rows(audited_db) == before

    execute_sql(audited_db, "DROP TRIGGER patients_audit ON patients",
                """CREATE FUNCTION patients_audit_moves() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN  -- two rows on the new tenant, one taken from the source's trail: the total still adds up
                    INSERT INTO audit_log (tenant_id, table_name, row_id)
                    VALUES (NEW.tenant_id, TG_TABLE_NAME, NEW.id), (NEW.tenant_id, TG_TABLE_NAME, NEW.id);
                    DELETE FROM audit_log WHERE id = (SELECT min(id) FROM audit_log WHERE tenant_id = OLD.tenant_id);
                    RETURN NEW;
                END $$""",
                "CREATE TRIGGER patients_audit AFTER UPDATE ON patients FOR EACH ROW "
                "EXECUTE FUNCTION patients_audit_moves()")
    done = run_cutover(audited_db, "execute", "--operator-confirmed", f"--plan={plan}", f"--report-path={report}")
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"audit_log: beyond the {before[SRC] - 1000} moved rows the tenants changed by {SRC} -1000" \
        in done.stderr, done.stderr
    assert "its written_by triggers add rows, they never take one away" in done.stderr
    assert audit_rows(audited_db) == before


def test_a_rehearsal_on_the_audited_schema_passes_the_twelve_checks_and_a20_active(
        pytester: pytest.Pytester, example: Any, audited_db: str, tmp_path: Path) -> None:
    """Through the plugin, as `-m setA --rehearse=DBNAME` runs it on a dev branch: dry run READY, execute
    committed with the trigger's rows, the 12 checks passed; A5-content names audit_log (a dev branch keeps
    only each table's sums, which cannot tell the trigger's rows from the rest; docs/plan.md says so)."""
    plan = plan_file(tmp_path, DECLARED)
    args = example(**operator_tests("test_matrix", "test_sweep_active", "test_rollback"))
    result = pytester.runpytest("-m", "setA", f"--plan={plan}", *rehearse_on(audited_db),
                                "-p", "no:randomly", "-rA", *args)
    out = result.stdout.str()
    assert "ALL 12 CHECKS PASSED" in out, out
    assert any(ln.startswith("PASSED") and "A20active_" in ln for ln in out.splitlines()), out
    assert "audit_log [*] (rows, content sum): before 1000 rows" in out, out
    assert "REHEARSAL NOT READY: A5-content FAIL, rollback SKIP, 9 unanswered" in out and result.ret == 1, out


def test_a_declared_trigger_that_writes_on_the_source_tenant_is_handled_by_execute_sweep_and_reverse(
        audited_db: str, tmp_path: Path, cutover_settings: Settings) -> None:
    """A trail kept on the tenant a row leaves (``OLD.tenant_id``): each move writes its rows on the tenant
    it moves from. The execute's later move of audit_log took them; the sweep and the reverse, which move
    the rows they listed first, left them behind and rolled back (``audit_log: 1 patient-owned rows still
    on tenant-apollo-001``). Now they follow, listed with the rows moved, counted as the trigger's."""
    execute_sql(audited_db, """CREATE OR REPLACE FUNCTION patients_audit() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO audit_log (tenant_id, table_name, row_id) VALUES (OLD.tenant_id, TG_TABLE_NAME, NEW.id);
                    RETURN NEW;
                END $$""")
    plan, report_path, patients, before, report = _cut_over_and_sweep_a_late_patient(audited_db, tmp_path)
    target = DatabaseUnderCheck(audited_db, report, report_path, sandbox=True)
    bad = failing_evidence(target, load_plan(plan), cutover_settings)
    assert bad == {}, "\n".join(bad.values())
    back = run_cutover(audited_db, "reverse", "--json", "--operator-confirmed", f"--plan={plan}",
                       f"--report-path={report_path}")
    assert back.returncode == 0, back.stdout + back.stderr
    assert json.loads(back.stdout)["triggered"] == {"audit_log": {SRC: patients + 1}}
    assert scalar(audited_db, "SELECT count(*) FROM patients WHERE tenant_id = %s", (TGT,)) == 0
    # Every row on the source: the trail as it was, and two per patient (the cutover's or the sweep's, and
    # the reverse's), each written on the target's side of a move and carried back with it.
    assert audit_rows(audited_db) == {**before, SRC: before[SRC] + 2 * (patients + 1)}
