"""The live schema as the plan sees it, and every way the two disagree.

The plan is the suite's only schema knowledge, so a plan that no longer matches the database is the
most dangerous input there is: a tenant-scoped table the plan does not list is never moved and never
checked (its patient rows stay on the source while the dry run says READY). The pre-flight, check A1
and ``cutover plan check`` all ask this module the same question. The catalog is read in one query,
whatever the number of tables, so the answer takes well under a second on hundreds of tables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from cutover.core.db import Connection
from cutover.core.plan import (
    Plan,
    TableRule,
    plan_table_name,
    split_table,
    table_regclass,
    table_sql,
    toml_key,
    toml_string,
)


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]
    name: str = ""
    deferrable: bool = False
    on_update: str = "a"  # pg_constraint.confupdtype: a NO ACTION, r RESTRICT, c CASCADE, n SET NULL, d SET DEFAULT
    schema: str = ""  # the constraint's (its table's) schema: SET CONSTRAINTS names it qualified


@dataclass(frozen=True)
class Table:
    """One table (or partitioned parent) of the current schema."""

    name: str
    partitioned: bool
    partition_of: str | None
    columns: dict[str, str]  # name -> type, in column order
    primary_key: tuple[str, ...] | None
    unique: tuple[tuple[str, ...], ...]  # every unique index without predicate or expression, pk included
    foreign_keys: tuple[ForeignKey, ...]
    row_estimate: int = 0
    schema: str = ""
    relname: str = ""  # the name in its schema (``name`` is the plan's form: ``app.patients``)

    def is_unique(self, key: Iterable[str]) -> bool:
        """Is a row identified by these columns (a unique index over some of them)?"""
        wanted = set(key)
        return any(set(u) <= wanted for u in self.unique)


@dataclass
class Catalog:
    tables: dict[str, Table] = field(default_factory=dict)
    current_schema: str | None = None

    def tenant_scoped(self, plan: Plan) -> list[Table]:
        """Tables carrying the plan's tenant column or referencing the tenants table; partitions are
        covered by their parent."""
        return [t for t in self.tables.values() if t.partition_of is None and t.name != plan.tenant_table
                and (plan.tenant_column in t.columns or any(fk.parent == plan.tenant_table for fk in t.foreign_keys))]


# The schemas read: the search path's own (current_schema()) and those the plan names, or every schema
# but PostgreSQL's own (plan draft). %(all)s and %(schemas)s are the query's parameters.
_IN_SCOPE = ("(n.nspname = current_schema() OR n.nspname = ANY(%(schemas)s) OR (%(all)s AND n.nspname NOT IN "
             "('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'))")

_CATALOG = """
WITH cols AS (
    SELECT a.attrelid, json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod))
                                ORDER BY a.attnum) AS columns
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {scope} AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
    GROUP BY a.attrelid),
idx AS (
    SELECT i.indrelid, json_agg(json_build_array(i.indisprimary,
        (SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum))) AS indexes
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {scope} AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
    GROUP BY i.indrelid),
fks AS (
    SELECT f.conrelid, json_agg(json_build_array(
        (SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest(f.conkey) WITH ORDINALITY k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.attnum),
        r.relname,
        (SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest(f.confkey) WITH ORDINALITY k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.attnum),
        f.conname, f.condeferrable, f.confupdtype, rn.nspname) ORDER BY f.conname) AS fkeys
    FROM pg_constraint f JOIN pg_class r ON r.oid = f.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
    JOIN pg_class c ON c.oid = f.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {scope} AND f.contype = 'f' AND f.conparentid = 0
    GROUP BY f.conrelid)
