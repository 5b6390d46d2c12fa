"""The run's state: what the controller decides once and hands to its xdist workers, typed.

xdist carries it to the workers as plain builtins (``workerinput``), so it crosses the process
border as a dict; on both sides it is a :class:`RunState`, so a misspelt key is a type error rather
than a ``KeyError`` at the end of a maintenance window. The stash keys live here too: every module of
the plugin reads the run's settings, plan and state through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.suite.catalogue import Catalogue
from cutover.suite.selection import Selection


@dataclass
class RunState:
    """Decided by the controller at configure; the log fields are filled at session end."""

    artifacts: bool  # an operator run: write the operator log and the Allure report
    stamp: str  # artifacts/<stamp>/
    started_at: str
    results: str | None  # the Allure results directory, when artifacts are wanted
    journal: str  # the manual checks' answer journal (JSONL)
    log: str | None = None  # where the operator log went
    log_error: str | None = None  # why it did not
    signature: str | None = None  # evidence.json.sig written (--sign-with)
    window: dict[str, Any] | None = None  # a go/no-go run's lines, verdict and exit status (-m prereq)
    window_timeline: list[str] | None = None  # Set B (or a rehearsal) placed on the window's T+ timeline
    rehearsal: dict[str, str] | None = None  # what this rehearsal is (plan, snapshot): answers files record it
    answers_warning: str | None = None  # --answers was written for another rehearsal

    def to_wire(self) -> dict[str, Any]:
        """As xdist can send it (builtins only)."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> RunState:
        return cls(**dict(data))


SETTINGS = pytest.StashKey[Settings]()
PLAN = pytest.StashKey[Plan]()
SHARED_DIR = pytest.StashKey[Path]()
ANSWERS = pytest.StashKey[dict[str, tuple[str, str, str | None]]]()
RUN = pytest.StashKey[RunState]()
CATALOGUE = pytest.StashKey[Catalogue]()  # the plan's checks: automated, manual, A20-active
SELECTED = pytest.StashKey[tuple[str, ...]]()  # --check, in the catalogue's spelling; empty: all
SELECTION = pytest.StashKey[Selection]()  # what -m selects of the catalogue (cutover.suite.selection)
