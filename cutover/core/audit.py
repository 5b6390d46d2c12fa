"""The cutover's audit trail: the one place that knows where its events are, which rows they are,
which of them is the newest, how one is written and whether it can be.

The database's record of what the cutover did (committed, swept, reversed, and the allow-list's
parts) is what sweep, reverse, ``report --rebuild``, the checks, the window's timeline and the
go/no-go all trust over any file. They used to ask it in three queries with three meanings of
"newest" (text order with the undated last, text order with the undated first, parsed times), so a
rebuilt report and the "already cut over" blocker could name different runs. Here there is one:

* the cutover's events are the rows of the audit table with its source value, on the target tenant
  (where :func:`write_event` writes every one of them);
* the newest is the one with the latest ``committed_at`` (ISO 8601 in UTC, written by the event's
  own transaction, so text order is time order); an event without one is the oldest.

The audit table is the application's events table the plan names, or, for a schema without one
(``[audit] own = true``), a table the cutover owns (``OWN_DDL``). The SQL is composed with
``psycopg.sql`` from the plan's names.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cutover.core import live_schema, tenants
from cutover.core.db import Connection
from cutover.core.plan import Plan, table_sql

# ``[audit] own = true``: the cutover's own table (``cutover.core.plan.OWN_AUDIT_TABLE``), in a schema of
# its own so that it never mixes with the application's tables and drops in one statement after the
# window. The tenant is text whatever the tenants' key type: the table only ever compares it with the
# plan's target. Only its owner (the role that ran the first execute) may read it: its events list
# the keys of every moved row.
OWN_TABLE = ("cutover", "audit_events")
OWN_TENANT = "tenant"
OWN_DDL = (
    "CREATE SCHEMA IF NOT EXISTS cutover",
    "REVOKE ALL ON SCHEMA cutover FROM PUBLIC",
    "CREATE TABLE IF NOT EXISTS cutover.audit_events (id uuid PRIMARY KEY, tenant text NOT NULL, "
    "event_type text NOT NULL, payload jsonb NOT NULL, source_service text NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now())",
    "REVOKE ALL ON cutover.audit_events FROM PUBLIC",
    "CREATE INDEX IF NOT EXISTS audit_events_tenant_type ON cutover.audit_events (tenant, event_type)",
)


@dataclass(frozen=True)
class Event:
    """One of the cutover's events: its type and its payload (a JSON object)."""

    kind: str
    payload: dict[str, Any]


def table_ident(plan: Plan) -> sql.Identifier:
    """The audit table: the application's events table, or the cutover's own (``[audit] own = true``)."""
    return sql.Identifier(*OWN_TABLE) if plan.audit.own else table_sql(plan.audit.table)


def tenant_column(plan: Plan) -> str:
    """The audit table's tenant column: the plan's, or the own table's text copy of the target."""
    return OWN_TENANT if plan.audit.own else plan.tenant_column


def _trail(plan: Plan, alias: str | None = None) -> dict[str, sql.Composable]:
    """The audit table and its columns as SQL, for ``.format(**_trail(plan))``."""
    a = plan.audit

    def col(name: str) -> sql.Identifier:
        return sql.Identifier(alias, name) if alias else sql.Identifier(name)

    return {"t": table_ident(plan), "ty": col(a.type_column), "pl": col(a.payload_column),
            "src": col(a.source_column), "sv": sql.Literal(a.source_value), "ten": col(tenant_column(plan)),
            "target": _target(plan)}


def _target(plan: Plan) -> sql.Composable:
    """The target tenant as the audit table holds it: the cutover's own table keeps it as text, an
    application's events table in the tenant key's own type."""
    return sql.Literal(plan.target) if plan.audit.own else tenants.literal(plan, plan.target)


