"""One verdict an operator can trust: READY only when all 21 passed, Set B only on a real target,
a setup error and an interruption said as such, the same line in the terminal and the operator log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from cutover.core import db
from cutover.core.exit_codes import ExitCode
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.reference import aftercare, engine
from cutover.sandbox.backends import free_port
from cutover.suite import nextstep, verdicts
from cutover.suite.rehearsals import insert_straggler
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import operator_log, operator_tests

MATRIX = operator_tests("test_matrix")
CANARY = "canary-Verdict-7c1"


@pytest.fixture
def no_target(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DATABASE_URL", "CUTOVER_DB_URL"):
        monkeypatch.delenv(var, raising=False)


def test_set_b_without_a_target_is_a_usage_error_and_starts_no_sandbox(
    pytester: pytest.Pytester, example: Callable[..., list[str]], no_target: None
) -> None:
    args = example(**MATRIX)
    result = pytester.runpytest_subprocess("-m", "setB", *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "Set B runs against production" in out and "--db-url" in out and "DATABASE_URL" in out
    assert "sandbox:" not in out and "PASSED" not in out


def test_a_set_b_of_some_checks_only_is_never_a_pass(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck
) -> None:
    """The runbook asks for all 8: ``--check`` narrows what runs, never what the verdict waits for."""
    args = example(**MATRIX)
    result = pytester.runpytest_subprocess("-m", "setB", f"--db-url={cut_over_db.url}", "--check", "A3,A7",
                                           "-p", "no:randomly", *args)
    out = result.stdout.str()
    assert result.ret == ExitCode.INCOMPLETE, out
    assert "SET B NOT PASSED: 6 not run" in out and "SET B PASSED" not in out


def test_a_setup_error_is_the_verdict_and_is_in_the_log(
    pytester: pytest.Pytester, example: Callable[..., list[str]], no_target: None
) -> None:
    args = example(**MATRIX)
    url = f"postgresql://ops:{CANARY}@127.0.0.1:{free_port()}/prod"
    result = pytester.runpytest_subprocess("-m", "setB", f"--db-url={url}", *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == ExitCode.SETUP, out
    # the target first, password masked
    header = next(line for line in out.splitlines() if line.startswith("cutover target:"))
    assert "host 127.0.0.1" in header and "database prod" in header and "user ops" in header
    assert CANARY not in out
    log = operator_log(pytester.path)
    assert log["verdict"].startswith("SET B FAILED: setup error: cannot reach PostgreSQL at 127.0.0.1:")
    assert log["setup_error"] and log["exit_status"] == ExitCode.SETUP
    assert log["verdict"] in out
    md = (pytester.path / "artifacts" / "latest" / "operator-log.md").read_text()
    assert md.startswith(f"# Operator log: {log['verdict']}")


INTERRUPTED = """
import pytest

@pytest.mark.setA
@pytest.mark.sql
@pytest.mark.check("A1")
def test_a1():
    pass

@pytest.mark.setA
@pytest.mark.manual
@pytest.mark.check("A11")
def test_a11():
    pytest.skip("needs operator: no terminal")

@pytest.mark.setA
@pytest.mark.manual
@pytest.mark.check("A12")
def test_a12():
    raise KeyboardInterrupt  # the operator's Ctrl-C while the A12 prompt waits
