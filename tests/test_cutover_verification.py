"""Step 14's proof: from the transaction's own statistics where nothing can bend the moves, else by counting.

Recounting every table after the moves was most of step 14 at scale 100. The statistics path is
only taken when no user trigger or rule on a plan table can make a move do something other than
what its statement says; these tests hold both paths to the same verdicts on a real PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

from psycopg import sql

from cutover.core.plan import Plan
from cutover.reference import reports
from tests.support import checksum, execute_sql, run_cutover


def test_a_plain_schema_is_verified_from_the_transactions_statistics(fresh_db: str, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report))
    assert done.returncode == 0, done.stderr
    assert json.loads(report.read_text())["verified_by"] == "statistics"


def test_a_trigger_that_bends_a_move_is_caught_by_the_full_count(fresh_db: str, cutover_plan: Plan,
                                                                  tmp_path: Path) -> None:
    """A BEFORE UPDATE trigger keeps one patient row on the source: the statistics would still show
    the moved count updated, so their path must not be taken, and the recount rolls the cutover back."""
    rule = cutover_plan.moving[-1]
    tenant = cutover_plan.tenant_column
    execute_sql(fresh_db, sql.SQL(
        "CREATE FUNCTION keep_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.{k}::text = (SELECT min({k}::text) FROM {t} WHERE {c} = {src}) THEN NEW.{c} := OLD.{c}; END IF; "
        "RETURN NEW; END $$").format(k=sql.Identifier(rule.key[0]), t=sql.Identifier(rule.name),
                                     c=sql.Identifier(tenant), src=sql.Literal(cutover_plan.source)),
        sql.SQL("CREATE TRIGGER keep_one BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION keep_one()").format(
            sql.Identifier(rule.name)))
    before = checksum(fresh_db, cutover_plan, include_audit=True)
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report))
    assert done.returncode == 4, done.stderr
    error = json.loads(report.read_text())["error"]
    assert "verification failed" in error and f"{rule.name}:" in error, error
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before


def test_a_sweep_and_a_reverse_are_verified_the_same_way(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    assert run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report)).returncode == 0
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", "--report-path", str(report), "--json")
    assert back.returncode == 0, back.stderr
    assert sum(json.loads(back.stdout)["moved"].values()) == sum(json.loads(report.read_text())["moved"].values())


def test_a_trigger_that_reclassifies_a_moved_row_is_caught_by_the_allow_list(fresh_db: str, cutover_plan: Plan,
                                                                            tmp_path: Path) -> None:
    """The allow-list is read back at step 14 as the patient-owned rows on the target. A BEFORE UPDATE
    trigger that moves a row but turns it into a provider one passes every count (the tenants'
    deltas are the moved counts), so the allow-list's count must be held to the moved count too."""
    rule = next(r for r in cutover_plan.moving if r.owner == "classified" and r.classification is not None)
    assert rule.column is not None and rule.classification is not None
    other = next(v for v in cutover_plan.classifications[rule.classification]
                 if v not in cutover_plan.patient_values(rule))
    execute_sql(fresh_db, sql.SQL(
        "CREATE FUNCTION reclassify_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.{k}::text = (SELECT min({k}::text) FROM {t} WHERE {c} = {src} AND {col} = ANY({patient})) "
        "THEN NEW.{col} := {other}; END IF; RETURN NEW; END $$").format(
            k=sql.Identifier(rule.key[0]), t=sql.Identifier(rule.name), c=sql.Identifier(cutover_plan.tenant_column),
            src=sql.Literal(cutover_plan.source), col=sql.Identifier(rule.column),
            patient=sql.Literal(list(cutover_plan.patient_values(rule))), other=sql.Literal(other)),
        sql.SQL("CREATE TRIGGER reclassify_one BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION reclassify_one()")
        .format(sql.Identifier(rule.name)))
    before = checksum(fresh_db, cutover_plan, include_audit=True)
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report))
    assert done.returncode == 4, done.stderr
    error = json.loads(report.read_text())["error"]
    assert f"{rule.name}: the move moved" in error and "patient-owned rows are on" in error, error
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before


def test_a_reverse_on_a_plain_schema_is_verified_from_the_statistics_and_puts_every_row_back(
        fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    """Where no trigger or rule can bend a move, the reverse does not read its listed rows back: each
    move's count equal to its list and the transaction's statistics prove them. The database must
    still be exactly as before the cutover."""
    before = checksum(fresh_db, cutover_plan)
    report = tmp_path / "report.json"
    assert run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report)).returncode == 0
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", "--report-path", str(report), "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(report.read_text())["reverse"]["verified_by"] == "statistics"
    assert checksum(fresh_db, cutover_plan) == before


def test_a_trigger_that_bends_a_reverse_is_caught_and_rolls_it_back(fresh_db: str, cutover_plan: Plan,
                                                                   tmp_path: Path) -> None:
    """A BEFORE UPDATE trigger, made after the cutover, keeps one listed row on the target as the
    reverse moves it back: the statistics path is off where a trigger exists, the listed rows are
    read back, and the reverse rolls back with nothing changed."""
    report = tmp_path / "report.json"
    assert run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report)).returncode == 0
    rule = cutover_plan.moving[-1]
    tenant = cutover_plan.tenant_column
    kept = str(reports.load(report)["allow_list"][rule.name][0])  # a row the cutover moved
    execute_sql(fresh_db, sql.SQL(
        "CREATE FUNCTION keep_one_back() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.{k}::text = {kept} THEN NEW.{c} := OLD.{c}; END IF; "
        "RETURN NEW; END $$").format(k=sql.Identifier(rule.key[0]), c=sql.Identifier(tenant), kept=sql.Literal(kept)),
        sql.SQL("CREATE TRIGGER keep_one_back BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION keep_one_back()")
        .format(sql.Identifier(rule.name)))
    cut_over = checksum(fresh_db, cutover_plan, include_audit=True)
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", "--report-path", str(report))
    assert back.returncode == 4, back.stderr
    assert "verification failed" in back.stderr and f"{rule.name}: 1 listed rows are not on" in back.stderr, back.stderr
    assert checksum(fresh_db, cutover_plan, include_audit=True) == cut_over