def exists(conn: Connection, plan: Plan) -> bool:
    """Is there an audit table to read? The cutover's own is absent until the first execute makes it
    (and absent means no event: nothing was ever cut over with it)."""
    if not plan.audit.own:
        return True  # the application's table: the pre-flight's catalog comparison answers for it
    row = conn.execute("SELECT to_regclass('cutover.audit_events') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _mine(plan: Plan, kinds: Sequence[str], alias: str | None = None) -> sql.Composable:
    """The filter every reader shares: the cutover's own events of these types."""
    return sql.SQL("{ten} = {target} AND {src} = {sv} AND {ty} = ANY({kinds})").format(
        kinds=sql.Literal(list(kinds)), **_trail(plan, alias))


def _payload(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else json.loads(raw or "{}")


def events_query(plan: Plan, kinds: Sequence[str], *, run_id: str | None = None,
                 cutover_run_id: str | None = None, slim: bool = False) -> sql.Composed:
    """The SELECT behind :func:`events`, rows of (type, payload), for a caller that shows its queries
    (a check's evidence)."""
    t = _trail(plan)
    where = [_mine(plan, kinds)]
    for field, value in (("run_id", run_id), ("cutover_run_id", cutover_run_id)):
        if value is not None:
            where.append(sql.SQL("{pl} ->> {f} = {v}").format(pl=t["pl"], f=sql.Literal(field),
                                                              v=sql.Literal(value)))
    payload = sql.SQL("{pl}::jsonb - 'allow_list'" if slim else "{pl}").format(pl=t["pl"])
    return sql.SQL("SELECT {ty}, {payload} FROM {t} WHERE {where} "
                   "ORDER BY {pl} ->> 'committed_at' ASC NULLS FIRST").format(
        payload=payload, where=sql.SQL(" AND ").join(where), **t)


def as_events(rows: Sequence[Sequence[Any]]) -> list[Event]:
    """Rows of :func:`events_query` as events."""
    return [Event(str(kind), _payload(raw)) for kind, raw in rows]


def events(conn: Connection, plan: Plan, kinds: Sequence[str], *, run_id: str | None = None,
           cutover_run_id: str | None = None, slim: bool = False) -> list[Event]:
    """The cutover's events of these types, oldest first (so the newest is the last).

    ``run_id`` / ``cutover_run_id`` keep the events of one run (a sweep and a reverse name the
    cutover they follow in ``cutover_run_id``). ``slim`` leaves out an earlier version's allow-list
    inside a completed event: a caller that wants the run, not its keys, would otherwise parse
    millions of them (sweep and reverse peaked at hundreds of MB doing so).
    """
    if not exists(conn, plan):
        return []
    query = events_query(plan, kinds, run_id=run_id, cutover_run_id=cutover_run_id, slim=slim)
    return as_events(conn.execute(query).fetchall())


def newest(conn: Connection, plan: Plan, kinds: Sequence[str], *, slim: bool = True) -> Event | None:
    """The newest of the cutover's events of these types (see the module's one meaning of newest)."""
    if not exists(conn, plan):
        return None
    t = _trail(plan)
    payload = sql.SQL("{pl}::jsonb - 'allow_list'" if slim else "{pl}").format(pl=t["pl"])
    row = conn.execute(sql.SQL("SELECT {ty}, {payload} FROM {t} WHERE {where} "
                               "ORDER BY {pl} ->> 'committed_at' DESC NULLS LAST LIMIT 1").format(
        payload=payload, where=_mine(plan, kinds), **t)).fetchone()
    return None if row is None else Event(str(row[0]), _payload(row[1]))


def part_keys(conn: Connection, plan: Plan, run_id: str) -> dict[str, list[Any]]:
    """The physical row ids of a run's allow-list part events, per table, in part order.

    ``ctid`` and not the plan's key: the audit key may be composite or filled by the table, and
    the read is one read-only transaction, so the rows cannot move under it.
    """
    if not exists(conn, plan):
        return {}
    t = _trail(plan)
    rows = conn.execute(sql.SQL(
        "SELECT {pl} ->> 'table', ctid::text FROM {t} WHERE {where} AND {pl} ->> 'run_id' = {rid} "
        "ORDER BY 1, ({pl} ->> 'part')::bigint").format(
        where=_mine(plan, [plan.audit.allow_list_part]), rid=sql.Literal(run_id), **t)).fetchall()
    out: dict[str, list[Any]] = {}
    for table, ctid in rows:
        out.setdefault(table, []).append(ctid)
    return out


def recorded_keys(plan: Plan, table: str, run_id: str) -> sql.Composable:
    """SELECT of the keys (one jsonb column, ``k``) of ``table`` that run ``run_id`` and its sweeps
    moved, as the database's audit events recorded them: the allow-list's parts (key text, or a
    jsonb array ``ids`` before), an earlier version's allow-list inside the completed event, and the
    swept events' ``ids``.

    Sweep and reverse read the keys here, in the server, and never from the report file: a file is
    whatever its last editor made it, the audit events were written in the cutover's own transaction.
    They are on the target tenant, by type: an index on (tenant, type) finds them without a scan of
    the whole audit table per moving table.
    """
    a = plan.audit
    return sql.SQL(
        "SELECT x.k FROM {t} e, LATERAL ("
        "SELECT string_to_table(e.{pl} ->> 'keys', E'\\n')::jsonb WHERE e.{ty} = {part} AND e.{pl} ? 'keys' "
        "UNION ALL SELECT jsonb_array_elements(e.{pl} -> 'ids') WHERE e.{ty} = {part} AND e.{pl} ? 'ids' "
        "UNION ALL SELECT jsonb_array_elements(e.{pl} -> 'allow_list' -> {name}) WHERE e.{ty} = {done} "
        "UNION ALL SELECT jsonb_array_elements(e.{pl} -> 'ids' -> {name}) WHERE e.{ty} = {swept}) x(k) "
        "WHERE {mine} "
        "AND (e.{ty} = {part} AND e.{pl} ->> 'run_id' = {rid} AND e.{pl} ->> 'table' = {name} "
        "OR e.{ty} = {done} AND e.{pl} ->> 'run_id' = {rid} "
        "OR e.{ty} = {swept} AND e.{pl} ->> 'cutover_run_id' = {rid})"
    ).format(t=table_ident(plan), pl=sql.Identifier(a.payload_column), ty=sql.Identifier(a.type_column),
             part=sql.Literal(a.allow_list_part), done=sql.Literal(a.completed), swept=sql.Literal(a.swept),
             name=sql.Literal(table), rid=sql.Literal(run_id),
             mine=_mine(plan, [a.allow_list_part, a.completed, a.swept], "e"))


def part_texts(conn: Connection, plan: Plan, ctids: list[str]) -> Iterator[bytes]:
    """Each part's key text (a key a line, UTF-8) in order, one part in memory at a time; stops at
    a part of an earlier layout (a jsonb array), which has no such text."""
    t = _trail(plan, "e")
    for ctid in ctids:
        row = conn.execute(sql.SQL("SELECT convert_to({pl} ->> 'keys', 'UTF8') FROM {t} e WHERE e.ctid = {c}::tid "
                                   "AND {pl} ? 'keys'").format(c=sql.Literal(ctid), **t), binary=True).fetchone()
        if row is None or row[0] is None:
            return
        yield bytes(row[0])


def part_ids(conn: Connection, plan: Plan, ctids: list[str]) -> Iterator[str]:
    """The keys of the given part events as JSON text, in order, streamed (a part can be tens of MB)."""
    t = _trail(plan, "e")
    for ctid in ctids:
        with conn.cursor(name=f"cutover_part_{uuid.uuid4().hex}") as cur:
            cur.itersize = 10_000
            cur.execute(sql.SQL(  # a part holds its keys as lines of text ('keys'), before as a jsonb array
                "SELECT k FROM {t} e, LATERAL (SELECT regexp_split_to_table({pl} ->> 'keys', E'\\n') WHERE {pl} ? "
                "'keys' UNION ALL SELECT jsonb_array_elements({pl} -> 'ids')::text WHERE {pl} ? 'ids') x(k) "
                "WHERE e.ctid = {c}::tid").format(c=sql.Literal(ctid), **t))
            for (key,) in cur:
                yield key


def own_events(plan: Plan, table: str) -> sql.Composable:
    """A filter for ``table``'s rows that are not the cutover's own events (TRUE for any other table):
    comparisons of content before and after leave the events the cutover adds out on both sides."""
    a = plan.audit
    if table != a.table:
        return sql.SQL("true")
    kinds = (a.started, a.completed, a.swept, a.reversed, a.allow_list_part)
    return sql.SQL("NOT ({ty} IN ({kinds}) AND {src} IS NOT DISTINCT FROM {sv})").format(
        kinds=sql.SQL(", ").join(map(sql.Literal, kinds)), **_trail(plan))


# -- written ---------------------------------------------------------------------------------------------


def create_own(conn: Connection, plan: Plan) -> None:
    """The cutover's own table, made inside the execute's transaction on first use (so a rolled-back
    execute leaves no trace of it either); nothing for a plan that names the application's table."""
    if plan.audit.own:
        for statement in OWN_DDL:
            conn.execute(statement)


def _keys(conn: Connection, plan: Plan) -> list[str]:
    """The audit table's key columns the insert fills (those the table does not fill itself)."""
    a = plan.audit
    if a.own:
        return ["id"]
    return [c for c in dict.fromkeys((a.key, *plan.table(a.table).key))
            if not live_schema.has_default(conn, a.table, c)]


def insert_head(conn: Connection, plan: Plan, key: sql.Composable) -> tuple[sql.Composed, sql.Composed]:
    """``INSERT INTO <audit> (<keys>, tenant, type, payload, source)`` and the key values, ``key``
    for each, that go first in its row; the caller adds the tenant, type, payload and source values.

    Key columns the table fills itself (identity, serial, default now()) are left to it; the others
    get ``key``, a fresh uuid, which PostgreSQL takes for a text or uuid column.
    """
    keys = _keys(conn, plan)
    t = _trail(plan)
    head = sql.SQL("INSERT INTO {t} ({cols}{ten}, {ty}, {pl}, {src})").format(
        cols=sql.SQL("").join(sql.SQL("{}, ").format(sql.Identifier(k)) for k in keys), **t)
    return head, sql.SQL("").join(sql.SQL("{}, ").format(key) for _ in keys)


def _insert(conn: Connection, plan: Plan, kind: str, payload: sql.Composable, key: sql.Composable) -> sql.Composed:
    head, ids = insert_head(conn, plan, key)
    return sql.SQL("{head} VALUES ({ids}{target}, {kind}, {payload}, {sv})").format(
        head=head, ids=ids, target=_target(plan), kind=sql.Literal(kind), payload=payload,
        sv=sql.Literal(plan.audit.source_value))


def write_event(conn: Connection, plan: Plan, kind: str, payload: sql.Composable) -> str:
    """Insert one of the cutover's own events on the target tenant; ``payload`` is a jsonb expression."""
    event_id = str(uuid.uuid4())
    conn.execute(_insert(conn, plan, kind, payload, sql.Literal(event_id)))
    return event_id


# The errors an insert's own row or the table's rules raise (a type, a constraint, a trigger's
# RAISE, a privilege), as opposed to the session's (timeouts, a lost connection), which are not the
# insert's and go up as they are.
_INSERT_REFUSED = (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.errors.InternalError,
                   psycopg.errors.ProgrammingError, psycopg.errors.NotSupportedError)


def insert_problems(conn: Connection, plan: Plan) -> tuple[list[str], int]:
    """Why the cutover's audit insert would fail here, each as one line with its fix ([] when it would
    not), and how many rows the probe inserted and rolled back (the transaction's statistics count them).

    The execute writes its first event before any row moves, but a failure there is a rollback
    (exit 4) after a READY dry run. So the pre-flight asks first, in the way its transaction allows:

    * in the execute's own transaction (read-write, its locks held), the insert itself, under a
      savepoint rolled back at once: every constraint, trigger and privilege answers;
    * in the dry run, which is READ ONLY against production and must stay so, no insert at all (an
      aborted insert still leaves a dead row, WAL and a spent sequence value): the catalog names a
      NOT NULL column without a default that the insert leaves empty, and ``EXPLAIN`` of the insert
      (planned, never executed, allowed read-only) answers for types and the INSERT privilege. CHECK
      constraints and triggers only run on a real row: the execute's pre-flight meets them.

    With ``[audit] own = true`` and the table not made yet, the question is whether this role may make it.
    """
    a = plan.audit
    where = ".".join(OWN_TABLE) if a.own else a.table
    if not exists(conn, plan):
        return _create_problems(conn), 0
    fix = ("let the cutover keep its own trail ([audit] own = true)" if not a.own
           else "drop the table (DROP SCHEMA cutover CASCADE, after its last window) for execute to make it again")
    filled = [*_keys(conn, plan), tenant_column(plan), a.type_column, a.payload_column, a.source_column]
    unfilled = conn.execute(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '' "
        "AND NOT (a.attname = ANY(%s)) ORDER BY a.attnum", (table_ident(plan).as_string(conn), filled)).fetchall()
    if unfilled:
        return [f"{where}.{name} is NOT NULL without a default, and the cutover's audit insert does not fill it; "
                f"give it a default (ALTER TABLE ... ALTER COLUMN {name} SET DEFAULT ...) or {fix}"
                for (name,) in unfilled], 0
    read_only = conn.execute("SELECT current_setting('transaction_read_only') = 'on'").fetchone()
    probe = sql.Literal(json.dumps({"probe": "pre-flight: rolled back"}))
    inserted = 0
    try:
        # Always rolled back: a savepoint inside the caller's transaction, or a transaction of its own on an
        # autocommit connection (the go/no-go's read-only one, where a bare SAVEPOINT is refused).
        with conn.transaction(force_rollback=True):
            if read_only and read_only[0]:
                conn.execute(sql.SQL("EXPLAIN {}").format(
                    _insert(conn, plan, a.started, probe, sql.SQL("gen_random_uuid()"))))
            else:
                write_event(conn, plan, a.started, probe)
                inserted = 1
    except _INSERT_REFUSED as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [f"the cutover's audit insert into {where} fails: {first}; fix the table or {fix}"], 0
    return [], inserted


def _create_problems(conn: Connection) -> list[str]:
    """The cutover's own table is not there yet: may this role make it (as the execute will)?"""
    row = conn.execute(
        "SELECT current_user, current_database(), CASE WHEN to_regnamespace('cutover') IS NULL "
        "THEN has_database_privilege(current_database(), 'CREATE') "
        "ELSE has_schema_privilege('cutover', 'CREATE') END").fetchone()
    assert row is not None
    role, database, may = row
    if may:
        return []
    return [f"the cutover's own audit table {'.'.join(OWN_TABLE)} is not there yet and role '{role}' may not create "
            f"it: GRANT CREATE ON DATABASE {database} TO {role} for the window, or have a role that may make it "
            f"ahead with the statements in docs/plan.md ([audit]) and hand it over"]