"""


def test_an_interruption_says_where_the_run_stopped(pytester: pytest.Pytester,
                                                   example: Callable[..., list[str]]) -> None:
    args = example(test_checks=INTERRUPTED)
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", *args)
    out = result.stdout.str()
    assert result.ret == ExitCode.INTERRUPTED, out
    assert "REHEARSAL NOT READY: interrupted at the A12 prompt" in out
    assert "ANSWERED" not in out and "CHECKS PASSED" not in out
    log = operator_log(pytester.path)
    assert log["interrupted_at"] == "the A12 prompt"
    assert log["verdict"].startswith("REHEARSAL NOT READY: interrupted at the A12 prompt")


SQL = [f"A{i}" for i in range(1, 11)] + ["A20", "A21"]
MANUAL = [f"A{i}" for i in range(11, 20)]
ALL = [*SQL, *MANUAL]
WAITING = {c: "needs operator: no terminal and no --answers" for c in MANUAL}


@pytest.mark.parametrize(("outcomes", "reasons", "line", "code"), [
    ({c: "passed" for c in ALL}, {}, "REHEARSAL READY: 21 of 21 checks passed", ExitCode.OK),
    ({**{c: "passed" for c in SQL}, "A11": "passed", "A12": "failed", **{c: "skipped" for c in MANUAL[2:]}},
     {**WAITING, "A13": "operator skipped A13: app down"},
     "REHEARSAL NOT READY: A12 FAIL, A13 SKIP, 6 unanswered", ExitCode.FAILED),
    ({**{c: "passed" for c in SQL}, **{c: "skipped" for c in MANUAL}}, WAITING,
     "REHEARSAL NOT READY: 9 unanswered", ExitCode.INCOMPLETE),
    ({c: "passed" for c in SQL}, {}, "REHEARSAL NOT READY: 9 unanswered", ExitCode.INCOMPLETE),
    ({c: "passed" for c in MANUAL}, {}, "REHEARSAL NOT READY: 12 not run", ExitCode.INCOMPLETE),
])
def test_the_rehearsal_verdict_names_every_check_that_did_not_pass(
    outcomes: dict[str, str], reasons: dict[str, str], line: str, code: int
) -> None:
    found = verdicts.decide(verdicts.REHEARSAL, ALL, outcomes, reasons, MANUAL)
    assert (found.line, found.exit_code) == (line, code)


def test_set_b_verdicts() -> None:
    set_b = ["A1", "A2", "A3", "A4", "A6", "A7", "A8", "A9"]
    assert verdicts.decide(verdicts.SET_B, set_b, dict.fromkeys(set_b, "passed"), {}, []).line == "SET B PASSED: 8 of 8"
    failed = verdicts.decide(verdicts.SET_B, set_b, {**dict.fromkeys(set_b, "passed"), "A3": "failed", "A4": "failed"},
                             {}, [])
    assert (failed.line, failed.exit_code) == ("SET B FAILED: A3 FAIL, A4 FAIL", ExitCode.FAILED)


def test_a_failing_set_b_says_what_the_runbook_says_to_do_now(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck, cutover_plan: Plan
) -> None:
    insert_straggler(cut_over_db.url, cutover_plan)  # a lost write landed on the source after the commit
    args = example(**MATRIX)
    result = pytester.runpytest_subprocess("-m", "setB", f"--db-url={cut_over_db.url}", "-p", "no:randomly",
                                           f"--report-path={cut_over_db.report_path}", *args)
    out = result.stdout.str()
    assert result.ret == ExitCode.FAILED, out
    assert "SET B FAILED: A3 FAIL" in out
    committed = str((cut_over_db.report or {})["committed_at"])[:10]
    assert f"the cutover committed at {committed}" in out and "now T+0:" in out and "the T+0:30 line is in" in out
    assert f'cutover sweep --db-url "$DATABASE_URL" --report-path={cut_over_db.report_path}' in out
    assert f'cutover reverse --dry-run --db-url "$DATABASE_URL" --report-path={cut_over_db.report_path}' in out
    assert 'cutover reverse --operator-confirmed --db-url "$DATABASE_URL"' in out
    md = (pytester.path / "artifacts" / "latest" / "operator-log.md").read_text()
    assert "## Next step" in md and 'cutover sweep --db-url "$DATABASE_URL"' in md
    assert operator_log(pytester.path)["next_step"][0].startswith("NEXT STEP")
    # a --db-url target's server version is in the report's environment, as a sandbox's is
    props = (pytester.path / "artifacts" / "latest" / "allure-results" / "environment.properties").read_text()
    assert "postgres=15." in props, props


def break_after_commit(database: DatabaseUnderCheck, plan: Plan) -> sql.Composable:
    """One lost write on the source (A3 fails) and one patient row created on the target since the
    commit, which the reverse moves back although the report does not list it; the rows' predicate."""
    st = plan.rehearsal.straggler
    marked = sql.SQL("{col}->>{key} = {marker}").format(
        col=sql.Identifier(st.marker_column), key=sql.Literal(st.marker_key), marker=sql.Literal(st.marker))
    insert_straggler(database.url, plan)
    with db.connection(database.url) as conn:  # the first one became a patient row on the target
        conn.execute(sql.SQL("UPDATE {t} SET {c} = {target} WHERE {m}").format(
            t=sql.Identifier(st.table), c=sql.Identifier(plan.tenant_column),
            target=sql.Literal(plan.target), m=marked))
        conn.commit()
    insert_straggler(database.url, plan)
    return marked


