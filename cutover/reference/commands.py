"""The operator commands of the cutover module: dry-run, execute, sweep, reverse, report.

Exit codes are a contract with the operators' scripts: :class:`cutover.core.exit_codes.ExitCode` (the
README's table). In every case but OK and REPORT_LOST the database is unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from cutover.core import db, live_schema
from cutover.core.errors import CutoverError
from cutover.core.exit_codes import ExitCode
from cutover.core.options import DEFAULTS, Settings, resolve
from cutover.core.plan import Plan, load_plan
from cutover.core.redact import redact, split_password
from cutover.reference import aftercare, alerts, engine, preflight, reports
from cutover.reference.console import StepDisplay

ACTOR_ENV = "CUTOVER_ACTOR"


def _settings(args: argparse.Namespace) -> tuple[Settings, Plan, str]:
    cli = {"db_url": args.db_url, "plan": args.plan, "lock_timeout": getattr(args, "lock_timeout", None),
           "statement_timeout": getattr(args, "statement_timeout", None)}
    settings = resolve(cli, {})
    if settings.db_url is None:
        raise CutoverError(f"{args.command} needs a database: pass --db-url or set DATABASE_URL / CUTOVER_DB_URL")
    split_password(settings.db_url)  # registers the password so that no output can carry it
    return settings, load_plan(settings.plan_path), settings.db_url


def _timeouts(settings: Settings) -> engine.Timeouts:
    return engine.Timeouts(settings.lock_timeout, settings.statement_timeout)


def _actor(args: argparse.Namespace) -> str:
    if not args.operator_confirmed:
        raise CutoverError(f"{args.command} changes the database: pass --operator-confirmed once the window is open")
    actor = os.environ.get(ACTOR_ENV, "").strip()
    if not actor:
        raise CutoverError(f"{args.command} needs an actor for the audit trail: set {ACTOR_ENV}, "
                           f"e.g. {ACTOR_ENV}=\"rehearsal:$(whoami)\"")
    return actor


def _misfit(args: argparse.Namespace, url: str, plan: Plan) -> int | None:
    """BLOCKED (exit 1, nothing changed) when the plan names a table or column the database lacks.

    Execute, sweep, reverse and the rebuild lock or read those names before any pre-flight of theirs
    runs, and stopped on the database's own error (``relation "quotez" does not exist``, exit 4 or 2),
    which names no plan key. The dry run reports the same differences as its blockers."""
    with db.connection(url, read_only=True) as conn:
        schema = live_schema.read(conn, plan)
        conn.rollback()
    structural = [d for d in live_schema.compare(plan, schema) if d.structural]
    if not structural:
        return None
    more = f" (and {len(structural) - 1} more; 'cutover plan check' lists them)" if len(structural) > 1 else ""
    return _failed(args, engine.RunFailed(
        f"{args.command} refused: the plan does not fit the database: {structural[0].message}{more}; nothing "
        f"changed", ExitCode.BLOCKED, summary=f"the plan names {structural[0].code.removeprefix('missing-')}s "
                                                 f"the database lacks"), None)


def _emit(args: argparse.Namespace, result: dict[str, Any], human: str) -> None:
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(redact(human), flush=True)


def dry_run(args: argparse.Namespace) -> int:
    """``cutover dry-run``: the pre-flight on a read-only connection, READY (0) or BLOCKED (1), so the window
    opens only on a database whose blockers were seen and none of which was written to."""
    settings, plan, url = _settings(args)
    with db.connection(url, read_only=True) as conn:
        pf = preflight.run(conn, plan)
        conn.rollback()
    lines = [f"pre-flight of plan '{plan.name}' on {db.database_name(url)}: {plan.source} -> {plan.target}"]
    lines += [f"  {table:<24} {n:>10} rows to move" for table, n in pf.planned.items()]
    lines += [f"  deferred during the moves: {k.short()}, checked before COMMIT" for k in pf.deferred]
    lines += [f"  trigger {trigger} on {table} writes {written} on each moved row: "
              + ("declared, one row expected per moved row, verified" if declared else "NOT declared (blocker)")
              for table, trigger, written, declared in pf.trigger_writes]
    if pf.held and pf.ready:
        shown = ", ".join(f"{t}={n}" for t, n in pf.held.items())
        lines.append(f"  {plan.target} holds patient-owned rows of its own ({shown}): they stay there, are not in "
                     f"the allow-list and the reverse leaves them")
    lines += [f"  BLOCKER {b.line()}" for b in pf.blockers]
    size, part = sum(pf.allow_list_bytes.values()), engine.AUDIT_PART_BYTES
    parts = preflight.audit_parts(pf.allow_list_bytes, part)
    lines.append(f"  allow-list about {size / 1e6:.1f} MB: recorded in {parts} or more {plan.audit.allow_list_part} "
                 f"audit events of at most {part / 1e6:.0f} MB")
    lines.append(f"{pf.verdict}: {sum(pf.planned.values())} rows planned, {len(pf.blockers)} blockers")
    _emit(args, pf.to_json(), "\n".join(lines))
    return ExitCode.OK if pf.ready else ExitCode.BLOCKED


def _default_report_path() -> Path:
    return Path(f"cutover_report_{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json")


def _failed(args: argparse.Namespace, exc: engine.RunFailed, path: Path | None) -> ExitCode:
    """Say what failed, write the rolled-back report (never over a committed one) and return the code."""
    written = None
    if exc.report is not None and path is not None and exc.exit_code != ExitCode.ALREADY_CUT_OVER:
        written = reports.write(path, exc.report, exc.id_files or None)
    status = "ALREADY CUT OVER" if exc.exit_code == ExitCode.ALREADY_CUT_OVER else (
        "BLOCKED" if exc.exit_code == ExitCode.BLOCKED else "ROLLED BACK")
    where = f"; report: {written}" if written else ""
    print(redact(f"cutover: {status}: {exc}{where}"), file=sys.stderr)
    for line in exc.detail:
        print(redact(f"  {line}"), file=sys.stderr)
    if args.json:
        print(json.dumps({"status": status.lower().replace(" ", "_"), "exit_code": exc.exit_code,
                          "error": redact(str(exc)), "detail": [redact(line) for line in exc.detail],
                          "report_path": str(written) if written else None}))
    return exc.exit_code


def execute(args: argparse.Namespace) -> int:
    """``cutover execute``: the cutover in one transaction, only with --operator-confirmed and an actor for the
    audit trail; the report is checked writable first, and the runbook's alerts say how it ended."""
    settings, plan, url = _settings(args)
    actor = _actor(args)
    path = args.report_path or _default_report_path()
    reports.check_writable(path)
    if (blocked := _misfit(args, url, plan)) is not None:
        return blocked
    notify = alerts.Alerter.from_env()
    where = f"plan '{plan.name}' on {db.database_name(url)} ({socket.gethostname()}), actor {actor}"
    notify.send(alerts.STARTED, f"{alerts.STARTED}: {plan.source} -> {plan.target}, {where}")
    try:
        code = _execute(args, settings, plan, url, actor, path, notify, where)
    except BaseException as exc:  # a usage or connection error's line names no row; anything else, its type only
        said = str(exc) if isinstance(exc, CutoverError) else f"{type(exc).__name__}, see the operator's terminal"
        notify.send(alerts.FAILED, f"{alerts.FAILED}: {where}: {said}")
        _report_alerts(notify, quiet_if_unconfigured=True)
        raise
    _report_alerts(notify)
    return code