SELECT n.nspname, c.relname, c.relkind = 'p',
       (SELECT json_build_array(pn.nspname, p.relname) FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
        JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE h.inhrelid = c.oid AND c.relispartition LIMIT 1),
       coalesce(cols.columns, '[]'), coalesce(idx.indexes, '[]'), coalesce(fks.fkeys, '[]'),
       greatest(c.reltuples, 0)::bigint, current_schema()
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN cols ON cols.attrelid = c.oid LEFT JOIN idx ON idx.indrelid = c.oid LEFT JOIN fks ON fks.conrelid = c.oid
WHERE {scope} AND c.relkind IN ('r', 'p')
ORDER BY n.nspname, c.relname
""".replace("{scope}", _IN_SCOPE)


def has_default(conn: Connection, table: str, column: str) -> bool:
    """Does the database fill ``column`` itself on insert (a default, identity or serial)?"""
    row = conn.execute("SELECT a.atthasdef OR a.attidentity <> '' FROM pg_attribute a WHERE a.attrelid = "
                       "to_regclass(%s) AND a.attname = %s AND NOT a.attisdropped",
                       (table_regclass(table), column)).fetchone()
    return bool(row and row[0])


def schemas_holding(conn: Connection, names: Iterable[str]) -> tuple[str | None, list[str]]:
    """The schema the plan's names resolve in (``current_schema()``, None if the search path names no
    existing schema), and the other schemas holding tables of those names, most first: where to
    point the search path when an application keeps its tables outside ``public``."""
    current = conn.execute("SELECT current_schema()").fetchone()
    rows = conn.execute("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relname = ANY(%s) AND c.relkind IN ('r', 'p') AND n.nspname IS DISTINCT FROM "
                        "current_schema() GROUP BY n.nspname ORDER BY count(*) DESC, n.nspname",
                        ([split_table(n)[1] for n in names if split_table(n)[0] is None],)).fetchall()
    return (current[0] if current else None), [str(r[0]) for r in rows]


def db_current_schema(conn: Connection) -> str | None:
    """The schema a bare plan name resolves in: the first existing one of the search path."""
    row = conn.execute("SELECT current_schema()").fetchone()
    return None if row is None or row[0] is None else str(row[0])


def _load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def read(conn: Connection, plan: Plan | None = None, *, every_schema: bool = False) -> Catalog:
    """The tables, columns, unique keys and foreign keys of the search path's schema and of the schemas
    ``plan`` names (``every_schema``: of every schema but PostgreSQL's own), in one query.

    Each table is keyed by the name the plan gives it (``cases``, ``app.patients``, or
    ``public.cases`` if the plan qualifies a table of the search path's schema), else as a plan would
    name it (:func:`plan_table_name`), so plan and catalog compare by schema, never by bare name.
    """
    named = (*plan.all_tables, plan.tenant_table, plan.version_table) if plan is not None else ()
    params = {"schemas": list(plan.schemas if plan is not None else ()), "all": every_schema}
    rows = conn.execute(_CATALOG, params).fetchall()
    current = str(rows[0][-1]) if rows and rows[0][-1] is not None else None
    aliases = {(schema or current, table): name for name in named for schema, table in [split_table(name)]}

    def key(schema: str, table: str) -> str:
        return aliases.get((schema, table)) or plan_table_name(schema, table, current)

    catalog = Catalog(current_schema=current)
    for nsp, rel, partitioned, parent, columns, indexes, fkeys, estimate, _ in rows:
        idx = [(bool(p), tuple(cols or ())) for p, cols in _load(indexes)]
        name = key(nsp, rel)
        parent_of = _load(parent)
        catalog.tables[name] = Table(
            name=name, partitioned=bool(partitioned), partition_of=key(*parent_of) if parent_of else None,
            columns={c: t for c, t in _load(columns)},
            primary_key=next((cols for p, cols in idx if p), None),
            unique=tuple(cols for _, cols in idx),
            foreign_keys=tuple(ForeignKey(tuple(c or ()), key(pn, p), tuple(pc or ()), n, bool(d), u, nsp)
                               for c, p, pc, n, d, u, pn in _load(fkeys)),
            row_estimate=int(estimate), schema=nsp, relname=rel)
    return catalog


@dataclass(frozen=True)
class Difference:
    """One disagreement between the plan and the live schema, phrased as the fix."""

    code: str  # missing-table | missing-column | key-not-unique | unplanned-table | undeclared-reference | ...
    table: str
    message: str

    @property
    def structural(self) -> bool:
        """Does it stop the plan's queries from running at all (a missing table or column, a reference
        whose two sides cannot be compared)?"""
        return self.code in ("missing-table", "missing-column", "reference-type-mismatch")


def _columns_named(plan: Plan, rule: TableRule) -> list[tuple[str, str]]:
    """(plan key, column) for every column a table rule names."""
    where = f"[tables.{toml_key(rule.name)}]"
    out = [(f"{where}.key", c) for c in rule.key] + [("[plan].tenant_column", plan.tenant_column)]
    if rule.column:
        out.append((f"{where}.column", rule.column))
    if rule.share_target:
        out.append((f"{where}.share_target", rule.share_target))
    out += [(f"{where}.references", r.column) for r in rule.references]
    if rule.case_json:
        out.append((f"{where}.case_json.column", rule.case_json.column))
    return out


def compare(plan: Plan, catalog: Catalog) -> list[Difference]:
    """Every difference that makes the plan wrong for this database (what the pre-flight blocks on)."""
    out: list[Difference] = []
    for name in plan.all_tables:
        if name not in catalog.tables:
            where = f"[tables.{toml_key(name)}]" if name in plan.table_names else "[static].tables"
            part = catalog.tables.get(name)
            schema, relname = split_table(name)
            whole = f"{catalog.current_schema}.{name}"  # a table whose own name holds the dot, in the search path's
            if schema is not None and whole in catalog.tables:
                out.append(Difference("missing-table", name, (
                    f"{where}: schema {schema} has no table {relname} (a plan's table name splits at its first dot); "
                    f"a table named {toml_string(name)} is in schema {catalog.current_schema}: name it "
                    f"{toml_string(whole)}")))
                continue
            out.append(Difference("missing-table", name, f"{where}: table {toml_key(name)} does not exist in the "
                                                        f"database; remove it from the plan or fix its name"
                                  + (f" (it is a partition of {part.partition_of})" if part else "")))
    for rule in plan.tables:
        table = catalog.tables.get(rule.name)
        if table is None:
            continue
        for key, column in _columns_named(plan, rule):
            if column not in table.columns:
                out.append(Difference("missing-column", rule.name, f"{key}: column {rule.name}.{column} does not "
                                                                   f"exist; fix {key} in the plan"))
        if all(c in table.columns for c in rule.key) and not table.is_unique(rule.key):
            pk = table.primary_key
            fix = f"set key = {json.dumps(list(pk))}" if pk else "add a primary key, or name a unique key"
            out.append(Difference("key-not-unique", rule.name,
                                  f"[tables.{toml_key(rule.name)}].key: ({', '.join(rule.key)}) is not unique in "
                                  f"{toml_key(rule.name)} "
                                  f"(no primary key or unique index over those columns); {fix}"))
    known = set(plan.all_tables)
    for table in catalog.tenant_scoped(plan):
        if table.name not in known:
            why = (f"carries {plan.tenant_column}" if plan.tenant_column in table.columns
                   else f"references {plan.tenant_table}")
            out.append(Difference("unplanned-table", table.name,
                                  f"table {toml_key(table.name)} {why} but the plan does not list it: its rows would "
                                  f"be neither moved nor checked; add [tables.{toml_key(table.name)}] (key, owner, "
                                  f"references) or list it in [static].tables"))
    return (out + named_differences(plan, catalog) + reference_type_differences(plan, catalog)
            + tenant_key_differences(plan, catalog))


def _plan_columns(plan: Plan) -> list[tuple[str, str, str]]:
    """(plan key, table, column) for the columns the plan names outside its [tables] rules: the version
    table's, the tenants table's and the audit table's. A key a plan leaves unset is not asked for."""
    a = plan.audit
    out = [("[plan].version_column", plan.version_table, plan.version_column)]
    out += [(f"[tenants].{key}", plan.tenant_table, column) for key, column in (
        ("settings_column", plan.settings_column), ("active_column", plan.active_column),
        ("protected_column", plan.protected_column))]
    out += [(f"[audit].{key}", a.table, column) for key, column in (
        ("key", a.key), ("type_column", a.type_column), ("payload_column", a.payload_column),
        ("source_column", a.source_column)) if not a.own]  # the cutover's own table is its own to shape
    return [(key, table, column) for key, table, column in out if table and column]


def named_differences(plan: Plan, catalog: Catalog) -> list[Difference]:
    """The version table, the tenants table and the columns the plan names in them and in the audit
    table, where the database lacks them: every command reading them would stop on the database's own
    error (``relation "alembic_versions" does not exist``), which names no plan key."""
    out: list[Difference] = []
    listed = set(plan.all_tables)  # a listed table that is missing is already a difference of its own
    for key, table in (("[plan].version_table", plan.version_table), ("[tenants].table", plan.tenant_table)):
        if table and table not in catalog.tables and table not in listed:
            out.append(Difference("missing-table", table, f"{key}: table {toml_key(table)} does not exist in the "
                                                          f"database; fix {key} in the plan"))
    for key, table, column in _plan_columns(plan):
        found = catalog.tables.get(table)
        if found is not None and column not in found.columns:
            out.append(Difference("missing-column", table, f"{key}: column {toml_key(table)}.{column} does not "
                                                           f"exist; fix {key} in the plan"))
    return out


@dataclass(frozen=True)
class TenantKey:
    """A foreign key between planned tables holding the tenant column on both sides (``FOREIGN KEY
    (tenant_id, patient_id) REFERENCES patients (tenant_id, id)``), one side of it moving.

    The cutover moves each table in its own statement, so between the moves of parent and child
    such a key is broken: it holds only if its check waits for the end of the moves (DEFERRABLE,
    ON UPDATE NO ACTION or CASCADE), which the cutover then asks for (``SET CONSTRAINTS ...
    DEFERRED``) and proves before COMMIT. Every other form is a blocker (:func:`tenant_key_differences`).
    """

    table: str
    key: ForeignKey

    @property
    def name(self) -> str:
        return self.key.name

    def short(self) -> str:
        return f"{_shown(self.key.name)} ({_table_shown(self.table)} -> {_table_shown(self.key.parent)})"

    def describe(self) -> str:
        k = self.key
        return (f"{_shown(k.name)} ({_table_shown(self.table)} ({', '.join(map(_shown, k.columns))}) -> "
                f"{_table_shown(k.parent)} ({', '.join(map(_shown, k.parent_columns))}))")

    @property
    def deferred_by_cutover(self) -> bool:
        """Can the cutover defer it for its transaction (and so move rows under it)? An ON UPDATE
        CASCADE key too: its check defers (its cascade does not), and the cutover moves the children
        before their parent (:func:`cascade_order`), so the cascade finds nothing left to carry."""
        return self.key.deferrable and self.key.on_update in ("a", "c")

    @property
    def cascades(self) -> bool:
        return self.key.on_update == "c" and self.table != self.key.parent


def cascade_order(names: Iterable[str], keys: Iterable[TenantKey]) -> list[str]:
    """``names`` in their order, except that each ON UPDATE CASCADE child comes before its parent.

    Moved first (its key deferred), the child's rows are already where the parent goes when the
    parent moves, so the cascade carries nothing and every row is moved, counted and listed by its
    own table's move: the counts, verification, allow-list, sweep and reverse stay exact.
    """
    wanted = list(names)
    children: dict[str, list[str]] = {}
    for key in keys:
        if key.cascades and key.table in wanted:
            children.setdefault(key.key.parent, []).append(key.table)
    out: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for child in children.get(name, []):
            visit(child)
        out.append(name)

    for name in wanted:
        visit(name)
    return out


def _shown(name: str) -> str:
    """A name as SQL needs it written (double-quoted unless a plain lower-case identifier)."""
    plain = name.isidentifier() and name == name.lower() and name.isascii()
    return name if plain else '"' + name.replace('"', '""') + '"'


def _table_shown(name: str) -> str:
    """A plan's table name as SQL needs it written: ``app.case_notes``, ``app."v1.notes"``."""
    return ".".join(_shown(part) for part in split_table(name) if part is not None)


def tenant_keys(plan: Plan, catalog: Catalog) -> list[TenantKey]:
    """Every tenant-keyed foreign key between planned tables of which at least one side moves."""
    planned = set(plan.table_names)
    moving = {t.name for t in plan.moving}
    out: list[TenantKey] = []
    for name in plan.table_names:
        table = catalog.tables.get(name)
        for fk in table.foreign_keys if table is not None else ():
            if (fk.parent in planned and plan.tenant_column in fk.columns and plan.tenant_column in fk.parent_columns
                    and (name in moving or fk.parent in moving)):
                out.append(TenantKey(name, fk))
    return out


_ACTION = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def tenant_key_differences(plan: Plan, catalog: Catalog) -> list[Difference]:
    """The tenant-keyed foreign keys the cutover cannot move rows under, each with its fix."""
    out: list[Difference] = []
    for tk in tenant_keys(plan, catalog):
        k, child, parent = tk.key, _table_shown(tk.table), _table_shown(tk.key.parent)
        recreate = (f"re-create it as ON UPDATE NO ACTION DEFERRABLE, keeping its ON DELETE action: ALTER TABLE "
                    f"{child} DROP CONSTRAINT {_shown(k.name)}, ADD CONSTRAINT {_shown(k.name)} FOREIGN KEY "
                    f"({', '.join(map(_shown, k.columns))}) REFERENCES {parent} "
                    f"({', '.join(map(_shown, k.parent_columns))}) ON UPDATE NO ACTION DEFERRABLE")
        head = f"foreign key {tk.describe()} holds {plan.tenant_column} on both sides"
        if k.on_update in ("a", "c") and not k.deferrable:
            cascade = (f"; under ON UPDATE CASCADE it moves {child} before {parent}, so the cascade carries "
                       f"nothing" if k.on_update == "c" else "")
            out.append(Difference("tenant-key-not-deferrable", tk.table, (
                f"{head} and is NOT DEFERRABLE: the cutover moves {child} and {parent} in separate statements, so "
                f"the first move would break it and roll back{cascade}; run ALTER TABLE {child} ALTER CONSTRAINT "
                f"{_shown(k.name)} DEFERRABLE (the cutover then defers it for its own transaction and checks it "
                f"before COMMIT)")))
        elif k.on_update == "r":
            out.append(Difference("tenant-key-restrict", tk.table, (
                f"{head} and is ON UPDATE RESTRICT, which PostgreSQL checks at once even when DEFERRABLE: the "
                f"move of {parent} would be refused and roll back; {recreate}")))
        elif k.on_update in ("n", "d"):
            out.append(Difference("tenant-key-cuts-links", tk.table, (
                f"{head} and is ON UPDATE {_ACTION[k.on_update]}: moving a {parent} row would silently "
                f"{'set to NULL' if k.on_update == 'n' else 'reset to their defaults'} the columns of its {child} "
                f"rows that point at it, cutting every link; {recreate}")))
    return out


def reference_differences(plan: Plan, catalog: Catalog) -> list[Difference]:
    """Foreign keys between planned tables that the plan does not declare, and declared references with
    no foreign key behind them (``plan check`` lists them; they may be deliberate, so they do not block)."""
    out: list[Difference] = []
    planned = set(plan.table_names)
    for rule in plan.tables:
        table = catalog.tables.get(rule.name)
        if table is None:
            continue
        declared = {(r.column, r.table) for r in rule.references}
        links = [(column, fk.parent) for fk in table.foreign_keys  # in constraint-name order
                 if (column := _link_column(fk, plan.tenant_column)) is not None]
        fks = set(links)
        for column, parent in links:
            if parent in planned and (column, parent) not in declared:
                out.append(Difference("undeclared-reference", rule.name,
                                      f"[tables.{toml_key(rule.name)}].references: foreign key "
                                      f"{toml_key(rule.name)}.{column} -> {toml_key(parent)} is not "
                                      f"declared; add {{ column = {toml_string(column)}, table = "
                                      f"{toml_string(parent)} }}"))
        without = {(r.column, r.table) for r in rule.references if not r.foreign_key}
        for column, parent in sorted(declared - fks - without):
            out.append(Difference("reference-without-fk", rule.name,
                                  f"[tables.{toml_key(rule.name)}].references: {toml_key(rule.name)}.{column} -> "
                                  f"{toml_key(parent)} has no foreign key in the database; check the column and "
                                  f"table names, or, if the schema links them without one (a Rails belongs_to), "
                                  f"declare foreign_key = false on the reference"))
    return out


# Types a join compares without a cast: the same type, or two of one family (varchar(255) and text).
_FAMILIES = {"character varying": "text", "character": "text", "text": "text", "smallint": "integer",
             "integer": "integer", "bigint": "integer"}


def comparable(a: str, b: str) -> bool:
    """Can columns of these two types (``format_type`` names) be compared without a cast?"""
    def family(column_type: str) -> str:
        base = column_type.split("(")[0].strip()
        return _FAMILIES.get(base, base)
    return family(a) == family(b)


def reference_type_differences(plan: Plan, catalog: Catalog) -> list[Difference]:
    """References with no foreign key behind them whose column cannot be compared with the parent's
    key (``customer_id text`` against a uuid ``customers.id``): every query following the reference
    would fail. A foreign key guarantees comparable types, so only references without one are asked."""
    out: list[Difference] = []
    for rule in plan.tables:
        table = catalog.tables.get(rule.name)
        if table is None:
            continue
        backed = {(c, fk.parent) for fk in table.foreign_keys if (c := _link_column(fk, plan.tenant_column))}
        for ref in rule.references:
            parent = catalog.tables.get(ref.table)
            pkey = next((r.key[0] for r in plan.tables if r.name == ref.table), None)
            if (ref.column, ref.table) in backed or parent is None or pkey is None:
                continue
            mine, theirs = table.columns.get(ref.column), parent.columns.get(pkey)
            if mine is not None and theirs is not None and not comparable(mine, theirs):
                out.append(Difference(
                    "reference-type-mismatch", rule.name,
                    f"[tables.{toml_key(rule.name)}].references: {toml_key(rule.name)}.{ref.column} is {mine} but "
                    f"{toml_key(ref.table)}.{pkey} is {theirs}, and no foreign key links them: they cannot be "
                    f"compared; fix the reference's column or table"))
    return out


def _link_column(fk: ForeignKey, tenant_column: str) -> str | None:
    """The one column a foreign key links by: its only column, or, for a tenant-keyed key, the one
    beside the tenant column (``(tenant_id, patient_id) -> patients (tenant_id, id)``: patient_id)."""
    pairs = [(c, p) for c, p in zip(fk.columns, fk.parent_columns, strict=False)
             if not (c == tenant_column and p == tenant_column)]
    return pairs[0][0] if len(pairs) == 1 else None


def unclassified(conn: Connection, plan: Plan) -> list[Difference]:
    """Values of each classified column (any tenant) that its classification does not know."""
    out: list[Difference] = []
    for rule in plan.tables:
        if rule.owner != "classified" or rule.column is None or rule.classification is None:
            continue
        known = sorted(plan.classifications[rule.classification])
        rows = conn.execute(sql.SQL("SELECT DISTINCT {c}::text FROM {t} WHERE {c} IS NULL OR NOT ({c} = ANY({k})) "
                                    "ORDER BY 1").format(c=sql.Identifier(rule.column), t=table_sql(rule.name),
                                                         k=sql.Literal(known))).fetchall()
        values = [r[0] for r in rows]
        if values:
            out.append(Difference("unclassified", rule.name,
                                  f"[classification.{rule.classification}]: {rule.name}.{rule.column} values "
                                  f"{', '.join(repr(v) for v in values[:10])} are not classified; add each as "
                                  f"\"patient\", \"provider\" or \"system\""))
    return out


# A materialized view of the schemas in scope (_IN_SCOPE): does it carry the tenant column, does its
# query name the source or target tenant, and which tables it reads (through its rewrite rule).
_MATVIEWS = """
SELECT n.nspname, m.relname,
       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = m.oid AND a.attname = %(column)s
               AND a.attnum > 0 AND NOT a.attisdropped),
       position(%(source)s IN pg_get_viewdef(m.oid)) > 0 OR position(%(target)s IN pg_get_viewdef(m.oid)) > 0,
       coalesce((SELECT json_agg(DISTINCT jsonb_build_array(tn.nspname, t.relname)) FROM pg_rewrite r
             JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                             AND d.refclassid = 'pg_class'::regclass
             JOIN pg_class t ON t.oid = d.refobjid AND t.oid <> m.oid
             JOIN pg_namespace tn ON tn.oid = t.relnamespace
             WHERE r.ev_class = m.oid), '[]'),
       current_schema()
FROM pg_class m JOIN pg_namespace n ON n.oid = m.relnamespace
WHERE m.relkind = 'm' AND {scope}
ORDER BY 1, 2
""".replace("{scope}", _IN_SCOPE)


@dataclass(frozen=True)
class TenantView:
    """A materialized view over tenant-scoped tables that holds a tenant, and why it counts as one."""

    name: str
    why: str  # "carries tenant_id", "filters on a tenant id (...)"
    over: tuple[str, ...]  # the tenant-scoped tables it reads


def _canonical(name: str, current: str | None) -> tuple[str | None, str]:
    """(schema, table) of a plan's name, a bare name in the search path's schema."""
    schema, table = split_table(name)
    return (schema if schema is not None else current), table


def materialized_views(conn: Connection, names: Iterable[str]) -> set[str]:
    """Those of ``names`` (the plan's form: ``case_counts``, ``app.case_counts``) that are materialized views."""
    wanted = list(dict.fromkeys(names))
    rows = conn.execute("SELECT n FROM unnest(%s::text[], %s::text[]) u(n, r) JOIN pg_class m ON "
                        "m.oid = to_regclass(r) AND m.relkind = 'm'",
                        (wanted, [table_regclass(n) for n in wanted])).fetchall()
    return {str(r[0]) for r in rows}


def tenant_views(conn: Connection, tenant_column: str, source: str, target: str, tables: Iterable[str],
                 schemas: Iterable[str] = (), *, every_schema: bool = False) -> list[TenantView]:
    """The materialized views over ``tables`` (named as the plan names them) that carry
    ``tenant_column`` or whose query names the ``source`` or ``target`` tenant: what a cutover of those
    tables leaves stale. Views of the search path's schema and of ``schemas`` (every schema with
    ``every_schema``) are read, each named as a plan names it (``app.case_counts`` outside it)."""
    rows = conn.execute(_MATVIEWS, {"column": tenant_column, "source": source, "target": target,
                                    "schemas": list(schemas), "all": every_schema}).fetchall()
    current = str(rows[0][-1]) if rows and rows[0][-1] is not None else None
    scoped = {_canonical(t, current): t for t in tables}
    out: list[TenantView] = []
    for nsp, name, carries, filters, reads, _ in rows:
        over = tuple(sorted(scoped[(n, r)] for n, r in _load(reads) if (n, r) in scoped))
        if over and (carries or filters):
            why = f"carries {tenant_column}" if carries else f"filters on a tenant id ({source} / {target})"
            out.append(TenantView(plan_table_name(nsp, name, current), why, over))
    return out


def materialized_view_differences(conn: Connection, plan: Plan) -> list[Difference]:
    """Materialized views over the plan's tables that hold a tenant (they carry the tenant column, or
    their query names the source or target tenant) and that the plan does not name in ``[refresh]``:
    after the cutover such a view still shows the moved rows on the source until someone refreshes it,
    so it blocks like an unplanned table. A view ``[refresh]`` names that is not in the database blocks
    too: the execute would fail refreshing it (or an acknowledgement would cover nothing)."""
    named = set(plan.refresh_views) | set(plan.static_views)
    found = materialized_views(conn, named)
    current = db_current_schema(conn)
    known = {_canonical(n, current) for n in named}
    out: list[Difference] = []
    for view in tenant_views(conn, plan.tenant_column, plan.source, plan.target, plan.table_names, plan.schemas):
        if _canonical(view.name, current) in known:
            continue
        out.append(Difference(
            "unplanned-materialized-view", view.name,
            f"materialized view {view.name} {view.why} over {', '.join(view.over)}: after the cutover it would "
            f"still show the moved rows as before until refreshed; add it to [refresh] materialized_views "
            f"(refreshed inside the cutover's transaction) or, if it holds nothing the cutover changes, to "
            f"[refresh] static"))
    for key, names in (("materialized_views", plan.refresh_views), ("static", plan.static_views)):
        for name in names:
            if name not in found:
                out.append(Difference(
                    "missing-materialized-view", name,
                    f"[refresh].{key}: {name} is not a materialized view in the database; fix the name or "
                    f"remove it from the plan"))
    return out


# The user triggers on the current schema's tables that a move fires: enabled, on UPDATE, and, for
# ``UPDATE OF columns``, with the tenant column among them (the move sets nothing else). With the
# function's language and source, the only place a trigger says which tables it writes.
_TRIGGERS = """
SELECT n.nspname, c.relname, t.tgname, p.proname, l.lanname, (t.tgtype & 1) = 1, coalesce(p.prosrc, ''),
       current_schema()
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_language l ON l.oid = p.prolang
WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND (t.tgtype & 16) <> 0 AND {scope}
  AND (cardinality(t.tgattr::int2[]) = 0 OR (SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = c.oid
                                   AND a.attname = %(column)s) = ANY(t.tgattr::int2[]))
ORDER BY 1, 2, 3
""".replace("{scope}", _IN_SCOPE)

# A statement that writes a table, in a function's source: INSERT INTO, UPDATE, DELETE FROM, MERGE INTO,
# then the table's name (schema-qualified or not, quoted or not).
_WRITES = re.compile(r'\b(?:insert\s+into|update|delete\s+from|merge\s+into)\s+(?:only\s+)?'
                     r'(?:("(?:[^"]|"")+"|[a-z_][\w$]*)\s*\.\s*)?("(?:[^"]|"")+"|[a-z_][\w$]*)', re.I)


@dataclass(frozen=True)
class TriggerWrite:
    """A user trigger the cutover's move of ``table`` fires, and the planned tables its function writes.

    ``writes`` is read from the function's source (plpgsql or SQL): each table named after INSERT INTO,
    UPDATE, DELETE FROM or MERGE INTO. Dynamic SQL (``EXECUTE format(...)``) and functions in other
    languages are not read: the plan's ``written_by`` declares what they write."""

    table: str
    trigger: str
    function: str
    row_level: bool
    writes: tuple[str, ...]

    @property
    def entry(self) -> str:
        return f"{self.table}.{self.trigger}"

    def undeclared(self, plan: Plan) -> tuple[str, ...]:
        """The tables it writes whose ``written_by`` does not name it."""
        return tuple(w for w in self.writes
                     if not any((d.table, d.trigger) == (self.table, self.trigger) for d in plan.table(w).written_by))


def written_tables(source: str, planned: Iterable[str], current: str | None = None) -> tuple[str, ...]:
    """The planned tables a function's source writes to, in the plan's order: by schema and name, a
    name without a schema (in the source or the plan) taken as the search path's schema ``current``."""

    def unquoted(name: str) -> str:
        return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()

    named = {(unquoted(schema) if schema else current, unquoted(table))
             for schema, table in (m.groups() for m in _WRITES.finditer(source))}
    return tuple(t for t in planned if _canonical(t, current) in named)


def trigger_writes(conn: Connection, plan: Plan) -> list[TriggerWrite]:
    """Every user trigger the moves fire on the plan's moving tables, with the other planned tables it writes."""
    moving = {t.name for t in plan.moving}
    rows = conn.execute(_TRIGGERS, {"column": plan.tenant_column, "schemas": list(plan.schemas),
                                    "all": False}).fetchall()
    current = str(rows[0][-1]) if rows and rows[0][-1] is not None else None
    named = {_canonical(name, current): name for name in plan.table_names}  # app.patients as the plan names it
    out = []
    for schema, relname, trigger, function, language, row_level, source, _ in rows:
        table = named.get((schema, relname))
        if table is None or table not in moving:
            continue
        readable = language in ("plpgsql", "sql")
        writes = written_tables(source, plan.table_names, current) if readable else ()
        out.append(TriggerWrite(table, trigger, function, bool(row_level), tuple(w for w in writes if w != table)))
    return out


def trigger_differences(plan: Plan, triggers: Iterable[TriggerWrite]) -> list[Difference]:
    """Triggers the moves fire that write planned tables the plan does not say they write, and
    ``written_by`` entries no such trigger stands behind: either way the verification would find rows
    it did not expect (or miss rows it did) and roll the cutover back after the window's minutes."""
    found = {(t.table, t.trigger): t for t in triggers}
    out: list[Difference] = []
    for rule in plan.tables:
        where = f"[tables.{toml_key(rule.name)}].written_by"
        for declared in rule.written_by:
            trig = found.get((declared.table, declared.trigger))
            if trig is None:
                out.append(Difference("missing-trigger", rule.name, (
                    f"{where}: no enabled trigger {_shown(declared.trigger)} on {_shown(declared.table)} fires on the "
                    f"move's UPDATE of {plan.tenant_column}; fix the name or remove it from the plan")))
            elif not trig.row_level:
                out.append(Difference("trigger-per-statement", rule.name, (
                    f"{where}: trigger {_shown(trig.trigger)} on {_shown(trig.table)} is FOR EACH STATEMENT: the "
                    f"rows it writes do not follow the moved rows, so the cutover cannot expect them; make it FOR "
                    f"EACH ROW or disable it for the window (ALTER TABLE {_shown(trig.table)} DISABLE TRIGGER "
                    f"{_shown(trig.trigger)})")))
    for trig in triggers:
        for written in trig.undeclared(plan):
            out.append(Difference("undeclared-trigger-writes", written, (
                f"trigger {_shown(trig.trigger)} on {_shown(trig.table)} writes {_shown(written)} (its function "
                f"{_shown(trig.function)} names it) each time the cutover moves a {_shown(trig.table)} row: "
                f"verification would find rows it did not expect and roll back; declare them: add "
                f"written_by = [{toml_string(trig.entry)}] to [tables.{toml_key(written)}]")))
    return out
