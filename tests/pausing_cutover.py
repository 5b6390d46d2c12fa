"""The ``cutover`` command with the tests' hooks: held after step N, or with a small audit part size.

Production code carries no test hook, so they live here. With ``$CUTOVER_TEST_PAUSE_AFTER_STEP``
this wrapper wraps each step of the reference execute and, after that step, says so on stderr and
holds the open transaction (probing the session, so that killing the process or the backend ends
it) until the test kills one of them: the atomicity tests' fault hook. With
``$CUTOVER_TEST_AUDIT_PART_BYTES`` the allow-list's audit part size is that many bytes instead of
64 MB, so a test database of a few thousand rows takes the parts path. With
``$CUTOVER_TEST_SIGINT_AFTER_COMMIT`` the process sends itself SIGINT as soon as COMMIT returns. Run as
``python tests/pausing_cutover.py <cutover arguments>``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the checkout's package

from cutover import cli
from cutover.core.db import Connection
from cutover.reference import engine

PAUSE_ENV = "CUTOVER_TEST_PAUSE_AFTER_STEP"
PART_BYTES_ENV = "CUTOVER_TEST_AUDIT_PART_BYTES"
SIGINT_AFTER_COMMIT_ENV = "CUTOVER_TEST_SIGINT_AFTER_COMMIT"
HOLD_S = 600
_held: dict[int, Connection] = {}  # id(run) -> the connection of that run's transaction


def _hold(run: engine.Run) -> None:
    print(f"cutover: paused after step {run.number} ({PAUSE_ENV})", file=sys.stderr, flush=True)
    deadline = time.monotonic() + HOLD_S
    conn = _held.get(id(run))
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if conn is not None:
            conn.execute("SELECT 1")


def _record_connections() -> None:
    """Keep each run's transaction connection, as ``guarded`` opens it, for :func:`_hold` to probe: the
    reference execute carries no handle for tests."""
    original = engine.guarded

    @contextmanager
    def guarded(url: str, run: engine.Run, *args: Any, **kwargs: Any) -> Iterator[Connection]:
        with original(url, run, *args, **kwargs) as conn:
            _held[id(run)] = conn
            yield conn

    engine.guarded = guarded


def pause_after(step_number: int) -> None:
    """Make every execute/sweep/reverse run hold after ``step_number``."""
    _record_connections()
    original = engine.Run.step

    @contextmanager
    def step(self: engine.Run, name: str) -> Iterator[dict[str, Any]]:
        steps: AbstractContextManager[dict[str, Any]] = original(self, name)
        with steps as info:
            yield info
        if self.number == step_number:
            _hold(self)

    engine.Run.step = step  # type: ignore[method-assign]


def sigint_after_commit() -> None:
    """The operator's Ctrl-C landing the moment the server has committed, before anyone has said so."""
    original = engine.commit

    def commit(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # the handler runs here, on the next bytecode, as it would at any point

    engine.commit = commit


if __name__ == "__main__":
    if SIGINT_AFTER_COMMIT_ENV in os.environ:
        sigint_after_commit()
    if PAUSE_ENV in os.environ:
        pause_after(int(os.environ[PAUSE_ENV]))
    if PART_BYTES_ENV in os.environ:
        engine.AUDIT_PART_BYTES = int(os.environ[PART_BYTES_ENV])
    raise SystemExit(cli.main())
