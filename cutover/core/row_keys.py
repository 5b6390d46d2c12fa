"""The cutover report's contract, and how a row's key travels between the database and the report.

The report is read by people (the window's record), by the reverse (rollback option 2), by the
checks (A5, A10) and by tests. All of them must agree on one shape, so it is written down here:

* A row key is kept whole, in JSON as PostgreSQL's ``to_jsonb`` renders the column's own type: a
  string for text and uuid, a number for integer types, and a list (one item per key column, in the
  plan's order) for a composite key. Never the text of the first column: two rows sharing it would
  collapse into one entry, and an A10 that compared them would raise a false alarm on every run.
* Keys are compared in the database, in the column's own type: a key list goes back into SQL
  through ``jsonb_populate_recordset(NULL::table, ...)``, which converts each value with the
  column's own input function. No ``::text`` join against a typed column (``uuid = text`` fails,
  and a cast column defeats its index).

Only psycopg's ``sql`` module is used to compose the SQL; names come from the plan.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypedDict

from psycopg import sql

from cutover.core.plan import table_sql

ScalarKey = str | int | float | bool
RowKey = ScalarKey | list[ScalarKey]
"""One row's key as the report holds it: a JSON scalar, or a list for a composite key."""

AllowList = dict[str, list[RowKey]]
"""Per table, the keys of the rows the cutover moved (the rows A10 expects on the target)."""


class SweepRecord(TypedDict, total=False):
    """One committed sweep, as its audit event and ``report["sweeps"]`` hold it."""

    run_id: str
    cutover_run_id: str
    actor: str
    started_at: str
    committed_at: str
    moved: dict[str, int]
    triggered: dict[str, dict[str, int]]  # per table, per tenant: rows its written_by triggers wrote
    ids: AllowList  # the swept rows, and the triggers' patient rows on the target


class CutoverReport(TypedDict, total=False):
    """The execute's report (``--report-path``) and what ``cutover report --rebuild`` reconstructs."""

    run_id: str
    actor: str
    plan: str
    database: str
    source: str
    target: str
    started_at: str
    committed_at: str | None
    duration_s: float | None
    commit_status: str  # committed | rolled_back | dry_run | ...
    baseline: dict[str, dict[str, int]]
    moved: dict[str, int]
    written: dict[str, int]
    triggered: dict[str, dict[str, int]]  # per table, per tenant: rows its written_by triggers wrote during the moves
    listed_written: dict[str, int]  # per table, the triggers' rows the allow-list holds (patient-owned on the target)
    steps: list[dict[str, Any]]
    allow_list: AllowList
    sweeps: list[SweepRecord]
    reverse: dict[str, Any]
    error: str
    rebuilt_from_database: bool
    verified_by: str  # how step 14 proved the moves: statistics | full count
    allow_list_parts: dict[str, int]  # per table, audit parts holding an allow-list too large for one event
    writers_blocked_s: float  # locks taken to commit
    deferred_constraints: list[str]  # tenant-keyed foreign keys deferred during the moves, checked before COMMIT
    # What the target held of its own before the moves, per table: {"patient": n, "provider": n} (tables
    # holding none left out). Not the cutover's rows: the placement checks compare with it, the
    # allow-list leaves them out, the reverse leaves them where they are.
    held_on_target: dict[str, dict[str, int]]


def key_json(columns: Sequence[str], alias: str | None = None) -> sql.Composable:
    """SQL for one row's key as the report holds it (jsonb): a scalar, or an array for a composite."""
    cols = [sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in columns]
    if len(cols) == 1:
        return sql.SQL("to_jsonb({})").format(cols[0])
    return sql.SQL("jsonb_build_array({})").format(sql.SQL(", ").join(cols))


def key_text(columns: Sequence[str], alias: str | None = None) -> sql.Composable:
    """A key as text, for evidence and for comparing key sets client-side (never for joining)."""
    if len(columns) == 1:
        col = sql.Identifier(alias, columns[0]) if alias else sql.Identifier(columns[0])
        return sql.SQL("{}::text").format(col)
    return sql.SQL("{}::text").format(key_json(columns, alias))


def key_order(columns: Sequence[str], alias: str | None = None) -> sql.Composable:
    """ORDER BY list for a key, column by column in their own types."""
    return sql.SQL(", ").join(sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in columns)


def key_equal(columns: Sequence[str], left: str, right: str) -> sql.Composable:
    """``left.k1 = right.k1 AND ...``: a typed, index-friendly join on the whole key."""
    return sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier(left, c), sql.Identifier(right, c))
                                 for c in columns)


def key_values(columns: Sequence[str], key: RowKey) -> tuple[Any, ...]:
    """A report key as one value per key column (for COPY into a typed key table)."""
    if len(columns) == 1:
        if isinstance(key, list):
            raise ValueError(f"key {key!r} is a list but the plan's key is one column ({columns[0]})")
        return (key,)
    if not isinstance(key, list) or len(key) != len(columns):
        raise ValueError(f"key {key!r} does not have one value per key column ({', '.join(columns)})")
    return tuple(key)


def key_records(columns: Sequence[str], keys: Iterable[RowKey]) -> str:
    """Keys as a JSON array of {column: value} objects, for ``jsonb_populate_recordset``."""
    return json.dumps([dict(zip(columns, key_values(columns, k), strict=True)) for k in keys])


def listed_rows(table: str, columns: Sequence[str], records: sql.Composable) -> sql.Composable:
    """SELECT of a key list as rows typed like ``table``'s own key columns."""
    return sql.SQL("SELECT {cols} FROM jsonb_populate_recordset(NULL::{t}, {records}) r").format(
        cols=key_order(columns, "r"), t=table_sql(table), records=records)


def key_label(key: RowKey) -> str:
    """How a key reads in evidence: the value, or ``(a, b)`` for a composite."""
    if isinstance(key, list):
        return "(" + ", ".join(str(v) for v in key) + ")"
    return str(key)


def listed_keys(report: Mapping[str, Any], table: str) -> Iterator[RowKey]:
    """Rows the cutover and its sweeps moved from the source, according to the report."""
    yield from (report.get("allow_list") or {}).get(table, [])
    for swept in report.get("sweeps") or []:
        yield from (swept.get("ids") or {}).get(table, [])
