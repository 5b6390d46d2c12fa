"""The smoke matrix as operators run it: pytester projects with the real smoke/test_matrix.py.

Set B against a --db-url is read-only (the database's own write counters prove it) and starts no
sandbox; a write from a check is refused by the database; before the cutover the checks fail and
name rows; serial and ``-n 2`` agree; and correct cutovers of ten seeds raise no false alarm.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover import db, engine, snapshot
from cutover.config import Settings
from cutover.plan import Plan
from cutover.sandbox import ServerInfo
from cutover.target import Target
from tests.cutover_support import scalar
from tests.test_smoke_faults import run_checks

MATRIX = (Path(__file__).resolve().parent.parent / "smoke" / "test_matrix.py").read_text()


def writes(url: str) -> int:
    time.sleep(1.2)  # let other sessions' pending statistics reach shared memory
    return int(scalar(url, "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables") or 0)


def test_set_b_on_a_db_url_passes_reads_only_and_starts_nothing(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: Target
) -> None:
    args = example(test_matrix=MATRIX)
    before = writes(cut_over_db.url)
    result = pytester.runpytest("-m", "setB", "--db-url", cut_over_db.url, "-p", "no:randomly", *args)
    outcomes = result.parseoutcomes()
    out = result.stdout.str()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] >= 8, out
    assert result.ret == 0, out
    assert "ALL 8 SET B CHECKS PASSED" in out
    assert "sandbox:" not in out and "cutover: reference cutover" not in out
    assert writes(cut_over_db.url) == before, "Set B changed the database"
    assert db.tool_env(cut_over_db.url)[1]["PGPASSWORD"] not in out


def test_a_write_inside_a_set_b_check_is_refused(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: Target
) -> None:
    args = example(test_sneaky="""
        import pytest

        @pytest.mark.setB
        @pytest.mark.check("A1")
        def test_sneaky_write(cutover_checker):
            cutover_checker.conn.execute("UPDATE tenants SET name = 'x'")
    """)
    result = pytester.runpytest("-m", "setB", "--db-url", cut_over_db.url, *args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot execute UPDATE in a read-only transaction*"])
    assert scalar(cut_over_db.url, "SELECT count(*) FROM tenants WHERE name = 'x'") == 0


def test_before_the_cutover_set_a_fails_and_names_rows(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str, cutover_plan: Plan
) -> None:
    args = example(test_matrix=MATRIX)
    result = pytester.runpytest("-m", "setA", "--db-url", fresh_db, "-p", "no:randomly", *args)
    out = result.stdout.str()
    assert result.ret == 1
    for check in ("A3", "A5", "A8", "A9", "A10", "A20"):
        assert f"{check:<4} FAIL" in out, check
    assert "A1   PASS" in out and "A2   PASS" in out
    assert "rows (20 shown, max 20): msg-" in out
    assert "query:    SELECT" in out
    assert "pass the execute's report with --report-path" in out
    assert db.tool_env(fresh_db)[1]["PGPASSWORD"] not in out


def test_check_selection_by_id(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: Target
) -> None:
    args = example(test_matrix=MATRIX)
    picked = pytester.runpytest("--check", "A3,a7", "--db-url", cut_over_db.url, "-p", "no:randomly", *args)
    out = picked.stdout.str()
    assert picked.ret == 0, out
    assert "A3   PASS" in out and "A7   PASS" in out and "A1   " not in out


@pytest.mark.parametrize("seed", [11, 22, 33, 44, 55, 66, 77, 88, 99, 111])
def test_no_false_alarm_on_correct_cutovers(cutover_server: ServerInfo, cutover_plan: Plan,
                                            cutover_settings: Settings, seed: int) -> None:
    name = f"seed_{uuid.uuid4().hex[:8]}"
    url = db.create_database(cutover_server.admin_url, name)
    try:
        with db.connection(url, autocommit=True) as conn:
            snapshot.ensure_roles(conn, cutover_plan)
        snapshot.load_reference(url, cutover_plan, 0.1, seed)
        with db.connection(url, autocommit=True) as conn:
            snapshot.grant_app_role(conn, cutover_plan)
        report, _ = engine.execute(url, cutover_plan, "test:seeds", engine.Timeouts())
        with db.connection(url, read_only=True) as conn:
            event = conn.execute("SELECT payload FROM events WHERE event_type = 'cutover.completed'").fetchone()
        assert event is not None
        report["allow_list"] = event[0]["allow_list"]
        assert run_checks(Target(url, report, None, True), cutover_plan, cutover_settings) == set()
    finally:
        db.drop_database(cutover_server.admin_url, name)
