"""Killing the cutover anywhere leaves the database exactly as it was: 14 steps plus COMMIT.

The execute is paused after step N by tests/pausing_cutover.py (the transaction open, its
locks held), then its session is killed from a second connection, or its client is SIGKILLed.
"During COMMIT" uses a deferred constraint trigger, installed only in the test database, that
sleeps while COMMIT fires it: the kill lands while the COMMIT statement is running.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from cutover.core.plan import Plan
from tests.support import PAUSE_ENV, checksum, execute_sql, scalar, spawn_cutover

STEPS = 14
APP = "cutover-execute"


def wait_for(predicate: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def backend_pid(url: str) -> int | None:
    pid = scalar(url, "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
                  (APP,))
    return None if pid is None else int(pid)


def kill(url: str, proc: object, how: str) -> None:
    if how == "terminate":
        pid = backend_pid(url)
        assert pid is not None, "the cutover's session is not there to kill"
        assert scalar(url, "SELECT pg_terminate_backend(%s)", (pid,))
    else:
        proc.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]


def assert_untouched(url: str, plan: Plan, pristine: dict[str, str], proc: object) -> None:
    proc.wait(timeout=60)  # type: ignore[attr-defined]
    wait_for(lambda: backend_pid(url) is None, "the killed session to go away")
    assert checksum(url, plan, include_audit=True) == pristine


@pytest.mark.parametrize("how", ["terminate", "sigkill"])
@pytest.mark.parametrize("step", range(1, STEPS + 1))
def test_killed_after_each_step_changes_nothing(fresh_db: str, cutover_plan: Plan, tmp_path: Path, step: int,
                                                how: str) -> None:
    pristine = checksum(fresh_db, cutover_plan, include_audit=True)
    report = tmp_path / "report.json"
    proc = spawn_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report),
                         extra_env={PAUSE_ENV: str(step)})
    assert proc.stderr is not None
    for line in proc.stderr:
        if "paused after step" in line:
            assert f"paused after step {step} " in line
            break
    else:
        raise AssertionError(f"execute ended without pausing: rc={proc.wait()}")
    kill(fresh_db, proc, how)
    assert_untouched(fresh_db, cutover_plan, pristine, proc)
    if how == "terminate":
        assert proc.returncode == 4
        written = json.loads(report.read_text())
        assert written["commit_status"] == "rolled_back" and "connection lost" in written["error"]
        assert [s["step"] for s in written["steps"]] == list(range(1, step + 1))


@pytest.mark.parametrize("how", ["terminate", "sigkill"])
def test_killed_during_commit_changes_nothing(fresh_db: str, cutover_plan: Plan, tmp_path: Path, how: str) -> None:
    a = cutover_plan.audit
    execute_sql(
        fresh_db,
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.{a.type_column} = '{a.completed}' THEN PERFORM pg_sleep(30); END IF; RETURN NULL; END $$",
        f"CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON {a.table} DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION slow_commit()",
    )
    pristine = checksum(fresh_db, cutover_plan, include_audit=True)
    report = tmp_path / "report.json"
    proc = spawn_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report))
    wait_for(lambda: scalar(fresh_db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                                      "AND state = 'active' AND query = 'COMMIT'", (APP,)) == 1,
             "the cutover to be inside COMMIT")
    kill(fresh_db, proc, how)
    assert_untouched(fresh_db, cutover_plan, pristine, proc)
    if how == "terminate":
        assert proc.returncode == 4
        written = json.loads(report.read_text())
        assert written["commit_status"] == "rolled_back"
        assert "did NOT commit" in written["error"]
