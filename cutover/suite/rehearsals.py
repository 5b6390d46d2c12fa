"""The rehearsal flow (runbook steps 3-6): restore, dry run, execute, then the checks; and A20-active.

One rehearsal per run, shared by every xdist worker through a file lock in the run's shared
directory: the first process does the work and records it in ``rehearsal.json``, the others read
that record. Every step is timed into a timeline that the operator log prints. The flow writes only
to a sandbox clone, or to a ``--db-url`` target the operator opted in with ``--rehearse``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from filelock import FileLock
from psycopg import sql

from cutover.core import db, live_schema
from cutover.core.db import Connection
from cutover.core.errors import SetupError
from cutover.core.options import Settings
from cutover.core.plan import Plan, table_sql
from cutover.core.private import open_private
from cutover.core.progress import Log, quiet
from cutover.core.redact import mask_url, redact, shell_command
from cutover.core.row_keys import key_order, key_text
from cutover.reference import aftercare, engine, preflight, reports
from cutover.sandbox import majors, snapshot
from cutover.sandbox.server import SessionSandbox
from cutover.suite import content
from cutover.suite.catalogue import A5_CONTENT
from cutover.suite.under_check import DatabaseUnderCheck

I = sql.Identifier  # noqa: E741 (the name the other SQL modules use)
T = table_sql  # a plan's table name, with its schema when it has one
L = sql.Literal
# Worst case of the runbook's rollback option 1: snapshot restore + revert deploys + smoke.
REVERT_DEPLOYS_S = 4 * 60
SMOKE_S = 3 * 60
ROLLBACK_BUDGET_S = 15 * 60


@dataclass
class Record:
    """What the operator log needs from the rehearsal: JSON-able, shared across processes."""

    target: str = ""
    postgres: str = ""  # the sandbox's (or dev branch's) server version
    snapshot_source: str = ""  # the server version the snapshot was dumped from, when it says
    major_note: str = ""  # "rehearsed on 18 for a PostgreSQL 16 production" (--allow-newer-server), else ""
    sandbox: bool = True
    snapshot: str = ""
    snapshot_timestamp: str = ""
    restore_s: float | None = None
    restore_measured_on: str = ""
    restored_by_run: str = ""  # a dev branch found restored: the earlier run (artifacts/<stamp>) that restored it
    created_roles: list[str] = field(default_factory=list)  # NOLOGIN roles the sandbox got for the snapshot's policies
    dry_run: str = ""
    blockers: list[str] = field(default_factory=list)
    execute_s: float | None = None
    execute_via: str = ""
    report_path: str = ""
    captured: dict[str, str] = field(default_factory=dict)
    capture_gap: str = ""  # why no key was captured: the plan's [rehearsal] does not fit the database
    content: dict[str, Any] | None = None  # A5-content: content.Comparison as JSON, or {"not_compared": why}
    rollback: dict[str, Any] | None = None  # the rehearsed reverse: seconds, via, comparison, or error
    wal_bytes: int | None = None  # WAL the execute wrote (the forecast scales it to production's rows)
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str, log: Log = quiet) -> Iterator[dict[str, Any]]:
        """Time one step; its outcome and detail go into the timeline even when it fails."""
        entry: dict[str, Any] = {"step": name, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                 "seconds": None, "status": "running", "detail": ""}
        self.timeline.append(entry)
        log(f"rehearsal: {name} ...")
        started = time.monotonic()
        try:
            yield entry
        except BaseException as exc:
            entry["status"] = "failed"
            entry["detail"] = entry["detail"] or redact(str(exc))
            raise
        else:
            entry["status"] = "ok"
        finally:
            entry["seconds"] = round(time.monotonic() - started, 3)
            log(f"rehearsal: {name}: {entry['status']} in {entry['seconds']:.2f} s"
                + (f" ({entry['detail']})" if entry["detail"] else ""))

    def rollback_bound(self) -> dict[str, Any]:
        """Rollback option 1's worst case with this rehearsal's measured restore time, and option 2's
        (the reverse) as this rehearsal measured it, when it rehearsed it."""
        restore = self.restore_s if self.restore_s is not None else 0.0
        total = restore + REVERT_DEPLOYS_S + SMOKE_S
        reverse = (self.rollback or {}).get("seconds")
        return {"restore_s": restore, "restore_measured_on": self.restore_measured_on or "unknown",
                "revert_deploys_s": REVERT_DEPLOYS_S, "smoke_s": SMOKE_S,
                "total_s": round(total, 1), "budget_s": ROLLBACK_BUDGET_S, "within_budget": total <= ROLLBACK_BUDGET_S,
                "reverse_s": reverse, "reverse_measured_on": "the rehearsal's clone of the cut-over database"
                if reverse is not None else "not rehearsed"}

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(**data)


def snapshot_timestamp(path: Path) -> str:
    """The runbook names snapshots ``..._YYYYmmddTHHMMSSZ.sql.gz``; otherwise the file's mtime."""
    found = re.search(r"(\d{8}T\d{6}Z)", path.name)
    if found:
        return datetime.strptime(found.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).isoformat()
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds") + " (file mtime)"


