"""The window's T+ timeline: the commit and the sweeps read from the database, Set B and the rollback
decision placed on it, in the terminal and the operator log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from cutover.core.plan import Plan
from cutover.suite import timeline
from cutover.suite.rehearsals import insert_straggler
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import execute_sql, operator_tests, run_cutover

COMMIT = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def test_t_plus_counts_hours_and_minutes_from_the_commit() -> None:
    assert timeline.t_plus(timedelta(minutes=7, seconds=59)) == "T+0:07"
    assert timeline.t_plus(timedelta(hours=1, minutes=31)) == "T+1:31"
    assert timeline.t_plus(timedelta(minutes=-2)) == "T-0:02"


@pytest.mark.parametrize(("minutes", "passed", "fragment"), [
    (5, True, "none: Set B passed"),
    (5, False, "rollback option 2 (cutover reverse) is open for 25 more min, until T+0:30"),
    (31, False, "T+0:30 has passed: rollback option 1 (snapshot restore) only"),
    (5, None, "no Set B verdict in this run: rollback option 2"),
])
def test_the_rollback_decision_follows_the_runbooks_line(minutes: int, passed: bool | None, fragment: str) -> None:
    window = timeline.Window("run-1", COMMIT)
    assert fragment in window.rollback(COMMIT + timedelta(minutes=minutes), passed)


def test_a_reversed_cutover_says_so_and_no_commit_means_no_t_plus() -> None:
    assert "already reversed at T+0:12" in timeline.Window("r", COMMIT, [], COMMIT + timedelta(minutes=12)).rollback(
        COMMIT + timedelta(minutes=20), False)
    lines = timeline.lines(timeline.Window(), COMMIT, COMMIT, "Set B", True)
    assert lines[0].startswith("timeline: no committed cutover in the database, so no T+")


def test_a_rehearsal_on_the_timeline_is_no_set_b_and_starts_before_the_commit() -> None:
    # A rehearsal (Set A) starts before the cutover it executes, and its passing checks are no Set B verdict.
    started, finished = COMMIT - timedelta(seconds=20), COMMIT + timedelta(minutes=3)
    placed = timeline.lines(timeline.Window("run-1", COMMIT), started, finished, "Set A", True)
    text = "\n".join(placed)
    assert "Set B" not in text, text
    assert "T-0:00" not in text and "T-0:01  Set A started" in text, text
    assert placed[0] == "T-0:01  Set A started"  # in the order things happened
    assert placed[-1] == "T+0:03  rollback decision: none: a rehearsal, not the production window", text
    assert timeline.t_plus(timedelta(seconds=-20)) == "T-0:01"


def test_the_commit_and_sweeps_are_read_from_the_database(cut_over_db: DatabaseUnderCheck, cutover_plan: Plan,
                                                          fresh_db: str) -> None:
    assert cut_over_db.report is not None
    found = timeline.read(cut_over_db.url, cutover_plan)
    assert found.run_id == cut_over_db.report["run_id"]
    assert found.committed_at == datetime.fromisoformat(cut_over_db.report["committed_at"] or "")
    assert found.sweeps == []
    insert_straggler(cut_over_db.url, cutover_plan)
    swept = run_cutover(cut_over_db.url, "sweep")
    assert swept.returncode == 0, swept.stderr
    found = timeline.read(cut_over_db.url, cutover_plan)
    assert [n for _, n in found.sweeps] == [1]
    placed = timeline.lines(found, found.sweeps[0][0], found.sweeps[0][0] + timedelta(minutes=1), "Set B", True)
    assert placed[1].endswith("sweep committed, 1 rows moved") and placed[1].startswith("T+")  # minutes vary
    assert timeline.read(fresh_db, cutover_plan).committed_at is None  # never cut over: no T+


def test_set_b_is_placed_on_the_timeline_with_the_rollback_decision(
        pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck,
        cutover_plan: Plan) -> None:
    args = example(**operator_tests("test_matrix"))
    passed = pytester.runpytest_subprocess("-m", "setB", f"--db-url={cut_over_db.url}", *args)
    out = passed.stdout.str()
    assert passed.ret == 0, out
    assert "window timeline (T+ since the cutover's commit)" in out
    assert "T+0:00  cutover committed at" in out and "Set B passed" in out
    assert "rollback decision: none: Set B passed, the cutover stands" in out
    log = pytester.path / "artifacts" / "latest"
    assert "## Window timeline" in (log / "operator-log.md").read_text()
    assert any("Set B started" in x for x in json.loads((log / "operator-log.json").read_text())["window_timeline"])

    rule, tenant = cutover_plan.moving[0], sql.Identifier(cutover_plan.tenant_column)
    execute_sql(cut_over_db.url, sql.SQL("UPDATE {t} SET {c} = {src} WHERE ctid = (SELECT ctid FROM {t} WHERE {c} = "
                                         "{tgt} LIMIT 1)").format(t=sql.Identifier(rule.name), c=tenant,
                                                                  src=sql.Literal(cutover_plan.source),
                                                                  tgt=sql.Literal(cutover_plan.target)))
    failed = pytester.runpytest_subprocess("-m", "setB", f"--db-url={cut_over_db.url}", *args)
    out = failed.stdout.str()
    assert failed.ret == 1, out
    assert "Set B did not pass" in out
    assert "rollback decision: Set B did not pass: rollback option 2 (cutover reverse) is open for" in out
