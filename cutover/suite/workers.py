"""xdist coordination: what the controller hands each worker, and how a process knows which it is.

One place for the ``workerinput`` keys, so the fixtures and hooks ask questions ("am I a worker?",
"who owns the shared server?") instead of each reading xdist's dict in its own way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypedDict

import pytest

from cutover.suite.state import RUN, SHARED_DIR, RunState


class WorkerInput(TypedDict):
    """What a worker receives from the controller (xdist adds ``workerid`` and more of its own)."""

    workerid: str
    cutover_shared_dir: str
    cutover_owner_pid: int
    cutover_run: dict[str, Any]


def worker_input(config: pytest.Config) -> WorkerInput | None:
    """None in the controller (or without xdist)."""
    found: WorkerInput | None = getattr(config, "workerinput", None)
    return found


def is_worker(config: pytest.Config) -> bool:
    return worker_input(config) is not None


def worker_id(config: pytest.Config) -> str:
    found = worker_input(config)
    return found["workerid"] if found is not None else "main"


def owner_pid(config: pytest.Config) -> int:
    """The process that owns the shared server: the controller, which stops it at the end."""
    found = worker_input(config)
    return int(found["cutover_owner_pid"]) if found is not None else os.getpid()


def adopt_controller_state(config: pytest.Config) -> bool:
    """In a worker, take the controller's shared directory and run state; False in the controller."""
    found = worker_input(config)
    if found is None:
        return False
    config.stash[SHARED_DIR] = Path(found["cutover_shared_dir"])
    config.stash[RUN] = RunState.from_wire(found["cutover_run"])
    return True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller → worker: where the shared server is described, who owns it, the run state."""
    node.workerinput["cutover_shared_dir"] = str(node.config.stash[SHARED_DIR])
    node.workerinput["cutover_owner_pid"] = os.getpid()
    node.workerinput["cutover_run"] = node.config.stash[RUN].to_wire()