def test_before_t_plus_30_the_next_step_says_what_the_reverse_would_move(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck, cutover_plan: Plan
) -> None:
    marked = break_after_commit(cut_over_db, cutover_plan)
    table = cutover_plan.rehearsal.straggler.table
    listed = {t: len(keys) for t, keys in (cut_over_db.report or {})["allow_list"].items()}
    expected = {t.name: listed.get(t.name, 0) + (t.name == table) for t in cutover_plan.moving}
    args = example(**MATRIX)
    result = pytester.runpytest_subprocess("-m", "setB", f"--db-url={cut_over_db.url}", "-p", "no:randomly",
                                           f"--report-path={cut_over_db.report_path}", *args)
    out = result.stdout.str()
    assert result.ret == ExitCode.FAILED, out
    per_table = ", ".join(f"{t} {n}" for t, n in expected.items())
    moves = (f"the reverse would move {sum(expected.values())} rows back to {cutover_plan.source} "
             f"({per_table}); 1 of them created since the commit ({table} 1)")
    assert moves in out, out
    assert moves in (pytester.path / "artifacts" / "latest" / "operator-log.md").read_text()
    # the dry run changed nothing: the row created since the commit is still on the target
    with db.connection(cut_over_db.url, read_only=True) as conn:
        tenants = conn.execute(sql.SQL("SELECT {c} FROM {t} WHERE {m} ORDER BY 1").format(
            c=sql.Identifier(cutover_plan.tenant_column), t=sql.Identifier(table), m=marked)).fetchall()
    assert sorted(tenants) == sorted([(cutover_plan.source,), (cutover_plan.target,)])


def _writes(url: str, plan: Plan) -> tuple[int, int, int]:
    """Rows inserted, updated and deleted in the plan's tables and in pg_class (a temp table is a write
    there), as PostgreSQL counts them (rolled back too), once every other session on the database has
    ended (a backend flushes its counts on exit)."""
    with db.connection(url, autocommit=True) as conn:
        for _ in range(400):
            if not db.one(conn, "SELECT count(*) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()")[0]:
                break
            conn.execute("SELECT pg_sleep(0.05)")
        row = db.one(conn, "SELECT sum(n_tup_ins)::bigint, sum(n_tup_upd)::bigint, sum(n_tup_del)::bigint "
                           "FROM pg_stat_all_tables WHERE (schemaname = current_schema AND relname = ANY(%s)) "
                           "OR (schemaname = 'pg_catalog' AND relname = 'pg_class')", (list(plan.table_names),))
    return (int(row[0]), int(row[1]), int(row[2]))


