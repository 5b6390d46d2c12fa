"""Database access: connecting, naming databases, and turning driver errors into operator errors.

All connections are opened here so that timeouts, ``application_name`` and the mapping of
psycopg's errors to one-line :class:`SetupError` messages (with the password masked) are the same
for the CLI, the sandbox and the checks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cutover.core.errors import DatabaseError, SetupError
from cutover.core.plan import table_regclass
from cutover.core.redact import mask_url, redact, register_secret

APPLICATION_NAME = "cutover-suite"

# Rows come back as tuples (psycopg's default row factory); one name for every connection we hand out.
Connection = psycopg.Connection[tuple[Any, ...]]
Query = str | sql.SQL | sql.Composed


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def with_login(url: str, user: str, password: str) -> str:
    """The same server and database, another login (the password is registered to be masked), in the
    form it was given: a key=value string stays one, and a URL's own ``user``/``password`` query
    parameters go, since libpq would let them override the login put in its authority."""
    register_secret(password)
    if not re.match(r"(?i)postgres(?:ql)?://", url):
        return make_conninfo(url, user=user, password=password)
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port is not None else ""
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if k not in ("user", "password")])
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}{port}",
                                     query=query))


def database_name(url: str) -> str:
    params = params_of(url)
    return str(params.get("dbname") or params.get("user") or "postgres")


def params_of(url: str) -> dict[str, Any]:
    """host, port, user, dbname as libpq reads them, from a URL or a key=value string alike (a
    port that is no number, which urlsplit refuses with a traceback, included); {} when unreadable."""
    try:
        return conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return {}


def describe_failure(url: str, exc: BaseException, option: str = "--db-url") -> str:
    """One line saying why a connection failed and what fixes it; never the password."""
    params = params_of(url)
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{database_name(url)}"
    text = redact(str(exc)).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    lowered = str(exc).lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return (f"authentication failed for user '{params.get('user')}' at {where} (password not shown); "
                f"fix the credentials in {option}")
    if "does not exist" in lowered and "database" in lowered:
        return f"database '{database_name(url)}' does not exist at {where}; create it or fix {option}"
    if any(s in lowered for s in ("connection refused", "could not translate host", "timeout expired",
                                  "no route to host", "name or service not known", "network is unreachable")):
        return f"cannot reach PostgreSQL at {where} ({first}); check the server is up, or fix {option}"
    return f"cannot connect to {mask_url(url)} ({first}); fix {option}"


_CAUSES = (
    ("42501", "the role in the database URL lacks a privilege this command needs: grant it, or connect as a "
              "role that has it"),
    ("54", "program limit exceeded in PostgreSQL: a value or statement is larger than the server allows; "
           "report it, the cutover must not build one"),
    ("53100", "disk full on the database server: free space (or grow the volume) and run again"),
    ("53200", "out of memory on the database server: lower work_mem or free memory and run again"),
    ("53", "insufficient resources on the database server"),
    ("40001", "serialization failure: a concurrent transaction conflicted; run again"),
    ("40P01", "deadlock detected: another session locked the same rows; run again once it is done"),
)


def connection_lost(exc: psycopg.Error) -> bool:
    """The session died (SQLSTATE class 08 or 57P, or none at all), as opposed to a statement refused."""
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, psycopg.OperationalError) and (not state or state.startswith(("08", "57P")))


def cause_of(exc: psycopg.Error) -> str:
    """The cause alone, by SQLSTATE, without the server's text (which can quote a row's values): for
    messages that leave this machine, such as alerts."""
    state = getattr(exc, "sqlstate", None) or ""
    cause = next((c.split(":")[0] for prefix, c in _CAUSES if state.startswith(prefix)), "")
    if cause:
        return cause
    return "connection lost" if connection_lost(exc) else "database error"


def describe_error(exc: psycopg.Error) -> str:
    """One line for a database error: the cause by SQLSTATE, the server's first line, the SQLSTATE; the
    password masked. By SQLSTATE because psycopg files program limits, disk full and out of memory under
    OperationalError too, and calling them all "connection lost" sent operators after the network."""
    first = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    state = getattr(exc, "sqlstate", None) or ""
    for prefix, cause in _CAUSES:
        if state.startswith(prefix):
            return f"{cause} ({first}; SQLSTATE {state})"
    if connection_lost(exc):
        return f"connection lost ({first}); check the server is up, then run again"
    return f"{first} (SQLSTATE {state})" if state else first


@contextmanager
def operator_errors(command: str) -> Iterator[None]:
    """Around a whole command: whatever database error reaches it becomes one :class:`DatabaseError`
    line naming the command, so the command's caller catches one error type, once."""
    try:
        yield
    except psycopg.Error as exc:
        raise DatabaseError(f"{command}: the database refused it: {describe_error(exc)}") from None