KEY_VALUES = ("idempotency_key", "route", "key_case_id", "route_method", "route_path")  # from [rehearsal] key_*
KEY_KEYS = "[rehearsal] key_table, key_column, key_route_column, key_response_column"


def misfit(keys: str, exc: psycopg.Error) -> str:
    """Why a value the manual checks show cannot be read: the plan's keys naming what the database lacks."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{keys} do not fit the database ({redact(first)}); fix them in the plan"


def case_key(conn: Connection, plan: Plan, tenant: str, gaps: dict[str, str] | None = None) -> dict[str, str]:
    """An idempotency key on ``tenant`` whose cached response names a case (A12 replays it). A ``[rehearsal]``
    that does not fit the database (a column it lacks) gives no key, and says why in ``gaps``: the checks
    that need it are then "not configured", never a crash (``conn`` is in autocommit)."""
    r = plan.rehearsal
    query = sql.SQL("SELECT {k}, {route}, {resp}->>{field} FROM {t} WHERE {resp}->>{field} IS NOT NULL "
                    "AND {tenant} = {value} ORDER BY {k} LIMIT 1").format(
        k=I(r.key_column), route=I(r.key_route_column), resp=I(r.key_response_column), field=L(r.key_case_field),
        t=T(r.key_table), tenant=I(plan.tenant_column), value=L(tenant))
    columns = preflight.catalog_columns(conn, r.key_table)
    unfit = [f"[rehearsal] {key}: column {r.key_table}.{column} does not exist" for key, column in (
        ("key_column", r.key_column), ("key_route_column", r.key_route_column),
        ("key_response_column", r.key_response_column)) if column not in columns]
    try:
        row = None if unfit else conn.execute(query).fetchone()
    except psycopg.Error as exc:
        unfit = [misfit(KEY_KEYS, exc)]
    if unfit:
        if gaps is not None:
            gaps.update(dict.fromkeys(KEY_VALUES, "; ".join(unfit) + ("; fix it in the plan" if len(unfit) == 1
                                                                      else "; fix them in the plan")))
        return {}
    return {"idempotency_key": row[0], "route": row[1], "key_case_id": row[2]} if row else {}


def capture_key(url: str, plan: Plan, record: Record) -> dict[str, str]:
    """The key A12 replays, captured on the source before the cutover moves it; ``record.capture_gap`` says
    why there is none when the plan's [rehearsal] does not fit."""
    gaps: dict[str, str] = {}
    with db.connection(url, read_only=True, autocommit=True) as conn:
        found = case_key(conn, plan, plan.source, gaps)
    record.capture_gap = gaps.get("idempotency_key", "")
    return found


def _dry_run(url: str, plan: Plan, record: Record, log: Log) -> None:
    with record.step("pre-flight dry run", log) as entry:
        with db.connection(url, read_only=True) as conn:
            result = preflight.run(conn, plan)
        record.dry_run = result.verdict
        record.blockers = [b.line() for b in result.blockers]
        entry["detail"] = result.verdict
        if not result.ready:
            raise SetupError(f"pre-flight dry run is {result.verdict}, the rehearsal stops here: "
                             + "; ".join(record.blockers) + " (fix the snapshot, plan or classification, then "
                             "re-run)")


def _steps(log: Log) -> engine.Progress:
    """The engine's step events as progress lines: minutes on a real snapshot, not a silent screen."""

    def show(event: engine.StepEvent) -> None:
        label = f"rehearsal: execute [{event.number:2d}/{event.total}] {event.name}"
        if event.done:
            rows = "" if event.rows is None else f", {event.rows} rows"
            log(f"{label}: done in {event.seconds:.2f} s{rows}")
        else:
            log(f"{label} ...")

    return show


