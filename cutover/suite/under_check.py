"""The database the smoke checks look at, and the read-only connection they look through.

With ``--db-url`` the database is adopted as it is: nothing is created, cut over or written, and
the report comes from ``--report-path``. Without it the database is a sandbox clone of the restored
snapshot with the reference cutover executed on it, and the report is the one that run wrote.

Named "under check" rather than "target": in this domain the target is the patient tenant the
rows move to, and one word for both made "the target's rows" ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cutover.core import db
from cutover.core.db import Connection
from cutover.core.errors import SetupError
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.core.redact import mask_url
from cutover.core.row_keys import CutoverReport
from cutover.reference import reports
from cutover.sandbox import majors

CHECK_APPLICATION = "cutover-suite-checks"


@dataclass(frozen=True)
class DatabaseUnderCheck:
    """A database under check, with the cutover report the A5/A10 checks compare it with."""

    url: str
    report: CutoverReport | None
    report_path: Path | None
    sandbox: bool


def describe(settings: Settings, production: bool) -> str:
    """The target as the first line of a run: host, port, database, user; never the password."""
    if settings.db_url is None and production:
        return "cutover target: none given (Set B needs --db-url=URL or DATABASE_URL)"
    if settings.db_url is None:
        return (f"cutover target: a throwaway sandbox ({settings.sandbox}), restored from "
                f"{settings.snapshot or 'the embedded default snapshot'}{_majors(settings)}")
    mode = ("read-only, production window" if production else
            f"the rehearsal writes here (--rehearse={settings.rehearse})" if settings.rehearse else "read-only")
    return f"cutover target: {reach(settings.db_url)} ({mode})"


def _majors(settings: Settings) -> str:
    """The snapshot's source version and the major the sandbox will run, for the run's first line."""
    try:
        want = majors.wanted(Path(settings.snapshot) if settings.snapshot else None, settings.pg_major,
                             settings.allow_newer_server)
    except (SetupError, OSError):
        return ""  # the sandbox's start says what is wrong, with its fix
    source = "" if want.major is None else (
        f" (dumped from PostgreSQL {want.version})" if want.version else f" (--pg-major {want.major})")
    if settings.sandbox == "local":  # the installation is known before it starts: name its version
        try:
            chosen = majors.local_installation(settings.pg_bindir, want)
        except SetupError:
            return source  # the refusal is the run's setup error, in one line
        return f"{source}, on PostgreSQL {chosen.version} ({chosen.origin})"
    if want.major is None:
        return ", on the first PostgreSQL server found (its own dump)"
    return f"{source}, on a PostgreSQL {want.major}" + (" or newer" if want.allow_newer else "") + " server"


def reach(url: str) -> str:
    """Host, port, database, user, password masked: what an operator needs to point a client at it.

    Read with libpq's own parser, so a key=value string is described as well as a URL (it used to be
    shown whole as the "database", password and all)."""
    params = db.params_of(url)
    if not params:
        return mask_url(url)
    return (f"host {params.get('host') or 'local socket'}, port {params.get('port') or 5432}, "
            f"database {params.get('dbname') or '(default)'}, user {params.get('user') or '(default)'}, "
            f"password {'***' if params.get('password') else 'not in the URL'}")


def adopt(settings: Settings) -> DatabaseUnderCheck:
    """--db-url as it is; the report, when given, is read (and must be a cutover report)."""
    assert settings.db_url is not None
    path = Path(settings.report_path) if settings.report_path is not None else None
    report = reports.load(path) if path is not None else None
    return DatabaseUnderCheck(settings.db_url, report, path, sandbox=False)


def check_connection(url: str, settings: Settings, plan: Plan) -> Connection:
    """Read-only by session default, short timeouts, named; refuses to hand out anything writable, or a
    role that row security would show only part of the plan's tables (a check would pass on less)."""
    conn = db.connect(url, autocommit=True, read_only=True, application_name=CHECK_APPLICATION,
                      options={"statement_timeout": settings.check_statement_timeout,
                               "lock_timeout": settings.check_lock_timeout})
    row = conn.execute("SHOW transaction_read_only").fetchone()
    if row is None or row[0] != "on":
        conn.close()
        raise SetupError("the checks' connection is not read-only (transaction_read_only is off); refusing to run "
                         "checks on a connection that could write")
    hidden = db.hidden_by_row_security(conn, plan.all_tables)
    if hidden is not None:
        conn.close()
        raise SetupError(f"the checks cannot see every row: {hidden}; put that role in --db-url")
    return conn


def server_version(url: str | None) -> str:
    """A --db-url target's PostgreSQL version (the rehearsal records a sandbox's): what the report's
    reader compares with production's; never a reason for the log to be missing."""
    if url is None:
        return "unknown"
    try:
        with db.connection(url, read_only=True, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except Exception as exc:  # an unreachable target is already the verdict's setup error
        return f"unknown ({type(exc).__name__})"
    return str(row[0]) if row else "unknown"
