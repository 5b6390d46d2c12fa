"""The window's times, forecast from the rehearsal: does production's size fit the runbook's slots?

The runbook gives the execute about 5 minutes (T+0:04 to T+0:09), Set B about 2, and the rollback at
most 15. The rehearsal measures each on the snapshot; the go/no-go reads production's planned counts
(the dry run's counting, read-only). This module joins the two: every figure scaled linearly by rows,
table by table for the moves (a table's move time over its rows, times production's rows of it) and
by all rows moved for the rest. A forecast past its slot is a NO-GO naming it; every line says what it
assumes, because a sandbox without fsync is faster than the server production runs on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cutover.core.plan import Plan

MIN_ROWS = 1  # a table the rehearsal moved no row of is scaled by the whole run's rate


@dataclass(frozen=True)
class Basis:
    """What the rehearsal measured, as evidence.json keeps it (``forecast_basis``)."""

    moved: dict[str, int]  # per table, rows the execute moved
    move_s: dict[str, float]  # per table, its share (by rows) of its move step's seconds
    other_s: float  # the rest of the execute: locks, pre-flight, baseline, verification, audit, commit
    preflight_s: float | None = None
    verify_s: float | None = None
    writers_blocked_s: float | None = None
    wal_bytes: int | None = None
    setb_s: float | None = None
    reverse_s: float | None = None
    restore_s: float | None = None
    durable: bool = False  # measured with fsync on (--sandbox-durable, or a dev branch)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.moved.values())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Basis:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def basis(report: Mapping[str, Any], plan: Plan, *, wal_bytes: int | None, setb_s: float | None,
          reverse_s: float | None, restore_s: float | None, durable: bool) -> Basis:
    """The forecast's basis from the execute's report (its steps, moved counts and blocked time)."""
    moved = {str(t): int(n) for t, n in (report.get("moved") or {}).items()}
    steps = {str(s.get("name")): float(s.get("seconds") or 0.0) for s in report.get("steps") or []}
    move_s: dict[str, float] = {}
    for group in plan.move_steps:
        seconds = steps.get(f"move {', '.join(group)}", 0.0)
        rows = sum(moved.get(t, 0) for t in group)
        for table in group:
            move_s[table] = seconds * (moved.get(table, 0) / rows if rows else 1 / len(group))
    duration = float(report.get("duration_s") or sum(steps.values()))
    return Basis(moved=moved, move_s=move_s, other_s=max(duration - sum(move_s.values()), 0.0),
                 preflight_s=steps.get("pre-flight inside the transaction"),
                 verify_s=next((s for n, s in steps.items() if n.startswith("verify")), None),
                 writers_blocked_s=report.get("writers_blocked_s"), wal_bytes=wal_bytes, setb_s=setb_s,
                 reverse_s=reverse_s, restore_s=restore_s, durable=durable)


@dataclass(frozen=True)
class Line:
    """One forecast: its figure, its slot (None: informational), and whether it fits."""

    item: str
    text: str
    seconds: float | None
    slot_s: float | None

    @property
    def fits(self) -> bool:
        return self.slot_s is None or (self.seconds is not None and self.seconds <= self.slot_s)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _slot(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def forecast(b: Basis, production: Mapping[str, int], *, execute_slot: float, setb_slot: float,
             rollback_bound: float, rollback_fixed: float) -> list[Line]:
    """The window's figures for production's planned counts. ``rollback_fixed``: what the rollback
    bound spends besides the restore (the runbook's revert deploys and smoke run)."""
    prod_total = sum(production.values())
    ratio = prod_total / max(b.total, MIN_ROWS)
    where = "a server with fsync on" if b.durable else "a sandbox without fsync (--sandbox-durable measures with it)"
    assumes = f"linear in rows per table, measured on {where}"
    moves = sum(b.move_s.get(t, 0.0) / max(b.moved.get(t, 0), MIN_ROWS) * n if b.moved.get(t)
                else sum(b.move_s.values()) / max(b.total, MIN_ROWS) * n for t, n in production.items())
    execute = moves + b.other_s * ratio
    rows = f"{prod_total:,} rows"
    lines = [Line("execute", f"~{_minutes(execute)} for {rows}", execute, execute_slot)]
    if b.writers_blocked_s is not None:
        blocked = float(b.writers_blocked_s) * ratio
        lines.append(Line("writers-blocked", f"~{_minutes(blocked)} of writers held off", blocked, execute_slot))
    if b.wal_bytes is not None:
        lines.append(Line("wal", f"~{_size(b.wal_bytes * ratio)} of WAL written by the execute", None, None))
    setb = None if b.setb_s is None else b.setb_s * ratio
    lines.append(Line("setb", "not measured by the rehearsal" if setb is None else f"~{_minutes(setb)} for Set B's "
                      "8 checks", setb, setb_slot))
    reverse = None if b.reverse_s is None else b.reverse_s * ratio
    lines.append(Line("reverse", "not rehearsed" if reverse is None else f"~{_minutes(reverse)} to move "
                      f"{rows} back (rollback option 2)", reverse, rollback_bound))
    restore = None if b.restore_s is None else b.restore_s * ratio + rollback_fixed
    lines.append(Line("restore", "not measured" if restore is None else f"~{_minutes(restore)} for the snapshot "
                      f"restore plus {_minutes(rollback_fixed)} of revert deploys and smoke (rollback option 1)",
                      restore, rollback_bound))
    return [Line(ln.item, f"{ln.text} (slot {_slot(ln.slot_s)})" if ln.slot_s is not None else ln.text,
                 ln.seconds, ln.slot_s) for ln in lines] + [Line("assumes", assumes, None, None)]


def described(lines: Sequence[Line]) -> dict[str, tuple[bool, str]]:
    """Per item, whether it fits and ``~41 s for 1,012,762 rows (slot 5 min): fits; assumes …``."""
    assumes = next((ln.text for ln in lines if ln.item == "assumes"), "")
    out = {}
    for ln in lines:
        if ln.item != "assumes":
            word = "informational" if ln.slot_s is None else ("fits" if ln.fits else "PAST THE SLOT")
            out[ln.item] = (ln.fits, f"{ln.text}: {word}; assumes {assumes}")
    return out


def render(lines: Sequence[Line]) -> list[str]:
    """``forecast execute: ~41 s for 1,012,762 rows (slot 5 min): fits; assumes …``, one per item."""
    return [f"forecast {item}: {text}" for item, (_, text) in described(lines).items()]
