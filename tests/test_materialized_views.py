"""Materialized views over moving tables that hold a tenant (issue 23, point 3).

``case_counts`` counts cases per tenant, as reporting schemas do. Unnamed by the plan it blocks the dry
run, execute's in-transaction pre-flight and ``plan check``: otherwise the cutover commits and the view
keeps counting every moved case under the source tenant until someone refreshes it. Named under
``[refresh] materialized_views`` it is refreshed inside the cutover's transaction, as a step of its own
(and by the sweep and the reverse); under ``[refresh] static`` it is acknowledged and left alone.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from psycopg import sql

from cutover.core import db
from cutover.core.errors import PlanError
from cutover.core.plan import Plan, load_plan
from tests.support import checksum, execute_sql, run_cutover, scalar

CASE_COUNTS = ("CREATE MATERIALIZED VIEW case_counts AS "
               "SELECT tenant_id, count(*) AS cases FROM cases GROUP BY tenant_id")


def view_counts(url: str) -> dict[str, int]:
    with db.connection(url, read_only=True) as conn:
        return {str(t): int(n) for t, n in conn.execute("SELECT tenant_id, cases FROM case_counts").fetchall()}


def table_counts(url: str) -> dict[str, int]:
    with db.connection(url, read_only=True) as conn:
        rows = conn.execute("SELECT tenant_id, count(*) FROM cases GROUP BY tenant_id").fetchall()
    return {str(t): int(n) for t, n in rows}


def plan_with(plan: Plan, tmp_path: Path, refresh: str) -> Path:
    """The reference plan plus a ``[refresh]`` section."""
    path = tmp_path / "plan.toml"
    path.write_text(plan.path.read_text() + "\n[refresh]\n" + refresh + "\n")
    return path


def blockers(url: str, *args: str) -> list[dict[str, str]]:
    dry = run_cutover(url, "dry-run", "--json", *args)
    assert dry.returncode in (0, 1), dry.stderr
    return list(json.loads(dry.stdout)["blockers"])


def test_an_unplanned_tenant_view_blocks_the_dry_run_execute_and_plan_check(
        fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    execute_sql(fresh_db, CASE_COUNTS)
    (found,) = [b for b in blockers(fresh_db) if b["code"] == "unplanned-materialized-view"]
    assert "case_counts carries tenant_id over cases" in found["message"]
    assert "[refresh] materialized_views" in found["message"] and "[refresh] static" in found["message"]

    before = checksum(fresh_db, cutover_plan, include_audit=True)
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report))
    assert done.returncode == 1, done.stderr
    assert "BLOCKED" in done.stderr and "unplanned-materialized-view" in done.stderr
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before

    check = run_cutover(fresh_db, "plan", "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "unplanned-materialized-view: materialized view case_counts" in check.stdout


def test_a_view_that_filters_on_a_tenant_id_blocks_and_one_that_holds_no_tenant_does_not(
        fresh_db: str, cutover_plan: Plan) -> None:
    execute_sql(fresh_db,
                "CREATE MATERIALIZED VIEW apollo_cases AS SELECT id FROM cases WHERE tenant_id = 'tenant-apollo-001'",
                "CREATE MATERIALIZED VIEW all_cases AS SELECT count(*) AS n FROM cases",
                "CREATE MATERIALIZED VIEW tenant_names AS SELECT id AS tenant_id FROM tenants")
    found = [b for b in blockers(fresh_db) if b["code"] == "unplanned-materialized-view"]
    assert [b["message"].split()[2] for b in found] == ["apollo_cases"], found
    assert "filters on a tenant id" in found[0]["message"]


def test_a_refreshed_view_counts_the_moved_cases_on_the_patient_tenant_after_execute_and_reverse(
        fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    execute_sql(fresh_db, CASE_COUNTS)
    plan = plan_with(cutover_plan, tmp_path, 'materialized_views = ["case_counts"]')
    assert blockers(fresh_db, "--plan", str(plan)) == []
    before = view_counts(fresh_db)
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report), "--plan", str(plan))
    assert done.returncode == 0, done.stderr
    after = view_counts(fresh_db)
    assert after == table_counts(fresh_db) and after != before
    assert after.get(cutover_plan.target, 0) > 0
    steps = [s["name"] for s in json.loads(report.read_text())["steps"]]
    moves = [i for i, name in enumerate(steps) if name.startswith("move ")]
    assert steps.index("refresh case_counts") == moves[-1] + 1, steps  # after the moves, before verifying

    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", "--report-path", str(report), "--plan", str(plan))
    assert back.returncode == 0, back.stderr
    assert view_counts(fresh_db) == table_counts(fresh_db) == before


def test_a_view_acknowledged_as_static_is_left_as_it_was(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    execute_sql(fresh_db, CASE_COUNTS)
    plan = plan_with(cutover_plan, tmp_path, 'static = ["case_counts"]')
    assert blockers(fresh_db, "--plan", str(plan)) == []
    before = view_counts(fresh_db)
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report), "--plan", str(plan))
    assert done.returncode == 0, done.stderr
    assert view_counts(fresh_db) == before  # the operator said so: not refreshed
    assert not [s for s in json.loads(report.read_text())["steps"] if s["name"].startswith("refresh")]


def test_a_plan_that_names_a_view_the_database_lacks_is_blocked(fresh_db: str, cutover_plan: Plan,
                                                                tmp_path: Path) -> None:
    plan = plan_with(cutover_plan, tmp_path, 'materialized_views = ["case_countz"]')
    (found,) = [b for b in blockers(fresh_db, "--plan", str(plan)) if b["code"] == "missing-materialized-view"]
    assert "[refresh].materialized_views: case_countz is not a materialized view" in found["message"]


def test_refresh_keys_are_known_and_a_view_cannot_be_both(cutover_plan: Plan, tmp_path: Path) -> None:
    loaded = load_plan(plan_with(cutover_plan, tmp_path, 'materialized_views = ["a"]\nstatic = ["b"]'))
    assert loaded.refresh_views == ("a",) and loaded.static_views == ("b",)
    with pytest.raises(PlanError, match=r"plan \[refresh\]: unknown key 'materialised_views'; did you mean "
                                        r"'materialized_views'\?"):
        load_plan(plan_with(cutover_plan, tmp_path, 'materialised_views = ["a"]'))
    with pytest.raises(PlanError, match="a is both refreshed and static"):
        load_plan(plan_with(cutover_plan, tmp_path, 'materialized_views = ["a"]\nstatic = ["a"]'))
    assert load_plan(cutover_plan.path).refresh_views == ()


def test_the_sweep_refreshes_the_view_after_moving_a_late_write(fresh_db: str, cutover_plan: Plan,
                                                                tmp_path: Path) -> None:
    execute_sql(fresh_db, "CREATE MATERIALIZED VIEW message_counts AS "
                          "SELECT tenant_id, count(*) AS n FROM messages GROUP BY tenant_id")
    plan = plan_with(cutover_plan, tmp_path, 'materialized_views = ["message_counts"]')
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report), "--plan", str(plan))
    assert done.returncode == 0, done.stderr
    case_id = scalar(fresh_db, "SELECT id FROM cases WHERE tenant_id = %s LIMIT 1", (cutover_plan.target,))
    execute_sql(fresh_db, sql.SQL("INSERT INTO messages (id, tenant_id, case_id, sender_role, body) VALUES "
                                  "('late-msg', {}, {}, 'patient', 'lost write')").format(
                                      sql.Literal(cutover_plan.source), sql.Literal(case_id)))
    counts = "SELECT n FROM message_counts WHERE tenant_id = %s"
    on_target = scalar(fresh_db, counts, (cutover_plan.target,))
    swept = run_cutover(fresh_db, "sweep", "--report-path", str(report), "--plan", str(plan), "--json")
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["moved"] == {"messages": 1}
    assert scalar(fresh_db, counts, (cutover_plan.target,)) == on_target + 1


def test_plan_draft_lists_each_tenant_view_to_be_refreshed(fresh_db: str, tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    assert run_cutover(fresh_db, "plan", "draft", f"--db-url={fresh_db}", f"--out={plain}").returncode == 0
    assert "refresh" not in tomllib.loads(plain.read_text())
    execute_sql(fresh_db, CASE_COUNTS, "CREATE MATERIALIZED VIEW all_cases AS SELECT count(*) AS n FROM cases")
    out = tmp_path / "draft.toml"
    done = run_cutover(fresh_db, "plan", "draft", f"--db-url={fresh_db}", f"--out={out}")
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert tomllib.loads(text)["refresh"] == {"materialized_views": ["case_counts"]}
    assert "# carries tenant_id over cases" in text
