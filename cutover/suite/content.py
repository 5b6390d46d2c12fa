"""Nothing but the tenant changed: every planned table's rows compared with the pre-cutover database.

The placement checks look at tenants and links; a cutover command that also rewrote one other column
of one moved row (a stray ``SET`` in the operator's script, a trigger gone wrong) passed all of them.
So the rehearsal compares every planned table, column by column, with the restored snapshot it
started from: after the cutover with the tenant column of the rows on the target read as the source
on both sides (the cutover moves rows only from the source to the target; which rows moved is the
placement checks' question), and after the rehearsed reverse exactly. The cutover's own audit events
and the columns the plan declares as rewritten by triggers (``trigger_columns``) are left out. In a
table the plan declares triggers write (``written_by``), the rows only the later database holds are
its triggers' rows: they must number exactly what the cutover's, the sweeps' and the reverse's audit
events record (``triggered``), and every other row is compared as usual.

Cheap at any size: one pass per table on each side summing a 64-bit hash of each row's text, so equal
tables cost two sequential scans and no memory. Only a table whose sums differ is read again, key by
key in the same order on both sides, to name the rows and columns that differ.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from cutover.core import audit, db, tenants
from cutover.core.db import Connection
from cutover.core.plan import Plan, TableRule, table_regclass, table_sql
from cutover.core.row_keys import key_text
from cutover.suite.checks.base import Evidence

I = sql.Identifier  # noqa: E741 (the name the other SQL modules use)
T = table_sql  # a plan's table name, with its schema when it has one
L = sql.Literal
SHOWN = 5  # rows named per table in the evidence; the count says how many more
VALUE_CHARS = 120


@dataclass(frozen=True)
class Difference:
    """One way a planned table is not what it was: a column of a row, a row added or lost, or (for a
    table without a planned key) the table's row count and content sum."""

    table: str
    key: str
    column: str
    before: str
    after: str

    def line(self) -> str:
        return f"{self.table} [{self.key}] {self.column}: before {self.before}, after {self.after}"


@dataclass(frozen=True)
class Comparison:
    """What was compared and what differs (empty: nothing but the tenant changed)."""

    tables: int
    rows: int
    differences: tuple[Difference, ...]
    more: int = 0  # differing rows found beyond those shown

    @property
    def same(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {"tables": self.tables, "rows": self.rows, "more": self.more,
                "differences": [d.__dict__ for d in self.differences]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        return cls(int(data["tables"]), int(data["rows"]), tuple(Difference(**d) for d in data["differences"]),
                   int(data.get("more", 0)))


def _columns(conn: Connection, table: str) -> list[str]:
    rows = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                        "AND NOT attisdropped ORDER BY attnum", (table_regclass(table),)).fetchall()
    return [str(r[0]) for r in rows]


def _row(plan: Plan, columns: list[str], ignored: set[str], moved_back: bool) -> sql.Composable:
    """The row as compared: the ignored columns out and, after the cutover, the target read as the source."""
    parts: list[sql.Composable] = []
    for col in columns:
        if col in ignored:
            continue
        if col == plan.tenant_column and moved_back:
            parts.append(_read_as_source(plan, I(col)))
        else:
            parts.append(I(col))
    return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(parts))


def _read_as_source(plan: Plan, column: sql.Composable) -> sql.Composable:
    """The tenant column with the target read as the source, compared in the tenant key's own type."""
    return sql.SQL("CASE WHEN {c} = {tgt} THEN {src} ELSE {c} END").format(
        c=column, tgt=tenants.literal(plan, plan.target), src=tenants.literal(plan, plan.source))


def _ignored(plan: Plan, table: str) -> set[str]:
    rule = next((t for t in plan.tables if t.name == table), None)
    return set(rule.trigger_columns) if rule is not None else set()