def test_the_reverse_preview_writes_nothing_waits_for_no_lock_and_counts_what_the_reverse_moves(
    cut_over_db: DatabaseUnderCheck, cutover_plan: Plan, cutover_settings: Settings
) -> None:
    break_after_commit(cut_over_db, cutover_plan)
    report = cut_over_db.report or {}
    before = _writes(cut_over_db.url, cutover_plan)
    preview = nextstep.reverse_preview(cut_over_db.url, cutover_plan, str(cut_over_db.report_path), cutover_settings)
    assert _writes(cut_over_db.url, cutover_plan) == before, "the preview wrote (even if it rolled back)"
    # A writer holding every plan table (EXCLUSIVE conflicts with all but ACCESS SHARE) and the
    # cutover's advisory lock: a read-only preview neither waits for it nor fails on it.
    with db.connection(cut_over_db.url) as holder:
        holder.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in cutover_plan.table_names)))
        holder.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (cutover_plan.name,))
        held = nextstep.reverse_preview(cut_over_db.url, cutover_plan, str(cut_over_db.report_path),
                                        cutover_settings)
        holder.rollback()
    assert held == preview
    counted = aftercare.reverse_counts(cut_over_db.url, cutover_plan, engine.Timeouts(), report)
    record = aftercare.reverse(cut_over_db.url, cutover_plan, "test", engine.Timeouts(), report)
    assert record["commit_status"] == "committed"
    assert counted["planned"] == record["moved"] and sum(record["moved"].values()) > 0
    assert counted["new_since_commit"] == record["new_since_commit"] == {cutover_plan.rehearsal.straggler.table: 1}
    per_table = ", ".join(f"{t} {n}" for t, n in record["moved"].items())
    assert preview.startswith(f"the reverse would move {sum(record['moved'].values())} rows back to "
                              f"{cutover_plan.source} ({per_table}); 1 of them"), preview


def test_without_the_report_the_reverse_preview_rebuilds_it_from_the_database(
    cut_over_db: DatabaseUnderCheck, cutover_plan: Plan, cutover_settings: Settings
) -> None:
    insert_straggler(cut_over_db.url, cutover_plan)  # on the source: not the reverse's business
    with_report = nextstep.reverse_preview(cut_over_db.url, cutover_plan, str(cut_over_db.report_path),
                                           cutover_settings)
    listed = sum(len(keys) for keys in (cut_over_db.report or {})["allow_list"].values())
    assert with_report.startswith(f"the reverse would move {listed} rows back to {cutover_plan.source} (")
    assert nextstep.reverse_preview(cut_over_db.url, cutover_plan, None, cutover_settings) == with_report
    gone = nextstep.reverse_preview(cut_over_db.url, cutover_plan, "/nonexistent/report.json", cutover_settings)
    assert gone == with_report


def test_past_the_t_plus_30_line_the_next_step_is_the_snapshot_restore(cutover_plan: Plan) -> None:
    commit = datetime(2026, 5, 2, 2, 0, tzinfo=UTC)
    late = nextstep.advice(["A4"], (commit, "run-1"), commit + timedelta(minutes=41), "r.json",
                           "2.6 s measured on the dev branch", cutover_plan)
    text = "\n".join(late)
    assert "now T+0:41:00; the T+0:30 line passed 0:11:00 ago" in text
    assert "restore the pre-cutover snapshot" in text and "2.6 s measured on the dev branch" in text
    assert "cutover reverse" not in text and "cutover sweep" not in text  # A4 is no straggler
    early = "\n".join(nextstep.advice(["A4"], (commit, "run-1"), commit + timedelta(minutes=9), None, None,
                                      cutover_plan))
    assert "the T+0:30 line is in 0:21:00 (at 02:30:00 UTC)" in early
    assert "cutover reverse --dry-run" in early and "snapshot" not in early


def test_a_newer_server_note_ends_every_verdict_line_and_changes_no_exit_code() -> None:
    expected, manual = ["A1", "A11"], ["A11"]
    note = "rehearsed on 18 for a PostgreSQL 16 production"
    ready = verdicts.decide(verdicts.REHEARSAL, expected, {"A1": "passed", "A11": "passed"}, {}, manual, note=note)
    assert ready.line == f"REHEARSAL READY: 2 of 2 checks passed; {note}" and ready.exit_code == ExitCode.OK
    failed = verdicts.decide(verdicts.REHEARSAL, expected, {"A1": "failed"}, {}, manual, note=note)
    assert failed.line.endswith(f"; {note}") and failed.exit_code == ExitCode.FAILED
    plain = verdicts.decide(verdicts.REHEARSAL, expected, {"A1": "passed", "A11": "passed"}, {}, manual)
    assert plain.line == "REHEARSAL READY: 2 of 2 checks passed"
