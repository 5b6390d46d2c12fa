"""The cutover's audit trail, read: the one place that knows which rows are the cutover's events and
which of them is the newest.

The database's record of what the cutover did (committed, swept, reversed, and the allow-list's
parts) is what sweep, reverse, ``report --rebuild``, the checks, the window's timeline and the
go/no-go all trust over any file. They used to ask it in three queries with three meanings of
"newest" (text order with the undated last, text order with the undated first, parsed times), so a
rebuilt report and the "already cut over" blocker could name different runs. Here there is one:

* the cutover's events are the rows of the audit table with its source value, on the target tenant
  (where :func:`cutover.reference.execute.write_audit` writes every one of them);
* the newest is the one with the latest ``committed_at`` (ISO 8601 in UTC, written by the event's
  own transaction, so text order is time order); an event without one is the oldest.

Reads only; the SQL is composed with ``psycopg.sql`` from the plan's names.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from cutover.core.db import Connection
from cutover.core.plan import Plan


@dataclass(frozen=True)
class Event:
    """One of the cutover's events: its type and its payload (a JSON object)."""

    kind: str
    payload: dict[str, Any]


def _trail(plan: Plan, alias: str | None = None) -> dict[str, sql.Composable]:
    """The audit table and its columns as SQL, for ``.format(**_trail(plan))``."""
    a = plan.audit

    def col(name: str) -> sql.Identifier:
        return sql.Identifier(alias, name) if alias else sql.Identifier(name)

    return {"t": sql.Identifier(a.table), "ty": col(a.type_column), "pl": col(a.payload_column),
            "src": col(a.source_column), "sv": sql.Literal(a.source_value), "ten": col(plan.tenant_column),
            "target": sql.Literal(plan.target)}


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
    query = events_query(plan, kinds, run_id=run_id, cutover_run_id=cutover_run_id, slim=slim)
    return as_events(conn.execute(query).fetchall())


def newest(conn: Connection, plan: Plan, kinds: Sequence[str], *, slim: bool = True) -> Event | None:
    """The newest of the cutover's events of these types (see the module's one meaning of newest)."""
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
    ).format(t=sql.Identifier(a.table), pl=sql.Identifier(a.payload_column), ty=sql.Identifier(a.type_column),
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