def _sums(conn: Connection, plan: Plan, table: str, moved_back: bool) -> tuple[int, str]:
    row = _row(plan, _columns(conn, table), _ignored(plan, table), moved_back)
    found = conn.execute(sql.SQL(
        "SELECT count(*), coalesce(sum(hashtextextended({row}, 0)::numeric), 0)::text FROM {t} WHERE {own}").format(
        row=row, t=T(table), own=audit.own_events(plan, table))).fetchone()
    assert found is not None
    return int(found[0]), str(found[1])


def _hashes(conn: Connection, plan: Plan, rule: TableRule, moved_back: bool) -> Iterator[tuple[str, int]]:
    """(key text, row hash) in C-collated key order: the same order on both sides, and Python's."""
    row = _row(plan, _columns(conn, rule.name), _ignored(plan, rule.name), moved_back)
    keytext = key_text(rule.key)
    query = sql.SQL("SELECT {k}, hashtextextended({row}, 0) FROM {t} WHERE {own} ORDER BY ({k}) COLLATE \"C\"").format(
        k=keytext, row=row, t=T(rule.name), own=audit.own_events(plan, rule.name))
    with conn.cursor(name=f"content_{rule.name}"[:60]) as cur:
        cur.itersize = 10_000
        for key, digest in cur.execute(query):
            yield str(key), int(digest)


def _differing_keys(before: Connection, after: Connection, plan: Plan, rule: TableRule,
                    moved_back: bool, added_apart: bool = False) -> tuple[list[str], int, int]:
    """Keys whose rows differ (a row on one side only, or another hash), the first SHOWN, and how many;
    with ``added_apart``, rows only on the after side are counted apart (the third value), not as differing."""
    shown: list[str] = []
    count = added = 0
    left, right = _hashes(before, plan, rule, moved_back), _hashes(after, plan, rule, moved_back)
    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        if a is not None and (b is None or a[0] < b[0]):
            key, a = a[0], next(left, None)
        elif b is not None and (a is None or b[0] < a[0]):
            key, b = b[0], next(right, None)
            if added_apart:
                added += 1
                continue
        else:
            assert a is not None and b is not None
            same = a[1] == b[1]
            key, a, b = a[0], next(left, None), next(right, None)
            if same:
                continue
        count += 1
        if len(shown) < SHOWN:
            shown.append(key)
    return shown, count, added


def _trigger_rows(conn: Connection, plan: Plan) -> Counter[str]:
    """Per table, the rows the plan's ``written_by`` triggers wrote during the cutover's, the sweeps' and
    the reverse's moves, as their audit events record them (``triggered``: per table, per tenant)."""
    a = plan.audit
    out: Counter[str] = Counter()
    for event in audit.events(conn, plan, [a.completed, a.swept, a.reversed], slim=True):
        for table, per in (event.payload.get("triggered") or {}).items():
            out[table] += sum(int(n) for n in per.values())
    return out