def _stream(command: str, env: dict[str, str], log: Log) -> int:
    """Run the operator's cutover command, showing each line as it comes: an execute on a real
    snapshot takes minutes, and a silent screen then looks like a hang."""
    argv, env = shell_command(command, env)  # its text (DB_PASSWORD=...) stays out of the shell's argv
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        log(f"cutover-cmd: {line.rstrip()}")
    return proc.wait()


def _wal_position(url: str) -> str | None:
    """Where the server's WAL stands: read before and after the execute, for the forecast's WAL volume."""
    try:
        with db.connection(url, read_only=True, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    except psycopg.Error:  # a managed server may not grant it: the forecast then says WAL is unmeasured
        return None
    return str(row[0]) if row else None


def _wal_since(url: str, start: str | None) -> int | None:
    if start is None:
        return None
    try:
        with db.connection(url, read_only=True, autocommit=True) as conn:
            row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", (start,)).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None


def _program(command: str) -> str:
    """The program a shell command runs, for naming it: its leading VAR=value assignments (where a
    DB_PASSWORD=... would be) are not the program."""
    try:
        words = shlex.split(command)
    except ValueError:
        return "sh"
    return next((w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)), "sh")


def _execute(url: str, plan: Plan, settings: Settings, record: Record, report_dir: Path, log: Log) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    wal_start = _wal_position(url)
    path = Path(settings.report_path) if settings.report_path is not None else (
        report_dir / f"cutover_report_rehearsal_{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json").resolve()
    actor = f"rehearsal:{settings.operator_name}"
    with record.step("execute the cutover", log) as entry:
        started = time.monotonic()
        if settings.cutover_cmd is not None:
            record.execute_via = "--cutover-cmd"
            env = {**os.environ, "DATABASE_URL": url, "CUTOVER_ACTOR": actor, "CUTOVER_REPORT_PATH": str(path)}
            returncode = _stream(settings.cutover_cmd, env, log)
            if returncode != 0:
                raise SetupError(f"--cutover-cmd exited {returncode} ({_program(settings.cutover_cmd)}); "
                                 "its output is above; the rehearsal stops here")
            if not path.exists():
                raise SetupError(f"--cutover-cmd exited 0 but wrote no report at $CUTOVER_REPORT_PATH ({path}); "
                                 "make the command pass --report-path \"$CUTOVER_REPORT_PATH\"")
        else:
            record.execute_via = "bundled cutover module"
            with engine.private_spool() as spool:
                try:
                    report, id_files = engine.execute(url, plan, actor, engine.Timeouts(
                        settings.lock_timeout, settings.statement_timeout), progress=_steps(log), spool=spool)
                except engine.RunFailed as exc:
                    raise SetupError(f"the cutover failed on the rehearsal target: {exc}") from None
                reports.write(path, report, id_files)
        loaded = reports.load(path)
        record.execute_s = float(loaded.get("duration_s") or (time.monotonic() - started))
        record.report_path = str(path)
        entry["detail"] = f"{loaded.get('commit_status')}, {sum(loaded.get('moved', {}).values())} rows"
        if loaded.get("commit_status") != "committed":
            raise SetupError(f"the cutover report says commit_status={loaded.get('commit_status')!r}: not committed")
    record.wal_bytes = _wal_since(url, wal_start)
    return path


def _compare_content(before_url: str, url: str, plan: Plan, record: Record, log: Log) -> None:
    """A5-content's evidence: every planned row of the cut-over database against the restored snapshot."""
    with record.step(f"compare every planned row with the snapshot ({A5_CONTENT.id})", log) as entry:
        try:
            found = content.compare(before_url, url, plan, moved_back=True)
        except psycopg.Error as exc:
            record.content = {"error": redact(str(exc).strip().splitlines()[0])}
            entry["detail"] = f"not compared: {record.content['error']}"
            return
        record.content = found.to_json()
        entry["detail"] = (f"{found.rows} rows in {found.tables} tables: nothing but the tenant changed" if found.same
                           else f"{len(found.differences)} differences")


