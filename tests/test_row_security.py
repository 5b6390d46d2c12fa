"""Row security never hides rows from the suite.

An operator connected as the tables' owner, without BYPASSRLS, under FORCE ROW LEVEL SECURITY saw
nothing: the dry run said ``READY: 0 rows planned, 0 blockers`` and Set B on a database that was
never cut over said ``SET B PASSED: 8 of 8``. Every connection now runs with ``row_security = off``,
so such a role's query fails instead of returning less, and the suite says so in one line naming the
role, the table and the fix: a BLOCKED dry run (exit 1), a setup error in Set A and Set B (exit 2).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from psycopg import sql

from cutover.core import db
from cutover.core.exit_codes import ExitCode
from cutover.core.plan import Plan
from cutover.reference import aftercare, engine
from cutover.sandbox.backends import ServerInfo
from tests.support import checksum, execute_sql, operator_tests, run_cutover

MATRIX = operator_tests("test_matrix")



@pytest.fixture
def forced_owner(fresh_db: str, cutover_server: ServerInfo, cutover_plan: Plan) -> Iterator[tuple[str, str]]:
    """(URL, role): a login role that owns every planned table, without BYPASSRLS; the reference schema
    forces row security on its tenant-scoped tables, so their policies bind the owner too."""
    role, password = f"owner_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    execute_sql(cutover_server.admin_url, sql.SQL("CREATE ROLE {} LOGIN NOBYPASSRLS PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(password)))
    execute_sql(fresh_db, sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(role)),
                *(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(t), sql.Identifier(role))
                  for t in cutover_plan.all_tables))
    try:
        yield db.with_login(fresh_db, role, password), role
    finally:
        execute_sql(fresh_db, sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)),
                    sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        execute_sql(cutover_server.admin_url, sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def assert_names_role_table_and_fix(line: str, role: str) -> None:
    assert role in line and "patients" in line, line
    assert "superuser" in line and "BYPASSRLS" in line, line


def test_every_connection_runs_with_row_security_off(empty_db: str) -> None:
    with db.connection(empty_db, read_only=True) as conn:
        assert db.one(conn, "SHOW row_security") == ("off",)
    with db.connection(empty_db, autocommit=True) as conn:
        assert db.one(conn, "SHOW row_security") == ("off",)


def test_the_dry_run_as_a_forced_owner_is_blocked_naming_role_table_and_fix(
        forced_owner: tuple[str, str]) -> None:
    url, role = forced_owner
    done = run_cutover(url, "dry-run")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "READY" not in done.stdout.replace("BLOCKED", "")
    (line,) = [x for x in done.stdout.splitlines() if "BLOCKER row-security" in x]
    assert_names_role_table_and_fix(line, role)
    assert done.stdout.splitlines()[-1].startswith("BLOCKED: ")


def test_execute_as_a_forced_owner_is_blocked_and_changes_nothing(
        forced_owner: tuple[str, str], fresh_db: str, cutover_plan: Plan, tmp_path: str) -> None:
    url, role = forced_owner
    before = checksum(fresh_db, cutover_plan, include_audit=True)
    done = run_cutover(url, "execute", "--operator-confirmed", f"--report-path={tmp_path}/r.json")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BLOCKED" in done.stderr and "row-security" in done.stderr, done.stderr
    assert_names_role_table_and_fix(done.stderr, role)
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before


def test_sweep_as_a_forced_owner_is_blocked(forced_owner: tuple[str, str]) -> None:
    url, role = forced_owner
    done = run_cutover(url, "sweep")
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("cutover: BLOCKED: row-security: ")]
    assert_names_role_table_and_fix(line, role)


def test_the_reverse_preview_as_a_forced_owner_is_blocked(forced_owner: tuple[str, str], cutover_plan: Plan) -> None:
    """What ``cutover reverse --dry-run`` and Set B's next step count: refused before the report's keys are read."""
    url, role = forced_owner
    with pytest.raises(engine.RunFailed) as info:
        aftercare.reverse_counts(url, cutover_plan, engine.Timeouts(), {"run_id": "any"})
    assert info.value.exit_code == ExitCode.BLOCKED
    assert str(info.value).startswith("row-security: ")
    assert_names_role_table_and_fix(str(info.value), role)


def test_report_rebuild_as_a_forced_owner_is_one_line(forced_owner: tuple[str, str], tmp_path: str) -> None:
    url, role = forced_owner
    done = run_cutover(url, "report", "--rebuild", f"--report-path={tmp_path}/r.json")
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert_names_role_table_and_fix(line, role)


@pytest.mark.parametrize("selection", ["setB", "setA"])
def test_set_a_and_set_b_as_a_forced_owner_are_a_setup_error_never_a_pass(
        pytester: pytest.Pytester, example: Callable[..., list[str]], forced_owner: tuple[str, str],
        selection: str) -> None:
    url, role = forced_owner
    args = example(**MATRIX)
    result = pytester.runpytest_subprocess("-m", selection, f"--db-url={url}", "-p", "no:randomly", *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == ExitCode.SETUP, out
    assert "PASSED" not in out.replace("SET B PASSED: 0", "")
    (line,) = [x for x in out.splitlines() if "BYPASSRLS" in x and "setup error" in x.lower()][:1]
    assert_names_role_table_and_fix(line, role)
    timeline = out[out.index("timeline: not read from the database"):].splitlines()
    assert "reads events through row-level security" in timeline[0] and "HINT" not in timeline[1], timeline[:2]


def test_the_go_no_go_as_a_forced_owner_is_never_go(
        pytester: pytest.Pytester, example: Callable[..., list[str]], forced_owner: tuple[str, str],
        tmp_path: str) -> None:
    url, role = forced_owner
    args = example(**operator_tests("test_matrix", "test_prereq"))
    result = pytester.runpytest_subprocess("-m", "prereq", f"--db-url={url}", f"--evidence={tmp_path}",
                                           "-p", "no:randomly", *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == ExitCode.SETUP, out
    assert "WINDOW GO" not in out and "WINDOW NO-GO: A1 not run, A2 not run" in out
    (line,) = [x for x in out.splitlines() if "the checks cannot see every row" in x][:1]
    assert_names_role_table_and_fix(line, role)