def _value(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "…"


def _row_of(conn: Connection, plan: Plan, rule: TableRule, key: str, moved_back: bool) -> dict[str, Any] | None:
    """One row as JSON; ``moved_back``: its tenant read as :func:`_row` reads it, in the database, where
    the key's type is known (a uuid or bigint tenant never equals the plan's text in Python)."""
    row: sql.Composable = sql.SQL("to_jsonb(t)")
    if moved_back:
        row = sql.SQL("to_jsonb(t) || jsonb_build_object({name}, {tenant})").format(
            name=L(plan.tenant_column), tenant=_read_as_source(plan, I("t", plan.tenant_column)))
    found = conn.execute(sql.SQL("SELECT {row} FROM {t} AS t WHERE {k} = {v}").format(
        row=row, t=T(rule.name), k=key_text(rule.key, "t"), v=L(key))).fetchone()
    return dict(found[0]) if found else None


def _row_differences(rule: TableRule, key: str, before: dict[str, Any] | None,
                     after: dict[str, Any] | None) -> list[Difference]:
    if before is None or after is None:
        return [Difference(rule.name, key, "(row)", "absent" if before is None else "present",
                           "absent" if after is None else "present")]
    ignored = set(rule.trigger_columns)
    out = []
    for column in sorted(set(before) | set(after)):
        if column in ignored:
            continue
        old, new = before.get(column), after.get(column)  # the tenant already read as _row_of says
        if old != new:
            out.append(Difference(rule.name, key, column, _value(old), _value(after.get(column))))
    return out


def compare(before_url: str, after_url: str, plan: Plan, *, moved_back: bool) -> Comparison:
    """Every planned table of ``after_url`` against ``before_url``. ``moved_back``: read the target as
    the source on both sides (after a cutover: a row moved from the source reads as it was; one moved
    from any other tenant, or off the target, still differs); False compares exactly (after a reverse)."""
    differences: list[Difference] = []
    more = rows = 0
    tables = (*plan.static_tables, *plan.table_names)
    with db.connection(before_url, read_only=True) as before, db.connection(after_url, read_only=True) as after:
        plan = tenants.typed(after, plan)
        # Rows the plan's written_by triggers wrote since: expected, as many as the audit events say, and new.
        written = _trigger_rows(after, plan) - _trigger_rows(before, plan)
        for table in tables:
            was, now = _sums(before, plan, table, moved_back), _sums(after, plan, table, moved_back)
            rows += now[0]
            if was == now and not written[table]:
                continue
            rule = next((t for t in plan.tables if t.name == table), None)
            if rule is None:  # a static table: no planned key to name rows by
                differences.append(Difference(table, "*", "(rows, content sum)", f"{was[0]} rows, {was[1]}",
                                              f"{now[0]} rows, {now[1]}"))
                continue
            keys, count, added = _differing_keys(before, after, plan, rule, moved_back, bool(rule.written_by))
            if rule.written_by and added != written[table]:
                differences.append(Difference(table, "*", "(rows written by its written_by triggers)",
                                              f"{written[table]} recorded in the audit events", f"{added} new rows"))
            more += count - len(keys)
            for key in keys:
                differences.extend(_row_differences(rule, key, _row_of(before, plan, rule, key, moved_back),
                                                    _row_of(after, plan, rule, key, moved_back)))
    return Comparison(len(tables), rows, tuple(differences), more)


def sums(url: str, plan: Plan, *, moved_back: bool) -> dict[str, list[Any]]:
    """Each planned table's (row count, content sum), for a database with no copy kept to compare with
    (a dev branch: taken before the cutover, compared after it)."""
    with db.connection(url, read_only=True) as conn:
        plan = tenants.typed(conn, plan)
        return {t: list(_sums(conn, plan, t, moved_back)) for t in (*plan.static_tables, *plan.table_names)}


def compare_sums(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> Comparison:
    """Table by table; without the pre-cutover rows at hand, a difference names the table, not the row."""
    differences = tuple(Difference(t, "*", "(rows, content sum)", f"{before[t][0]} rows, {before[t][1]}",
                                   f"{after.get(t, [0, '-'])[0]} rows, {after.get(t, [0, '-'])[1]}")
                        for t in before if after.get(t) != before[t])
    return Comparison(len(before), sum(int(v[0]) for v in after.values()), differences)


def evidence(check: str, found: Comparison, expected: str, tenant: str) -> Evidence:
    """A comparison as a check's titled evidence: table, key, column, before and after per difference."""
    ev = Evidence(check, tenant=tenant, expected=expected,
                  found=f"{found.rows} rows in {found.tables} planned tables" + (
                      ", as expected" if found.same else f"; {len(found.differences)} differences"
                      + (f" (and {found.more} more rows differ)" if found.more else "")),
                  queries=["per table: SELECT count(*), sum(hashtextextended(ROW(<columns>)::text, 0)) on both "
                           "databases; rows of a differing table compared key by key (to_jsonb)"])
    for d in found.differences:
        ev.fail(d.line(), [f"{d.table}:{d.key}"])
    return ev