def _reverse(url: str, plan: Plan, settings: Settings, record: Record, report_dir: Path, log: Log) -> str:
    """The reverse on ``url`` (a clone): the bundled module, or the operator's --reverse-cmd."""
    actor = f"rehearsal:{settings.operator_name}"
    if settings.reverse_cmd is None:
        aftercare.reverse(url, plan, actor, engine.Timeouts(settings.lock_timeout, settings.statement_timeout),
                          reports.load_streamed(Path(record.report_path)))
        return "bundled cutover module"
    copy = report_dir / f"{Path(record.report_path).stem}-rollback-rehearsal.json"
    with open(record.report_path, "rb") as src, open_private(copy, "wb") as dst:  # patients' keys: 0600
        shutil.copyfileobj(src, dst)
    env = {**os.environ, "DATABASE_URL": url, "CUTOVER_ACTOR": actor, "CUTOVER_REPORT_PATH": str(copy)}
    returncode = _stream(settings.reverse_cmd, env, log)
    if returncode != 0:
        raise SetupError(f"--reverse-cmd exited {returncode} ({_program(settings.reverse_cmd)}); its output "
                         "is above")
    return "--reverse-cmd"


def _rehearse_rollback(admin_url: str, url: str, plan: Plan, settings: Settings, record: Record, report_dir: Path,
                       log: Log, against: Callable[[str], content.Comparison]) -> None:
    """Rollback option 2 on a clone of the cut-over database: timed, then proven back to the snapshot
    (``against`` compares the clone with what the rehearsal kept of the database before the cutover)."""
    name = f"{db.database_name(url)}_rollback"
    with record.step("rehearse rollback option 2: the reverse on a clone", log) as entry:
        try:
            clone = db.create_database(admin_url, name, template=db.database_name(url))
        except psycopg.Error as exc:
            record.rollback = {"error": f"could not clone the cut-over database to rehearse the reverse on "
                                        f"({redact(str(exc).strip().splitlines()[0])}); it needs CREATEDB and no "
                                        "other session on the database"}
            entry["detail"] = record.rollback["error"]
            return
        try:
            started = time.monotonic()
            via = _reverse(clone, plan, settings, record, report_dir, log)
            seconds = round(time.monotonic() - started, 3)
            found = against(clone)
        except (SetupError, engine.RunFailed, psycopg.Error) as exc:
            record.rollback = {"error": redact(str(exc).strip().splitlines()[0])}
            entry["detail"] = f"failed: {record.rollback['error']}"
            return
        finally:
            db.drop_database(admin_url, name)
        record.rollback = {"seconds": seconds, "via": via, "comparison": found.to_json()}
        entry["detail"] = f"{seconds:.1f} s; " + ("every planned row back" if found.same else
                                                   f"{len(found.differences)} differences")


def earlier_logs(artifacts: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Earlier runs' operator logs as (stamp, log), newest first; ``latest`` (a link) and unreadable logs skipped."""
    for path in sorted(artifacts.glob("*/operator-log.json"), reverse=True):
        if path.parent.is_symlink():
            continue
        try:
            log = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(log, dict):
            yield path.parent.name, log


def _earlier_restore(record: Record, artifacts: Path, target: str) -> bool:
    """A re-run on a restored dev branch: take the snapshot and restore figures from the run that restored
    it, naming that run, so the log and the rollback bound keep them."""
    for stamp, log in earlier_logs(artifacts):
        earlier = log.get("rehearsal") or {}
        if earlier.get("target") == target and earlier.get("restore_s") is not None:
            record.snapshot = str(earlier.get("snapshot") or "")
            record.snapshot_timestamp = str(earlier.get("snapshot_timestamp") or "")
            record.restore_s = float(earlier["restore_s"])
            record.restore_measured_on = str(earlier.get("restore_measured_on") or "")
            record.restored_by_run = str(earlier.get("restored_by_run") or stamp)
            return True
    return False


def _restore_into_url(settings: Settings, provider: SessionSandbox, plan: Plan, record: Record, log: Log) -> None:
    """A --rehearse dev branch: restore the snapshot when the database is empty, else use it as it is."""
    assert settings.db_url is not None
    with db.connection(settings.db_url, read_only=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                                             "OR schemaname = ANY(%s)", (list(plan.schemas),))}
    with record.step("restore the snapshot", log) as entry:
        if tables:
            entry["detail"] = f"the database already holds {len(tables)} tables: used as restored (runbook step 2)"
            if _earlier_restore(record, Path(settings.artifacts_dir), mask_url(settings.db_url)):
                entry["detail"] += f"; restored by the earlier run {record.restored_by_run}"
            else:
                record.snapshot = ("already restored on the target (restored before this run, not by an earlier run "
                                   "in artifacts/: its snapshot timestamp and restore time are unknown)")
            return
        path = provider.snapshot_file()
        record.snapshot, record.snapshot_timestamp = str(path), snapshot_timestamp(path)
        result = snapshot.restore(path, settings.db_url, plan, log=log)
        record.restore_s = result.total_seconds
        record.restore_measured_on = f"the dev branch {mask_url(settings.db_url)}"


