"""What the runbook says to do now, when Set B fails in the production window.

A failing Set B is the start of the runbook's rollback decision tree (spec section 11), and the
operator reads it under time pressure. So the failure comes with the answer: when the cutover
committed (its ``completed`` audit event, read from the database, not from a report that may be
elsewhere), how far that is from the T+0:30 line, the exact sweep command when the failure is a
straggler, and before the line the reverse (dry run, then confirmed), after it the snapshot restore
with the rehearsal's measured restore time. Commands name ``"$DATABASE_URL"``, never the URL itself.

What the reverse would move is the reference cutover's own count (``cutover reverse --dry-run``'s),
run here rather than re-derived: it selects the rows the confirmed reverse acts on, in a READ ONLY
transaction that takes no lock a writer would wait for (this runs in production), bounded by the
checks' timeouts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cutover.core import audit, db
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.core.redact import redact
from cutover.core.row_keys import CutoverReport
from cutover.reference import aftercare, engine, reports
from cutover.suite import rehearsals, timeline
from cutover.suite.catalogue import AUTOMATED

# Checks whose failure is what the sweep fixes: patient-classified rows left on (or landed on) the source.
SWEEP_FIXES = tuple(c.id for c in AUTOMATED if c.swept)  # the catalogue says which failures the sweep fixes


def committed_at(url: str, plan: Plan) -> tuple[datetime, str] | None:
    """(commit time, run id) of the last committed cutover on this database, or None."""
    with db.connection(url, read_only=True) as conn:
        done = audit.newest(conn, plan, [plan.audit.completed])
    if done is None or not done.payload.get("committed_at"):
        return None
    when = datetime.fromisoformat(str(done.payload["committed_at"]).replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)), str(done.payload.get("run_id", "?"))


def measured_restore(artifacts: Path) -> str | None:
    """The newest rehearsal's measured restore time, from its operator log, with where it was measured."""
    for stamp, log in rehearsals.earlier_logs(artifacts):
        bound = log.get("rollback_time_bound") or {}
        if bound.get("restore_s") is not None:
            return (f"{bound['restore_s']:.1f} s measured on {bound.get('restore_measured_on', 'unknown')} "
                    f"({stamp}); worst case {bound['total_s'] / 60:.1f} min of the runbook's 15")
    return None


def _cut_report(url: str, plan: Plan, report_path: str | None) -> CutoverReport:
    """The execute's report when it is at hand, else the one the database's audit events rebuild."""
    if report_path and Path(report_path).is_file():
        return reports.load_streamed(Path(report_path))  # as the reverse command reads it: memory flat
    with db.connection(url, read_only=True) as conn:
        rebuilt, ids = reports.rebuild(conn, plan)
        rebuilt["allow_list"] = {table: [json.loads(key) for key in keys] for table, keys in ids.items()}
    return rebuilt


def _why(exc: BaseException) -> str:
    """An exception as one line: a server error's LINE and caret lines would break the advice's lines."""
    return redact((str(exc).strip().splitlines() or [type(exc).__name__])[0], limit=200)


def reverse_preview(url: str, plan: Plan, report_path: str | None, settings: Settings) -> str:
    """One line: what ``cutover reverse`` would move back, per table, counted read-only on this database."""
    try:
        record = aftercare.reverse_counts(url, plan, engine.Timeouts(
            settings.check_lock_timeout, settings.check_statement_timeout), _cut_report(url, plan, report_path))
    except Exception as exc:  # the figures help; their absence must not hide the commands or the verdict
        return f"what the reverse would move could not be read ({_why(exc)})"
    planned: dict[str, int] = record["planned"]
    new: dict[str, int] = record["new_since_commit"]
    per_table = ", ".join(f"{table} {n}" for table, n in planned.items())
    created = (f"; {sum(new.values())} of them created since the commit "
               f"({', '.join(f'{table} {n}' for table, n in new.items())})" if new else "")
    return f"the reverse would move {sum(planned.values())} rows back to {plan.source} ({per_table}){created}"


def _mmss(delta: timedelta) -> str:
    minutes, seconds = divmod(int(abs(delta.total_seconds())), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def advice(failed: Sequence[str], commit: tuple[datetime, str] | None, now: datetime, report_path: str | None,
           restore: str | None, plan: Plan, moves: str | None = None) -> list[str]:
    """The lines to print (and log) under a failed Set B verdict."""
    report = f"--report-path={report_path}" if report_path else "--report-path=<the execute's report.json>"
    target = '--db-url "$DATABASE_URL"'
    lines = [f"NEXT STEP (runbook: a Set B check failed: {', '.join(failed)}):"]
    if commit is None:
        lines.append(f"  no {plan.audit.completed} event on this database: the cutover has not committed here; "
                     "do not proceed, find out which database this is")
        return lines
    when, run_id = commit
    since = now - when
    line_at = when + timeline.ROLLBACK_LINE
    before = now < line_at
    where = (f"the {timeline.ROLLBACK_AT} line is in {_mmss(line_at - now)} (at {line_at:%H:%M:%S} UTC)" if before
             else f"the {timeline.ROLLBACK_AT} line passed {_mmss(now - line_at)} ago")
    lines.append(f"  the cutover committed at {when:%Y-%m-%d %H:%M:%S} UTC (run {run_id}): "
                 f"now T+{_mmss(since)}; {where}")
    sweepable = [c for c in failed if c in SWEEP_FIXES]
    if sweepable:
        lines.append(f"  {', '.join(sweepable)}: patient rows on {plan.source} after the commit are stragglers, "
                     f"which the sweep moves: cutover sweep {target} {report}")
        lines.append(f"  then run Set B again: pytest -m setB {target} {report}")
    if before:
        lines.append(f"  if it still fails, roll back with the reverse (option 2, safe before "
                     f"{timeline.ROLLBACK_AT}): first cutover reverse --dry-run {target} {report} (prints what it "
                     "would move back), then "
                     f"cutover reverse --operator-confirmed {target} {report}")
        if moves:
            lines.append(f"  {moves} (counted just now, read-only; nothing changed)")
    else:
        lines.append(f"  past {timeline.ROLLBACK_AT} the reverse is no longer the safe rollback: restore the "
                     "pre-cutover snapshot (option 1; never alembic downgrade): "
                     + (f"the rehearsal's restore took {restore}" if restore else
                        "the rehearsal's restore time is not known here (see its operator log)"))
    return [redact(line) for line in lines]


def for_set_b(url: str, plan: Plan, failed: Sequence[str], settings: Settings) -> list[str]:
    """Read the commit time and the restore measurement, then say what to do; never raises."""
    report_path = settings.report_path
    try:
        commit = committed_at(url, plan)
    except Exception as exc:  # the advice must not hide the verdict it follows
        return [f"NEXT STEP: the commit time could not be read ({_why(exc)}); follow the runbook's "
                "rollback decision tree (spec section 11) by hand"]
    now = datetime.now(UTC)
    moves = (reverse_preview(url, plan, report_path, settings)
             if commit is not None and now < commit[0] + timeline.ROLLBACK_LINE else None)
    return advice(failed, commit, now, report_path, measured_restore(Path(settings.artifacts_dir)), plan, moves)

