"""The cutover's table locks against autovacuum: a vacuum holding a plan table must not block the window.

PostgreSQL cancels an autovacuum worker that blocks a lock request only once the waiter has waited
``deadlock_timeout`` (1 s by default); a cutover that only ever waited in shorter attempts never
let that happen and failed its lock_timeout behind a routine vacuum (reverse at scale 100, after
the mass updates of the cutover). The test runs a real autovacuum worker, slowed down by the
table's own cost settings, on a plan table of the test's private database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from cutover.core.plan import Plan, TableRule
from cutover.reference import engine
from tests.support import execute_sql, run_cutover, scalar

VACUUM_STARTS_S = 120  # a precondition's deadline (the launcher wakes every second below), not a figure


@pytest.fixture
def fast_autovacuum_launcher(fresh_db: str) -> Iterator[None]:
    """The sandbox server's launcher looks for work every second for this test only."""
    execute_sql(fresh_db, "ALTER SYSTEM SET autovacuum_naptime = '1s'", "SELECT pg_reload_conf()")
    try:
        yield
    finally:
        execute_sql(fresh_db, "ALTER SYSTEM RESET autovacuum_naptime", "SELECT pg_reload_conf()")


def _start_slow_autovacuum(url: str, table: str, column: str) -> int:
    """Make ``table`` all dead tuples with a vacuum crawling over it, and wait for the worker to hold it."""
    t, c = sql.Identifier(table), sql.Identifier(column)
    execute_sql(url, sql.SQL("ALTER TABLE {} SET (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0, "
                             "autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)").format(t))
    execute_sql(url, "BEGIN", *[sql.SQL("UPDATE {t} SET {c} = {c}").format(t=t, c=c) for _ in range(10)], "COMMIT")
    deadline = time.monotonic() + VACUUM_STARTS_S
    while time.monotonic() < deadline:
        pid = scalar(url, "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid WHERE "
                          "a.backend_type = 'autovacuum worker' AND l.granted AND l.relation = to_regclass(%s)",
                     (table,))
        if pid is not None:
            return int(pid)
        time.sleep(0.2)
    raise AssertionError(f"no autovacuum worker took {table} within {VACUUM_STARTS_S} s; is autovacuum on?")


def _largest(url: str, plan: Plan) -> TableRule:
    """The largest moving table: its vacuum lasts longest."""
    return max(plan.moving, key=lambda r: scalar(url, sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(r.name))))


def test_a_running_autovacuum_does_not_block_the_cutover(
    fresh_db: str, cutover_plan: Plan, tmp_path: Path, fast_autovacuum_launcher: None
) -> None:
    rule = _largest(fresh_db, cutover_plan)
    worker = _start_slow_autovacuum(fresh_db, rule.name, rule.key[0])
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report),
                       "--lock-timeout", "3s")
    assert done.returncode == 0, done.stderr
    assert scalar(fresh_db, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND query ILIKE %s",
                  (worker, f"%{rule.name}%")) == 0, "the vacuum should have been cancelled by the cutover's wait"


def test_a_lock_timeout_too_short_for_autovacuum_to_yield_says_so(
    fresh_db: str, cutover_plan: Plan, tmp_path: Path, fast_autovacuum_launcher: None
) -> None:
    rule = _largest(fresh_db, cutover_plan)
    _start_slow_autovacuum(fresh_db, rule.name, rule.key[0])
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(tmp_path / "r.json"),
                       "--lock-timeout", "500ms")
    assert done.returncode == 4, done.stderr
    assert f"{rule.name} (held by autovacuum worker pid" in done.stderr
    assert "deadlock_timeout (1s): raise --lock-timeout above it" in done.stderr


def schedule(budget: float, deadlock: float, autovacuum: bool) -> list[float]:
    """The attempts the lock loop makes in ``budget`` seconds when every attempt fails; the first one
    knows nothing of the holder, the next ones know whether autovacuum is among them."""
    out: list[float] = []
    while budget - sum(out) > 1e-9:
        out.append(engine.next_attempt(budget - sum(out), deadlock, autovacuum and bool(out)))
    return out


@pytest.mark.parametrize("budget", [0.5, 1.0, 3.0, 10.0, 60.0])
def test_the_attempts_stay_within_lock_timeout_and_outwait_deadlock_timeout_behind_autovacuum(budget: float) -> None:
    """Short attempts back off from writers (a writer holding one table and waiting for another would
    deadlock with a long wait); one behind autovacuum waits past deadlock_timeout when the budget allows."""
    deadlock = 1.0
    writers, vacuum = schedule(budget, deadlock, False), schedule(budget, deadlock, True)
    for attempts in (writers, vacuum):
        assert sum(attempts) == pytest.approx(budget)
        assert attempts[0] <= engine.ATTEMPT_S < deadlock, "the first attempt stays short: most waits are writers"
    assert max(writers) <= engine.ATTEMPT_S
    if budget > deadlock + engine.ATTEMPT_S:
        assert max(vacuum) > deadlock
    else:
        assert max(vacuum) <= budget