def check_named_target(settings: Settings) -> None:
    """Before the first write: the --db-url database must be the one --rehearse=DBNAME names, as the server
    itself reports it (current_database(), not the URL's path: a pooler or service file can map one to another)."""
    assert settings.db_url is not None
    if not settings.rehearse:
        raise SetupError("the rehearsal writes to its target; a --db-url target needs the explicit opt-in "
                         "--rehearse=DBNAME naming the dev-branch database, or drop --db-url to use the sandbox")
    with db.connection(settings.db_url, read_only=True) as conn:
        connected = str(db.one(conn, "SELECT current_database()")[0])
    if connected != settings.rehearse:
        raise SetupError(f"--rehearse={settings.rehearse} but --db-url connects to the database {connected!r}; "
                         "nothing was written: fix --db-url, or name the database you mean to write to in "
                         "--rehearse=DBNAME")


def run(provider: SessionSandbox, plan: Plan, settings: Settings, workdir: Path, record: Record,
        log: Log = quiet, report_dir: Path | None = None) -> None:
    """Restore, dry run, capture, execute: the target the checks then look at (filled into ``record``)."""
    if settings.db_url is not None:
        check_named_target(settings)
        record.sandbox = False
        url = settings.db_url
        _restore_into_url(settings, provider, plan, record, log)
    else:
        with record.step("provision the sandbox", log) as entry:
            entry["detail"] = provider.server().backend
        with record.step("restore the snapshot", log) as entry:
            provider.template()
            info = provider.restore_info()
            record.restore_s = float(str(info.get("restore_seconds", 0.0)))
            record.restore_measured_on = (
                "the sandbox, durable (fsync, full_page_writes on)" if settings.sandbox_durable else
                "the sandbox with fsync and full_page_writes off, faster than a real server "
                "(--sandbox-durable or a dev-branch restore measures a durable one)")
            record.snapshot = str(info.get("snapshot", ""))
            record.snapshot_timestamp = snapshot_timestamp(Path(record.snapshot)) if record.snapshot else ""
            entry["detail"] = f"{info.get('rows')} rows in {record.restore_s:.2f} s"
            roles = info.get("created_roles")
            record.created_roles = [str(r) for r in roles] if isinstance(roles, list) else []
            if record.created_roles:
                entry["detail"] += f"; created the NOLOGIN roles it names: {', '.join(record.created_roles)}"
            url = provider.clone("rehearsal")
    record.target = mask_url(url)
    with db.connection(url, read_only=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        record.postgres = str(row[0]).split()[0] if row else ""
    if record.snapshot and Path(record.snapshot).is_file():
        record.snapshot_source = majors.snapshot_source(Path(record.snapshot)) or ""
    record.major_note = provider.server().note
    _dry_run(url, plan, record, log)
    record.captured = capture_key(url, plan, record)
    if settings.db_url is None:
        _execute(url, plan, settings, record, report_dir or workdir, log)
        admin = provider.server().admin_url
        template = db.with_database(admin, provider.template())
        _compare_content(template, url, plan, record, log)
        _rehearse_rollback(admin, url, plan, settings, record, report_dir or workdir, log,
                           lambda clone: content.compare(template, clone, plan, moved_back=False))
    else:  # a dev branch keeps no copy of itself: its sums now, compared later table by table
        moved_back, exact = content.sums(url, plan, moved_back=True), content.sums(url, plan, moved_back=False)
        _execute(url, plan, settings, record, report_dir or workdir, log)
        with record.step(f"compare every planned table with its sums before the cutover ({A5_CONTENT.id})", log):
            record.content = content.compare_sums(moved_back, content.sums(url, plan, moved_back=True)).to_json()
        if settings.rehearse_rollback:
            # CREATE DATABASE ... TEMPLATE needs no session on the branch itself: it is issued from "postgres"
            _rehearse_rollback(db.with_database(url, "postgres"), url, plan, settings, record,
                               report_dir or workdir, log,
                               lambda clone: content.compare_sums(exact, content.sums(clone, plan, moved_back=False)))
        else:
            record.rollback = {"not_rehearsed": "a dev branch's reverse is rehearsed on a clone of it only when you "
                                                "say so: pass --rehearse-rollback (needs CREATEDB), or rehearse on "
                                                "the sandbox"}
    (workdir / "rehearsal-url").write_text(url)


def shared(provider: SessionSandbox, plan: Plan, settings: Settings, workdir: Path,
           log: Log = quiet, report_dir: Path | None = None) -> tuple[DatabaseUnderCheck, Record]:
    """The run's one rehearsal: done by the first process that asks, read by the others."""
    marker = workdir / "rehearsal.json"
    with FileLock(str(workdir / "rehearsal.lock")):
        if not marker.exists():
            record = Record()
            try:
                run(provider, plan, settings, workdir, record, log, report_dir)
            except BaseException as exc:  # Ctrl-C too: the operator log then says at which step it stopped
                why = str(exc) if isinstance(exc, SetupError) else f"interrupted ({type(exc).__name__})"
                marker.write_text(json.dumps({"error": why, "record": record.to_json()}))
                raise
            marker.write_text(json.dumps({"record": record.to_json()}))
        data = json.loads(marker.read_text())
    if "error" in data:
        raise SetupError(data["error"])
    record = Record.from_json(data["record"])
    url = (workdir / "rehearsal-url").read_text()
    return DatabaseUnderCheck(url, reports.load(Path(record.report_path)), Path(record.report_path),
                  sandbox=settings.db_url is None), record


def load_record(workdir: Path) -> Record | None:
    """The rehearsal record for the operator log, if this run rehearsed."""
    marker = workdir / "rehearsal.json"
    if not marker.exists():
        return None
    return Record.from_json(json.loads(marker.read_text())["record"])


def _straggler_where(plan: Plan, tenant: str) -> sql.Composable:
    st = plan.rehearsal.straggler
    return sql.SQL("{tenant} = {t} AND {col}->>{key} = {marker}").format(
        tenant=I(plan.tenant_column), t=L(tenant), col=I(st.marker_column), key=L(st.marker_key), marker=L(st.marker))


def insert_straggler(url: str, plan: Plan) -> str:
    """The runbook's synthetic lost write: one patient-classified row on the source; returns its key."""
    st, rule = plan.rehearsal.straggler, plan.table(plan.rehearsal.straggler.table)
    columns = [plan.tenant_column, st.marker_column, *st.values, *st.now_columns]
    values = [L(plan.source), sql.SQL("jsonb_build_object({}, {})").format(L(st.marker_key), L(st.marker)),
              *(L(v) for v in st.values.values()), *(sql.SQL("now()") for _ in st.now_columns)]
    with db.connection(url) as conn:
        # Key columns the table fills itself (identity, serial, a default) are left to it; any other
        # gets a fresh uuid read as the column's own type (text or uuid).
        for key in rule.key:
            if key in columns or live_schema.has_default(conn, st.table, key):
                continue
            columns.append(key)
            values.append(sql.SQL("(jsonb_populate_record(NULL::{t}, jsonb_build_object({k}, gen_random_uuid())))"
                                  ".{c}").format(t=T(st.table), k=L(key), c=I(key)))
        query = sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals}) RETURNING {k}").format(
            t=T(st.table), cols=sql.SQL(", ").join(map(I, columns)), vals=sql.SQL(", ").join(values),
            k=key_text(rule.key))
        row = conn.execute(query).fetchone()
        conn.commit()
    assert row is not None
    return str(row[0])