def _report_alerts(notify: alerts.Alerter, quiet_if_unconfigured: bool = False) -> None:
    """One line per alert on stderr; an undelivered alert is reported, never an error of the cutover.

    Before a one-line usage or connection error the "not configured" note stays out, so that error
    remains the only line.
    """
    if notify.config.problem is not None and not quiet_if_unconfigured:
        print(f"cutover: {notify.config.problem} (no alert was sent)", file=sys.stderr, flush=True)
    for delivery in notify.finish():
        print(redact(delivery.line()), file=sys.stderr, flush=True)


class HeldInterrupts:
    """From just before COMMIT until the report is written, Ctrl-C is noted, not raised.

    Raised there, it turned a committed cutover into a report saying "rolled back" and exit 130
    ("unchanged"), or, during the report's write, into no report at all. Neither step can be undone by
    then: the command finishes them and says the Ctrl-C came too late. A COMMIT takes milliseconds.
    """

    def __init__(self) -> None:
        self.came = False
        self._previous: Any = None

    def hold(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.came = True

    def release(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _execute(args: argparse.Namespace, settings: Settings, plan: Plan, url: str, actor: str, path: Path,
             notify: alerts.Alerter, where: str) -> int:
    held = HeldInterrupts()
    try:
        return _execute_held(args, settings, plan, url, actor, path, notify, where, held)
    finally:
        held.release()


def _execute_held(args: argparse.Namespace, settings: Settings, plan: Plan, url: str, actor: str, path: Path,
                  notify: alerts.Alerter, where: str, held: HeldInterrupts) -> int:
    display = StepDisplay()
    with engine.private_spool() as spool:  # the ids outlive neither the report nor a failure nor Ctrl-C
        try:
            report, id_files = engine.execute(url, plan, actor, _timeouts(settings), display, spool=spool,
                                              before_commit=held.hold)
        except engine.RunFailed as exc:
            display.close()
            code = _failed(args, exc, path)
            status = {ExitCode.ALREADY_CUT_OVER: "ALREADY CUT OVER", ExitCode.BLOCKED: "BLOCKED"}.get(code,
                                                                                                   "ROLLED BACK")
            run_id = exc.report.get("run_id") if exc.report is not None else None
            run = f"; run {run_id}" if run_id else ""
            cause = exc.summary or "the cause is on the operator's terminal and in the report"
            notify.send(alerts.FAILED, f"{alerts.FAILED}: {status} (exit {code}), nothing changed{run}; {where}: "
                                       f"{cause}")
            return code
        moved = sum(report["moved"].values())
        done = (f"{alerts.COMPLETED}: run {report['run_id']} committed, {moved} rows moved to {plan.target} "
                f"in {report['duration_s']:.2f} s; {where}")
        try:
            reports.write(path, report, id_files)
        except OSError as exc:
            held.release()
            notify.send(alerts.COMPLETED, f"{done}; the report could not be written, rebuild it")
            print(f"cutover: CUTOVER COMMITTED (run {report['run_id']}) but the report could not be written to "
                  f"{path} ({exc.strerror}); rebuild it with 'cutover report --rebuild --report-path NEW'",
                  file=sys.stderr)
            return ExitCode.REPORT_LOST
    held.release()
    if held.came:
        print(f"cutover: Ctrl-C came after the COMMIT had begun, too late to roll back: run {report['run_id']} "
              f"committed and its report is written; to undo it use 'cutover reverse'", file=sys.stderr, flush=True)
    notify.send(alerts.COMPLETED, done)
    _emit(args, {"status": "committed", "exit_code": ExitCode.OK, "run_id": report["run_id"], "report_path": str(path),
                 "moved": report["moved"], "triggered": report.get("triggered", {}),
                 "duration_s": report["duration_s"]},
          f"CUTOVER COMMITTED: run {report['run_id']} moved {moved} rows in {report['duration_s']:.2f} s"
          f"{_by_triggers(report)}; report: {path}")
    return ExitCode.OK


def sweep(args: argparse.Namespace) -> int:
    """``cutover sweep``: move patient rows that landed on the source after the commit; with --report-path it
    is appended to that report only when the database recorded that report's cutover."""
    settings, plan, url = _settings(args)
    actor = os.environ.get(ACTOR_ENV, "").strip() or "sweep"
    cut = reports.load_streamed(args.report_path) if args.report_path else None
    if args.report_path:
        reports.check_writable(args.report_path)
    if (blocked := _misfit(args, url, plan)) is not None:
        return blocked
    display = StepDisplay()
    try:
        if cut is not None:  # appended to only if it is this database's cutover, as the database recorded it
            aftercare.check_report(url, plan, _timeouts(settings), cut, "sweep")
        record = aftercare.sweep(url, plan, actor, _timeouts(settings), display,
                                 cutover_run_id=None if cut is None else str(cut["run_id"]))
    except engine.RunFailed as exc:
        display.close()
        return _failed(args, exc, None)
    if record is None:
        _emit(args, {"status": "nothing_to_move", "exit_code": ExitCode.OK, "moved": {}},
              "SWEEP: nothing to move; the database was not changed")
        return ExitCode.OK
    if cut is not None and args.report_path is not None:
        cut.setdefault("sweeps", []).append(record)
        reports.write(args.report_path, cut)
    _emit(args, {"status": "committed", "exit_code": ExitCode.OK, "run_id": record["run_id"], "moved": record["moved"],
                 "triggered": record.get("triggered", {})},
          f"SWEEP COMMITTED: moved {sum(record['moved'].values())} rows ({record['moved']})" + _by_triggers(record))
    return ExitCode.OK


def _by_triggers(record: Any) -> str:
    """The rows the plan's written_by triggers wrote during the moves, per table and tenant ('' if none)."""
    triggered = record.get("triggered") or {}
    return "".join(f"; {table}: {sum(per.values())} rows written by its triggers ({per})"
                   for table, per in triggered.items())


def reverse(args: argparse.Namespace) -> int:
    """``cutover reverse``: rollback option 2, the report's rows moved back (--dry-run only counts them), so
    the window has a way back before T+0:30 that needs no snapshot restore."""
    settings, plan, url = _settings(args)
    actor = "" if args.dry_run else _actor(args)  # the dry run only counts: it records nothing
    cut = reports.load_streamed(args.report_path)  # the allow-list stays on disk: memory flat at any size
    if not args.dry_run:
        reports.check_writable(args.report_path)
    if (blocked := _misfit(args, url, plan)) is not None:
        return blocked
    display = StepDisplay()
    try:
        record = (aftercare.reverse_counts(url, plan, _timeouts(settings), cut) if args.dry_run
                  else aftercare.reverse(url, plan, actor, _timeouts(settings), cut, display))
    except engine.RunFailed as exc:
        display.close()
        return _failed(args, exc, None)
    total = sum(record["planned"].values())
    if args.dry_run:
        _emit(args, {"status": "dry_run", "exit_code": ExitCode.OK, "planned": record["planned"],
                     "new_since_commit": record["new_since_commit"]},
              f"REVERSE DRY RUN: {total} rows would move back to {plan.source} ({record['planned']}); "
              f"{sum(record['new_since_commit'].values())} of them created since the commit; nothing changed")
        return ExitCode.OK
    cut["reverse"] = record
    reports.write(args.report_path, cut)
    _emit(args, {"status": "committed", "exit_code": ExitCode.OK, "run_id": record["run_id"], "moved": record["moved"],
                 "triggered": record.get("triggered", {})},
          f"REVERSE COMMITTED: moved {sum(record['moved'].values())} rows back to {plan.source}{_by_triggers(record)}; "
          f"report: {args.report_path}")
    return ExitCode.OK


def report(args: argparse.Namespace) -> int:
    """``cutover report --rebuild``: a lost report made again from the database's audit events, because sweep
    and reverse need one and a committed cutover must never be left without it."""
    _, plan, url = _settings(args)
    reports.check_writable(args.report_path)
    if (blocked := _misfit(args, url, plan)) is not None:
        return blocked
    with db.connection(url, read_only=True) as conn:
        rebuilt, ids = reports.rebuild(conn, plan, args.run_id)
        reports.write(args.report_path, rebuilt, ids)
    _emit(args, {"status": "rebuilt", "exit_code": ExitCode.OK, "run_id": rebuilt["run_id"],
                 "report_path": str(args.report_path)},
          f"REPORT REBUILT from the database: run {rebuilt['run_id']}; report: {args.report_path}")
    return ExitCode.OK


def add_parsers(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """The cutover subcommands, on the ``cutover`` command's subparsers."""

    def common(p: argparse.ArgumentParser, timeouts: bool = True) -> None:
        p.add_argument("--db-url", default=None, help="database to cut over (default: DATABASE_URL / CUTOVER_DB_URL)")
        p.add_argument("--plan", default=None, help="plan file (default cutover/model/plan.toml)")
        p.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
        if timeouts:
            p.add_argument("--lock-timeout", default=None,
                           help=f"lock_timeout of the transaction (default {DEFAULTS['lock_timeout']})")
            p.add_argument("--statement-timeout", default=None,
                           help=f"statement_timeout (default {DEFAULTS['statement_timeout']})")

    p = commands.add_parser("dry-run", help="pre-flight: read-only, planned moves and READY/BLOCKED")
    common(p, timeouts=False)
    p.set_defaults(handler=dry_run)
    p = commands.add_parser("execute", help="the cutover: one transaction, report JSON")
    common(p)
    p.add_argument("--operator-confirmed", action="store_true", help="required: the window is open")
    p.add_argument("--report-path", type=Path, default=None,
                   help="report file (default cutover_report_<UTC time>.json in the current directory)")
    p.set_defaults(handler=execute)
    p = commands.add_parser("sweep", help="move patient rows that landed on the source after the commit")
    common(p)
    p.add_argument("--report-path", type=Path, default=None, help="the cutover's report, to append the sweep to")
    p.set_defaults(handler=sweep)
    p = commands.add_parser("reverse", help="rollback option 2: move the cutover's rows back")
    common(p)
    p.add_argument("--dry-run", action="store_true", help="only count what would move back")
    p.add_argument("--operator-confirmed", action="store_true", help="required unless --dry-run")
    p.add_argument("--report-path", type=Path, required=True, help="the cutover's report")
    p.set_defaults(handler=reverse)
    p = commands.add_parser("report", help="rebuild a lost report from the database's audit events")
    common(p, timeouts=False)
    p.add_argument("--rebuild", action="store_true", required=True, help="required: rebuild from the database")
    p.add_argument("--report-path", type=Path, required=True, help="where to write the rebuilt report")
    p.add_argument("--run-id", default=None, help="a specific run (default: the newest committed one)")
    p.set_defaults(handler=report)
