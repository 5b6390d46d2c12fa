"""The cutover under concurrent load: writers, a second cutover, a lock held by someone else.

No timing assertion: where the contract is "fails fast" the test gives the cutover a generous
lock_timeout and shows it failed for the right reason (the advisory lock) well inside it, and
where it is "never hangs" the bound is the configured lock_timeout plus slack, not a speed figure.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
import pytest

from cutover.core import db
from cutover.core.plan import Plan
from cutover.reference import aftercare, engine
from cutover.reference.engine import StepEvent
from tests.support import PAUSE_ENV, checksum, executed, run_cutover, scalar, spawn_cutover


class Writer(threading.Thread):
    """An application writing patient events and messages on the source tenant, as fast as it can."""

    def __init__(self, url: str, plan: Plan, lock_timeout: str) -> None:
        super().__init__(daemon=True)
        self.url, self.plan, self.lock_timeout = url, plan, lock_timeout
        self.stop = threading.Event()
        self.ok: list[str] = []
        self.timed_out = 0
        self.errors: list[str] = []

    def run(self) -> None:
        with db.connection(self.url, autocommit=True) as conn:
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (self.lock_timeout,))
            case_id = conn.execute("SELECT min(id) FROM cases").fetchone()[0]  # type: ignore[index]
            i = 0
            while not self.stop.is_set():
                i += 1
                try:
                    with conn.transaction():
                        conn.execute("INSERT INTO events (id, tenant_id, event_type, payload, source_service) "
                                     "VALUES (%s, %s, 'message.sent', '{}', 'ws')", (f"w-evt-{i}", self.plan.source))
                        conn.execute("INSERT INTO messages (id, tenant_id, case_id, sender_role, body) VALUES "
                                     "(%s, %s, %s, 'patient', 'hi')", (f"w-msg-{i}", self.plan.source, case_id))
                    self.ok.append(str(i))
                except psycopg.errors.LockNotAvailable:
                    self.timed_out += 1
                except psycopg.Error as exc:  # anything else is a finding
                    self.errors.append(str(exc))
                time.sleep(0.005)


def slow_moves(event: StepEvent) -> None:
    """Stretch the transaction so writers certainly collide with it."""
    if not event.done and event.name.startswith("move"):
        time.sleep(0.3)


@pytest.mark.parametrize("writer_lock_timeout", ["30s", "100ms"])
def test_writers_during_execute_wait_or_time_out_and_the_sweep_catches_them(
    fresh_db: str, cutover_plan: Plan, writer_lock_timeout: str
) -> None:
    writer = Writer(fresh_db, cutover_plan, writer_lock_timeout)
    writer.start()
    time.sleep(0.2)
    before_writes = len(writer.ok)
    report = executed(fresh_db, cutover_plan, "test:concurrency", engine.Timeouts(lock="10s"), slow_moves)
    time.sleep(0.3)
    writer.stop.set()
    writer.join(timeout=60)
    assert report["commit_status"] == "committed"
    assert writer.errors == []
    assert len(writer.ok) > before_writes, "the writer never wrote after the cutover: the test proved nothing"
    if writer_lock_timeout == "100ms":
        assert writer.timed_out > 0, "no write timed out against the cutover's locks"

    record = aftercare.sweep(fresh_db, cutover_plan, "test:sweep", engine.Timeouts())
    assert record is not None
    moved_events = set(record["ids"].get("events", []))
    with db.connection(fresh_db) as conn:
        on_source = conn.execute("SELECT count(*) FROM events WHERE id LIKE 'w-evt-%%' AND tenant_id = %s",
                                 (cutover_plan.source,)).fetchone()
        total = conn.execute("SELECT count(*) FROM events WHERE id LIKE 'w-evt-%%'").fetchone()
    assert on_source == (0,)
    assert total == (len(writer.ok),), "a writer's committed row went missing"
    assert moved_events, "no straggler reached the sweep"
    # nothing partial: the cutover's counts match, and nothing patient-owned remains on the source
    again = run_cutover(fresh_db, "sweep", "--json")
    assert json.loads(again.stdout)["status"] == "nothing_to_move"


def test_a_second_execute_is_refused_at_once(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    first = spawn_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(tmp_path / "1.json"),
                          extra_env={PAUSE_ENV: "5"})
    assert first.stderr is not None
    for line in first.stderr:
        if "paused after step 5" in line:
            break
    started = time.monotonic()
    second = run_cutover(fresh_db, "execute", "--operator-confirmed", "--lock-timeout", "60s",
                         "--report-path", str(tmp_path / "2.json"), timeout=120)
    elapsed = time.monotonic() - started
    first.kill()
    first.wait()
    assert second.returncode == 4, second.stderr
    assert "another cutover" in second.stderr and "advisory lock" in second.stderr
    assert elapsed < 60, "the second execute waited instead of failing at once"
    print(f"second execute refused after {elapsed:.2f} s")


def test_a_lock_held_elsewhere_fails_with_a_lock_timeout_not_a_hang(fresh_db: str, cutover_plan: Plan,
                                                                     tmp_path: Path) -> None:
    pristine = checksum(fresh_db, cutover_plan, include_audit=True)
    with db.connection(fresh_db) as holder:
        holder.execute("INSERT INTO messages (id, tenant_id, case_id, sender_role, body) VALUES "
                       "('holder', %s, (SELECT min(id) FROM cases), 'patient', 'open transaction')",
                       (cutover_plan.source,))
        started = time.monotonic()
        done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--lock-timeout", "1s",
                           "--report-path", str(tmp_path / "r.json"), timeout=120)
        elapsed = time.monotonic() - started
        holder.rollback()
    assert done.returncode == 4, done.stderr
    assert "could not lock table" in done.stderr and "messages (held by pid" in done.stderr, done.stderr
    assert "within lock_timeout 1s" in done.stderr
    assert elapsed < 30
    assert scalar(fresh_db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cutover-execute'") == 0
    assert checksum(fresh_db, cutover_plan, include_audit=True) == pristine