def count_straggler(url: str, plan: Plan, tenant: str) -> int:
    """How many synthetic stragglers sit on ``tenant`` (the runbook's confirm steps)."""
    query = sql.SQL("SELECT count(*) FROM {t} WHERE {w}").format(
        t=T(plan.rehearsal.straggler.table), w=_straggler_where(plan, tenant))
    with db.connection(url, read_only=True) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def delete_straggler(url: str, plan: Plan) -> int:
    """The runbook's cleanup: every synthetic straggler, on any tenant, so no audit sees it later."""
    st = plan.rehearsal.straggler
    query = sql.SQL("DELETE FROM {t} WHERE {col}->>{key} = {marker}").format(
        t=T(st.table), col=I(st.marker_column), key=L(st.marker_key), marker=L(st.marker))
    with db.connection(url) as conn:
        deleted = conn.execute(query).rowcount
        conn.commit()
    return deleted


def manual_values(url: str, plan: Plan, record: Record | None, gaps: dict[str, str] | None = None) -> dict[str, str]:
    """Real values for the manual checks' steps: moved rows on the target, the captured key. A value the
    plan's [rehearsal] cannot supply (a table or column the database lacks) is left out, and ``gaps``
    (when given) says why, per value name."""
    r = plan.rehearsal
    values: dict[str, str] = {"source": plan.source, "target": plan.target, "database": mask_url(url)}
    gaps = {} if gaps is None else gaps

    def first(name: str, table: str, keys: str) -> str | None:
        rule = plan.table(table)
        query = sql.SQL("SELECT {k} FROM {t} WHERE {tenant} = {tgt} ORDER BY {o} LIMIT 1").format(
            k=key_text(rule.key), t=T(table), tenant=I(plan.tenant_column), tgt=L(plan.target),
            o=key_order(rule.key))
        try:
            row = conn.execute(query).fetchone()
        except psycopg.Error as exc:
            gaps[name] = misfit(keys, exc)
            return None
        return str(row[0]) if row else None

    with db.connection(url, read_only=True, autocommit=True) as conn:
        for name, table, key in (("case_id", r.case_table, "case_table"),
                                 ("patient_id", r.patient_table, "patient_table"),
                                 ("document_id", r.document_table, "document_table")):
            found = first(name, table, f"[rehearsal] {key} ({table})")
            if found is not None:
                values[name] = found
        if record is not None and record.capture_gap:
            gaps.update(dict.fromkeys(KEY_VALUES, record.capture_gap))
        # Not rehearsed here: a key on the target names a moved case.
        values.update(record.captured if record and record.captured else case_key(conn, plan, plan.target, gaps))
    method, _, path = values.get("route", "").partition(" ")  # stored as "POST /api/v1/cases": split to paste
    if path:
        values.update(route_method=method, route_path=path)
    return values