# Every connection: a query that row-level security would filter fails instead of returning fewer
# rows (pg_dump does the same). A role bound by RLS would otherwise see a partial database, and a
# dry run or a check on it would pass on what it could not see. Checks that mean to see what the
# application sees switch it on for their own transaction (``SET LOCAL row_security = on``).
ROW_SECURITY_OFF = {"row_security": "off"}


def hidden_by_row_security(conn: Connection, tables: Sequence[str]) -> str | None:
    """One line naming this connection's role, the tables RLS would filter for it, and the fix; ``None``
    when it reads every row (a superuser, a BYPASSRLS role, an owner without FORCE, or no RLS).

    ``row_security_active`` answers for the current role whatever ``row_security`` is set to, so this
    is asked before any row is read: the failure is one line, not the first query's error.
    """
    rows = conn.execute("SELECT current_user, quote_ident(current_user), t "
                        "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(t, r, n) "
                        "WHERE row_security_active(to_regclass(r)) ORDER BY n",
                        (list(tables), [table_regclass(t) for t in tables])).fetchall()
    if not rows:
        return None
    role, quoted = rows[0][0], rows[0][1]
    return (f"role '{role}' reads {', '.join(r[2] for r in rows)} through row-level security, which would hide "
            f"rows from the suite; connect as a superuser or a BYPASSRLS role (ALTER ROLE {quoted} BYPASSRLS), or "
            f"as the tables' owner where they are not under FORCE ROW LEVEL SECURITY")


def _escaped(value: str) -> str:
    """A setting's value as libpq's ``options`` reads it: spaces and backslashes escaped."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def libpq_options(url: str, settings: Mapping[str, str]) -> str | None:
    """The operator's own ``options`` (the URL's, else PGOPTIONS, as libpq itself picks), then ours.

    Passing ``options=`` to libpq replaces the URL's and PGOPTIONS' outright: a read-only connection
    would then lose a ``-csearch_path=...`` that execute keeps, and reading and writing would see
    different schemas. Ours come last, so the server applies them after the operator's: a
    ``-cdefault_transaction_read_only=off`` in the URL cannot make a read-only connection writable.
    """
    theirs = str(conninfo_to_dict(url).get("options") or os.environ.get("PGOPTIONS") or "").strip()
    ours = " ".join(f"-c {k}={_escaped(str(v))}" for k, v in settings.items())
    return " ".join(part for part in (theirs, ours) if part) or None


def connect(
    url: str,
    *,
    autocommit: bool = False,
    read_only: bool = False,
    connect_timeout: int = 5,
    options: Mapping[str, str] | None = None,
    purpose: str = "--db-url",
    application_name: str = APPLICATION_NAME,
) -> Connection:
    """Open a connection; a failure becomes a one-line :class:`SetupError` naming ``purpose``."""
    settings = {**ROW_SECURITY_OFF, **(options or {})}
    if read_only:
        settings["default_transaction_read_only"] = "on"
    try:
        # UTF8 whatever the database's encoding: on SQL_ASCII psycopg would return bytes for text.
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=connect_timeout,
                               application_name=application_name, options=libpq_options(url, settings),
                               client_encoding="UTF8")
    except psycopg.Error as exc:
        raise SetupError(describe_failure(url, exc, purpose)) from None
    return conn


def one(conn: Connection, query: Query, params: Any = None) -> tuple[Any, ...]:
    """The row of a query that always returns exactly one (``count(*)``, a function call)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise LookupError("a one-row query returned no row")
    return row


@contextmanager
def local_settings(conn: Connection, settings: Mapping[str, str]) -> Iterator[None]:
    """Server settings for a stretch of the current transaction, then back to what they were.

    Set with ``set_config(..., true)``, so they are gone at COMMIT or ROLLBACK even if the restore
    never runs: a planner switch or a sample size meant for one statement cannot leak into the
    operator's session or the rest of the run.
    """
    names = list(settings)
    before = one(conn, "SELECT array_agg(current_setting(n) ORDER BY i) "
                       "FROM unnest(%s::text[]) WITH ORDINALITY u(n, i)", (names,))[0]
    conn.execute("SELECT set_config(n, v, true) FROM unnest(%s::text[], %s::text[]) u(n, v)",
                 (names, [settings[n] for n in names]))
    try:
        yield
    finally:
        # Only in the transaction that is still going: a failed one (a timeout, say) must reach the
        # caller as itself, not as the restore's "current transaction is aborted", and an ended one
        # took the settings with it.
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.execute("SELECT set_config(n, v, true) FROM unnest(%s::text[], %s::text[]) u(n, v)",
                         (names, before))


@contextmanager
def connection(url: str, **kwargs: object) -> Iterator[Connection]:
    """A connection that is closed however the block ends."""
    conn = connect(url, **kwargs)  # type: ignore[arg-type]
    try:
        yield conn
    finally:
        conn.close()


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """Create a database (optionally from a template) and return its URL."""
    stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
    with connection(admin_url, autocommit=True, purpose="the sandbox") as conn:
        conn.execute(stmt)
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with connection(admin_url, autocommit=True, purpose="the sandbox") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
