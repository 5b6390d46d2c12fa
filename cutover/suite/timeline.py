"""The window's clock: where a run sits on the runbook's T+ timeline, counted from the execute's commit.

In the window the question after a failing Set B is "which rollback is still open": the reverse
migration (option 2) only before T+0:30, the snapshot restore after. The commit time is read from
the database (the cutover's completed audit event), never from a report or a wall clock someone
noted, and the sweeps' times come from their own audit events, so the log shows the window as the
database saw it. Read-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cutover.core import audit, db
from cutover.core.errors import SetupError
from cutover.core.plan import Plan
from cutover.core.redact import redact

# The runbook's rollback line: the reverse (option 2) is the rollback until T+0:30 after the commit, the
# snapshot restore (option 1) after it. The one home of that line; every message names it as ROLLBACK_AT.
ROLLBACK_LINE = timedelta(minutes=30)


def t_plus(delta: timedelta) -> str:
    """'T+0:07' (hours:minutes), 'T-0:02' before the commit.

    Whole minutes rounded down on both sides of the commit, so 20 s before it is T-0:01, never a
    'T-0:00' that reads as the commit itself.
    """
    minutes = math.floor(delta.total_seconds() / 60)
    sign, minutes = ("-", -minutes) if minutes < 0 else ("+", minutes)
    return f"T{sign}{minutes // 60}:{minutes % 60:02d}"


ROLLBACK_AT = t_plus(ROLLBACK_LINE)  # "T+0:30"


def parse(raw: Any) -> datetime | None:
    try:
        value = datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass
class Window:
    """The cutover's commit and what followed it, from the audit events."""

    run_id: str | None = None
    committed_at: datetime | None = None
    sweeps: list[tuple[datetime, int]] = field(default_factory=list)
    reversed_at: datetime | None = None

    def at(self, when: datetime) -> str:
        return "T?" if self.committed_at is None else t_plus(when - self.committed_at)

    def rollback(self, now: datetime, set_b_passed: bool | None) -> str:
        """The runbook's rollback decision at ``now``: none, option 2 (reverse) before T+0:30, else option 1."""
        if self.committed_at is None:
            return "no committed cutover found in the database: nothing to roll back"
        if self.reversed_at is not None:
            return f"already reversed at {self.at(self.reversed_at)}"
        left = self.committed_at + ROLLBACK_LINE - now
        if set_b_passed:
            return "none: Set B passed, the cutover stands"
        why = "Set B did not pass" if set_b_passed is False else "no Set B verdict in this run"
        if left > timedelta(0):
            minutes = int(left.total_seconds() // 60)
            return (f"{why}: rollback option 2 (cutover reverse) is open for {minutes} more min, until {ROLLBACK_AT}; "
                    "after that only option 1 (snapshot restore)")
        return f"{why} and {ROLLBACK_AT} has passed: rollback option 1 (snapshot restore) only"


def read(url: str, plan: Plan) -> Window:
    """The newest committed cutover of this plan, its sweeps and any reverse after it."""
    a = plan.audit
    with db.connection(url, read_only=True) as conn:
        hidden = db.hidden_by_row_security(conn, [a.table])
        if hidden is not None:  # one line, not the driver's error and its HINT
            raise SetupError(hidden)
        found_events = audit.events(conn, plan, [a.completed, a.swept, a.reversed], slim=True)
        conn.rollback()
    dated = [(e.kind, when, e.payload) for e in found_events if (when := parse(e.payload.get("committed_at")))]
    found = Window()
    commits = [(when, payload.get("run_id")) for kind, when, payload in dated if kind == a.completed]
    if not commits:
        return found
    found.committed_at, found.run_id = commits[-1]
    for kind, when, payload in dated:
        if when < found.committed_at:
            continue
        if kind == a.swept:
            found.sweeps.append((when, sum(int(v) for v in (payload.get("moved") or {}).values())))
        elif kind == a.reversed:
            found.reversed_at = when
    found.sweeps.sort()
    return found


def lines(window: Window, started: datetime, finished: datetime, label: str, passed: bool | None) -> list[str]:
    """The run on the window's timeline: commit, sweeps, this run, the rollback decision; one line each,
    in the order they happened.

    A rehearsal (``label`` "Set A") executes the cutover itself, so it starts before the commit, and
    its checks decide nothing in the window: it gets no Set B wording and no rollback decision.
    """
    if window.committed_at is None:
        return [f"timeline: no committed cutover in the database, so no T+ ({label} ran "
                f"{started.isoformat(timespec='seconds')} to {finished.isoformat(timespec='seconds')})"]
    rehearsal = label == "Set A"
    events = [(window.committed_at,
               f"cutover committed at {window.committed_at.isoformat(timespec='seconds')} (run {window.run_id})")]
    events += [(when, f"sweep committed, {n} rows moved") for when, n in window.sweeps]
    if window.reversed_at is not None:
        events.append((window.reversed_at, "cutover reversed (rollback option 2)"))
    verdict = "ended" if rehearsal or passed is None else ("passed" if passed else "did not pass")
    decision = ("none: a rehearsal, not the production window" if rehearsal
                else window.rollback(finished, passed))
    events += [(started, f"{label} started"), (finished, f"{label} {verdict}"),
               (finished, f"rollback decision: {decision}")]
    events.sort(key=lambda event: event[0])  # stable: same-time lines keep the order above
    return [redact(f"{window.at(when)}  {text}") for when, text in events]