def key_facts(url: str, plan: Plan, key: str | None, case_id: str | None, document_id: str | None,
              patient_id: str | None) -> dict[str, Any]:
    """What the assists compare with: the cached response, where the case and document sit, and what the
    app role sees of the moved patient from the source tenant (A15's SQL probe). A fact the plan's
    [rehearsal] cannot reach (a column the database lacks, no app role) is None: its check says so, the
    others still get theirs."""
    r = plan.rehearsal
    facts: dict[str, Any] = dict.fromkeys(("cached", "case_tenant", "document_tenant", "patient_visible_to_source"))

    def read(query: db.Query, *setup: db.Query) -> Any:
        """The first column of the query's row, in a transaction of its own (``setup`` runs first in it)."""
        try:
            with conn.transaction():
                for statement in setup:
                    conn.execute(statement)
                row = conn.execute(query).fetchone()
        except psycopg.Error:
            return None
        return row[0] if row else None

    def tenant_of(table: str, row_id: str | None) -> str | None:
        if row_id is None:
            return None
        found = read(sql.SQL("SELECT {tenant} FROM {t} WHERE {k} = {v}").format(
            tenant=I(plan.tenant_column), t=T(table), k=key_text(plan.table(table).key), v=L(row_id)))
        return None if found is None else str(found)

    with db.connection(url, read_only=True, autocommit=True) as conn:
        if key is not None:
            facts["cached"] = read(sql.SQL("SELECT {resp} FROM {t} WHERE {k} = {v}").format(
                resp=I(r.key_response_column), t=T(r.key_table), k=I(r.key_column), v=L(key)))
        facts["case_tenant"] = tenant_of(r.case_table, case_id)
        facts["document_tenant"] = tenant_of(r.document_table, document_id)
        if patient_id is not None:
            # the probe filters as the app does (its role, row_security on, the source tenant); nothing else may
            found = read(sql.SQL("SELECT count(*) FROM {t} WHERE {k} = {v}").format(
                t=T(r.patient_table), k=key_text(plan.table(r.patient_table).key), v=L(patient_id)),
                sql.SQL("SET LOCAL ROLE {}").format(I(plan.app_role)), sql.SQL("SET LOCAL row_security = on"),
                sql.SQL("SELECT set_config({}, {}, true)").format(L(plan.tenant_setting), L(plan.source)))
            facts["patient_visible_to_source"] = None if found is None else int(found)
    return facts
