"""A first plan from a live database, for an operator adapting the suite to their own schema.

Drafting is read-only and mechanical: every tenant-scoped table with its primary key (composite
included) and its foreign keys as references (a table's references to itself too), partitioned
parents rather than partitions, owner "patient" where a chain of references leads to the patient
root, classification tables pre-filled with the values found on the source tenant. A column named
like a parent's key with no foreign key behind it (Rails' ``customer_id``) is drafted as a reference
with ``foreign_key = false``: left out, its table would be drafted as staying behind, and the dry
run would say READY with the table's rows left on the source. Everything the catalog cannot decide
is marked ``# REVIEW``: a draft is where the review starts, never a plan to run unread. What the
draft cannot start without (the tenant column, the two tenants, the patient root; a version table
or column given but not there) stops it in one line naming the flag to give.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from cutover.core import db, live_schema
from cutover.core.db import Connection
from cutover.core.errors import SetupError
from cutover.core.plan import (
    AUDIT_KINDS,
    DEFAULT_PLAN,
    OWN_AUDIT_TABLE,
    PLAN_FORMAT,
    split_table,
    table_regclass,
    table_sql,
    toml_key,
    toml_string,
)

CLASSIFYING = re.compile(r"^(kind|role|type|route|category)$|_(type|kind|route)$")
MAX_VALUES = 200


@dataclass(frozen=True)
class DraftOptions:
    """What the catalog cannot tell: the tenancy's names (defaults come from the reference plan)."""

    tenant_table: str
    tenant_column: str
    source: str
    target: str
    version_table: str | None = None  # found among VERSION_TABLES when absent
    version_column: str | None = None  # the table's known or only column when absent
    patient_table: str | None = None  # the patient root; guessed from the names when absent
    given: frozenset[str] = frozenset()  # the flags the operator gave (the rest are defaults), for the errors


# Where frameworks keep the schema's version: alembic's one row, Rails' table of applied migrations.
VERSION_TABLES = {"alembic_version": "version_num", "schema_migrations": "version"}


def _q(value: str) -> str:
    return toml_string(value)


def _shown(name: str) -> str:
    """A name inside a ``# REVIEW`` comment: as it is, or quoted where a newline would end the comment."""
    return name if name.isprintable() else toml_string(name)


def _key(table: live_schema.Table) -> tuple[tuple[str, ...], str]:
    if table.primary_key:
        return table.primary_key, ""
    if table.unique:
        return table.unique[0], "  # REVIEW: no primary key; this is a unique index"
    first = next(iter(table.columns))
    return (first,), "  # REVIEW: no primary key or unique index: name the columns that identify a row"


def _toml_key(columns: tuple[str, ...]) -> str:
    return _q(columns[0]) if len(columns) == 1 else "[" + ", ".join(_q(c) for c in columns) + "]"


def _root(tables: dict[str, live_schema.Table], wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in tables:
            raise SetupError(f"--patient-table {wanted}: no tenant-scoped table of that name; pass one of "
                             f"{', '.join(sorted(tables)[:10])}")
        return wanted
    bare = {name: split_table(name)[1] for name in tables}  # app.patients is a patient table too
    found = next((name for name in sorted(tables, key=lambda n: (len(bare[n]), n)) if bare[name].startswith("patient")),
                 None)
    if found is None:  # the draft's [rehearsal] and every "patient" owner hang on it
        raise SetupError(f"--patient-table: no tenant-scoped table's name starts with 'patient'; pass --patient-table "
                         f"with the table whose rows move, the one the others reference (one of "
                         f"{', '.join(sorted(tables)[:10])})")
    return found


@dataclass(frozen=True)
class _Ref:
    """A reference the draft declares: a single-column foreign key, or a column named like a parent's
    key with no foreign key behind it (``customer_id`` beside a ``customers`` table keyed by ``id``)."""

    column: str
    parent: str
    foreign_key: bool = True


def _parent_named(column: str, table: live_schema.Table, tables: dict[str, live_schema.Table]) -> str | None:
    """The table a column's name points at, Rails-style (``customer_id`` -> ``customers``): a tenant-scoped
    table with a single-column key ``id`` of a type the column compares with. None when there is none."""
    if not column.endswith("_id"):
        return None
    base = column[:-3]
    names = [base + "s", base + "es", base] + ([base[:-1] + "ies"] if base.endswith("y") else [])
    for name in names:
        parent = tables.get(name)
        if parent is not None and parent.primary_key == ("id",) and \
                live_schema.comparable(table.columns[column], parent.columns["id"]):
            return name
    return None


def _references(tables: dict[str, live_schema.Table], tenant_column: str) -> dict[str, list[_Ref]]:
    """Each table's references: its single-column foreign keys to tables with a one-column key (itself
    included), then the columns named like a parent's key that no foreign key covers."""
    out: dict[str, list[_Ref]] = {}
    for name, table in sorted(tables.items()):
        refs: list[_Ref] = []
        for fk in table.foreign_keys:
            if len(fk.columns) == 1 and fk.parent in tables and len(tables[fk.parent].primary_key or ()) <= 1:
                refs.append(_Ref(fk.columns[0], fk.parent))
        covered = {c for fk in table.foreign_keys for c in fk.columns if c != tenant_column}
        for column in table.columns:
            if column == tenant_column or column in covered:
                continue
            parent = _parent_named(column, table, tables)
            if parent is not None:
                refs.append(_Ref(column, parent, foreign_key=False))
        out[name] = refs
    return out


def _chains(refs: dict[str, list[_Ref]], root: str) -> dict[str, list[str]]:
    """For each table, a path of references to the root (child first), if one exists; a path through
    foreign keys is preferred to one through a column that only looks like a reference."""
    paths: dict[str, list[str]] = {root: [_shown(root)]}
    for with_guesses in (False, True):
        changed = True
        while changed:
            changed = False
            for name, table_refs in sorted(refs.items()):
                if name in paths:
                    continue
                for ref in table_refs:
                    if ref.parent in paths and ref.parent != name and (ref.foreign_key or with_guesses):
                        how = "" if ref.foreign_key else " (no foreign key)"
                        paths[name] = [f"{_shown(name)}.{_shown(ref.column)}{how}", *paths[ref.parent]]
                        changed = True
                        break
    return paths


def _levels(names: Iterable[str], tables: dict[str, live_schema.Table], refs: dict[str, list[_Ref]]) -> list[list[str]]:
    """Move steps: parents before children (by foreign keys and drafted references among the moving tables)."""
    todo = set(names)
    out: list[list[str]] = []

    def parents(n: str) -> set[str]:
        return {fk.parent for fk in tables[n].foreign_keys} | {r.parent for r in refs.get(n, [])}

    while todo:
        ready = sorted(n for n in todo if not any(p in todo and p != n for p in parents(n)))
        if not ready:  # a cycle: take the rest in one step and let the reviewer split it
            ready = sorted(todo)
        out.append(ready)
        todo -= set(ready)
    return out


@dataclass
class _Found:
    """What the tables' sections found, for the sections written around them: the owners the draft
    inferred, the classifying values read, the audit table guessed, and the reference lines a
    cross-tenant note may still be added to."""

    body: list[str] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)
    classifications: dict[str, list[str]] = field(default_factory=dict)
    audit: tuple[str, str] | None = None
    pending: list[tuple[str, int, list[_Ref]]] = field(default_factory=list)  # table, references' first line, refs


def draft(conn: Connection, options: DraftOptions) -> str:
    """The draft plan's TOML text; reads the catalog once and the classifying columns' values."""
    schema = live_schema.read(conn, every_schema=True)  # tables outside the search path's schema drafted as app.name
    o = options
    if o.tenant_table not in schema.tables:
        raise SetupError(f"the database has no table '{o.tenant_table}' (the tenants table); pass --tenant-table, "
                         f"or point --db-url at the application's database")

    class _P:  # just enough of a plan for the catalog's tenant_scoped()
        tenant_table, tenant_column = o.tenant_table, o.tenant_column

    scoped = {t.name: t for t in schema.tenant_scoped(_P())}  # type: ignore[arg-type]
    _check_tenancy(conn, schema, o, scoped)
    version_table, version_column, head, head_note = _version(conn, schema, o)
    root = _root(scoped, o.patient_table)
    references = _references(scoped, o.tenant_column)
    chains = _chains(references, root)
    static = [n for n, t in schema.tables.items() if t.partition_of is None and n not in scoped]
    found = _Found()
    for name, table in sorted(scoped.items()):
        _table_section(conn, o, found, name, table, root, chains, references[name])
    audit = _settle_audit(found)
    moving = [n for n in sorted(scoped) if found.owners[n] != "provider"]
    tenants = schema.tables[o.tenant_table]
    jsonb = next((c for c, t in tenants.columns.items() if t == "jsonb"), None)
    active = next((c for c, t in tenants.columns.items() if t == "boolean" and "active" in c), None)
    protected = next((c for c, t in tenants.columns.items() if t == "boolean" and "protect" in c), None)
    # No version table found: left to the review (plan check names it), never declared away by the draft.
    versions = "alembic" if version_table == "REVIEW" else _versions(conn, version_table)
    features = _features_lines(conn, o, scoped, audit, versions, version_table,
                               jsonb is not None, active is not None and protected is not None)
    version_lines = ([f"schema_head = {_q(head)}{head_note}", f"version_table = {_q(version_table)}",
                      f"version_column = {_q(version_column)}"] if versions != "none" else [])
    tenant_lines = ([] if jsonb is None else ['mirrored_settings = ["region", "language", "currency"]  # REVIEW',
                                              f"settings_column = {_q(jsonb)}"]) + (
        [] if active is None or protected is None else
        [f"active_column = {_q(active)}", f"protected_column = {_q(protected)}"])
    lines = [
        "# Drafted by `cutover plan draft` from the live schema. Settle every REVIEW before the first rehearsal,",
        "# then run `cutover plan check` (exit 0 when the plan and the database agree). See docs/plan.md.",
        "", "[plan]", f"format = {PLAN_FORMAT}", 'name = "drafted-cutover"  # REVIEW', *version_lines,
        f"tenant_column = {_q(o.tenant_column)}", "move_steps = [",
        *[f"    [{', '.join(_q(n) for n in step)}]," for step in _levels(moving, scoped, references)], "]",
        *features,
        "", "[tenants]", f"table = {_q(o.tenant_table)}", f"source = {_q(o.source)}", f"target = {_q(o.target)}",
        f"protected = [{_q(o.source)}, {_q(o.target)}]", *tenant_lines,
        "", "[roles]", 'app = "app_user"  # REVIEW', 'app_privileges = ["SELECT", "INSERT", "UPDATE", "DELETE"]',
        'tenant_setting = "app.tenant_id"  # REVIEW',
        *_audit_and_rehearsal_lines(audit, scoped, moving, root),
        "", _manual_sections().rstrip(),
        "", "[static]", f"tables = [{', '.join(_q(n) for n in sorted(static))}]",
    ]
    lines += _refresh_lines(conn, o, scoped)
    lines += found.body
    for name, values in sorted(found.classifications.items()):
        lines += ["", f"[classification.{toml_key(name)}]  # REVIEW every value: patient, provider or system"]
        for value in values:
            cls = "system" if value.startswith("cutover.") else ("patient" if "patient" in value else "provider")
            lines.append(f"{_q(value)} = {_q(cls)}" + ("" if value.startswith("cutover.") else "  # REVIEW"))
    return "\n".join(lines) + "\n"


def _table_section(conn: Connection, o: DraftOptions, found: _Found, name: str, table: live_schema.Table,
                   root: str, chains: dict[str, list[str]], refs: list[_Ref]) -> None:
    """One ``[tables.NAME]`` section: its key, the owner the draft infers (a chain of references to
    the patient root, a classifying column, or else the provider), a case share, its references."""
    key, key_note = _key(table)
    body = found.body
    body += ["", f"[tables.{toml_key(name)}]", f"key = {_toml_key(key)}{key_note}"]
    classifier = next((c for c in table.columns if CLASSIFYING.search(c) and "char" in table.columns[c]
                       or CLASSIFYING.search(c) and table.columns[c] == "text"), None)
    share = next((fk.columns[0] for fk in table.foreign_keys if fk.parent == o.tenant_table
                  and len(fk.columns) == 1 and fk.columns[0] != o.tenant_column), None)
    if name in chains:
        found.owners[name] = "patient"
        how = "the patient root" if name == root else " -> ".join(chains[name])
        body.append(f'owner = "patient"  # REVIEW: inferred from {how}')
    elif classifier is not None:
        _classified_section(conn, o, found, name, table, classifier)
    else:
        found.owners[name] = "provider"
        body.append(f'owner = "provider"  # REVIEW: no chain of references to {_shown(root)}')
    if share is not None:
        body.append(f"share_target = {_q(share)}  # REVIEW: a case share's target tenant?")
    if refs:
        body.append("references = [")
        body += [f"    {{ column = {_q(r.column)}, table = {_q(r.parent)}"
                 f"{'' if r.foreign_key else ', foreign_key = false'} }},"
                 f"{'' if r.foreign_key else '  # REVIEW: no foreign key'}" for r in refs]
        body.append("]")
        found.pending.append((name, len(body) - 1 - len(refs), refs))


def _classified_section(conn: Connection, o: DraftOptions, found: _Found, name: str, table: live_schema.Table,
                        classifier: str) -> None:
    """A table owned by a classifying column: the source's values of it, to classify in the review;
    the first such table with a jsonb payload and an event-like name is taken for the audit table."""
    found.owners[name] = "classified"
    classification = classifier
    found.body += ['owner = "classified"  # REVIEW: or "column" with patient_values, or "provider"',
                   f"column = {_q(classifier)}", f"classification = {_q(classification)}"]
    values = [] if o.tenant_column not in table.columns else [r[0] for r in conn.execute(sql.SQL(
        "SELECT DISTINCT {c}::text FROM {t} WHERE {ten} = {src} AND {c} IS NOT NULL "
        "ORDER BY 1 LIMIT {n}").format(
        c=sql.Identifier(classifier), t=table_sql(name), ten=sql.Identifier(o.tenant_column),
        src=sql.Literal(o.source), n=sql.Literal(MAX_VALUES))).fetchall()]  # (a table that only
    # references the tenants table has no tenant column: plan check names it missing)
    classifications = found.classifications
    classifications.setdefault(classification, [])
    classifications[classification] += [v for v in values if v not in classifications[classification]]
    payload = next((c for c, t in table.columns.items() if t == "jsonb"), None)
    if found.audit is None and payload is not None and ("event" in name or "audit" in name):
        found.audit = (name, classifier)


def _settle_audit(found: _Found) -> tuple[str, str] | None:
    """The application's events table and its type column, with the cutover's own event kinds among
    its values (None: the cutover keeps its own trail); and the reviewer's notes on references from a
    patient table to one that stays behind."""
    # No events table of the application's (named so, classified, with a jsonb payload): the cutover keeps
    # its own trail. Another classified table is no events table (a payment provider's `type`): naming one
    # left the dry run blocked on columns it never had, and its rows' owner hostage to the audit.
    audit = found.audit
    # Cross-tenant references the reviewer must settle: a patient table pointing at a non-patient one.
    for child, first, refs in found.pending:
        for i, ref in enumerate(refs, start=first):
            if found.owners.get(ref.parent) == "provider" and found.owners.get(child) != "provider" \
                    and ref.parent != child:
                found.body[i] += ("; " if not ref.foreign_key else "  # REVIEW: ") + (
                    f"{_shown(ref.parent)} is not patient-owned; declare cross_tenant = \"provider\" "
                    f"(or \"share\") if the parent stays on another tenant")
    for kind in ("cutover.started", "cutover.completed", "cutover.swept", "cutover.reversed",
                 "cutover.allow_list_part"):
        if audit is not None and audit[1] in found.classifications and kind not in found.classifications[audit[1]]:
            found.classifications[audit[1]].append(kind)
    return audit


def _features_lines(conn: Connection, o: DraftOptions, scoped: dict[str, live_schema.Table],
                    audit: tuple[str, str] | None, versions: str, version_table: str,
                    settings: bool, flags: bool) -> list[str]:
    """``[features]`` as the schema was found: a check whose subject is absent is not applicable."""
    shares = sorted(n for n, t in scoped.items() for fk in t.foreign_keys if fk.parent == o.tenant_table
                    and len(fk.columns) == 1 and fk.columns[0] != o.tenant_column)
    rls = bool(conn.execute("SELECT 1 FROM unnest(%s::text[]) AS u(r) JOIN pg_class c ON c.oid = to_regclass(r) "
                            "WHERE c.relrowsecurity LIMIT 1", ([table_regclass(n) for n in sorted(scoped)],)
                            ).fetchone())
    return [
        "", "[features]  # REVIEW: what the schema has (docs/plan.md, [features])",
        f"row_level_security = {str(rls).lower()}", f"tenant_settings = {str(settings).lower()}",
        f"tenant_flags = {str(flags).lower()}",
        f"share_table = {_q(shares[0]) if shares else 'false'}",
        f"event_table = {_q(audit[0]) if audit is not None else 'false'}",
        "idempotency_table = false  # REVIEW: a table whose case_json names a case, if the schema has one",
        f"schema_versions = {_q(versions)}" + (
            "  # REVIEW: no version table found; name it under [plan], or declare \"none\" and drop [plan]'s "
            "schema_head, version_table and version_column" if version_table == "REVIEW" else ""),
    ]


def _audit_and_rehearsal_lines(audit: tuple[str, str] | None, scoped: dict[str, live_schema.Table],
                               moving: list[str], root: str) -> list[str]:
    """``[audit]``, ``[rehearsal]`` and its straggler: where the cutover writes its events and which
    tables the manual checks' values come from, the columns guessed from the audit table."""
    audit_table = scoped.get(audit[0]) if audit is not None else None
    # A20-active's straggler: a patient event where the application has an events table, else a patient root row.
    straggler = scoped.get(audit[0] if audit is not None else root)
    payload = next((c for c, t in (straggler.columns.items() if straggler else []) if t == "jsonb"),
                   "payload" if audit is not None else "REVIEW")
    source_col = next((c for c in (audit_table.columns if audit_table else []) if c.startswith("source")), "REVIEW")
    created = [c for c in (straggler.columns if straggler else []) if c == "created_at"]
    pick = {"case": next((n for n in moving if n.startswith("case")), root or "REVIEW"),
            "doc": next((n for n in moving if "doc" in n), root or "REVIEW"),
            "key": next((n for n in moving if "idempot" in n or n.endswith("_keys")),
                        audit[0] if audit is not None else root)}
    key_tbl = scoped.get(pick["key"])
    return [
        *_audit_lines(audit, audit_table, payload, source_col),
        "", "[rehearsal]  # REVIEW: the tables the manual checks' values come from",
        f"case_table = {_q(pick['case'])}", f"patient_table = {_q(root or 'REVIEW')}",
        f"document_table = {_q(pick['doc'])}", f"key_table = {_q(pick['key'])}",
        f"key_column = {_q(key_tbl.primary_key[0] if key_tbl and key_tbl.primary_key else 'key')}",
        'key_route_column = "route"', 'key_response_column = "response_body"', 'key_case_field = "case_id"',
        "", "[rehearsal.straggler]  # REVIEW: A20-active's synthetic patient row",
        f"table = {_q(audit[0] if audit is not None else root)}", f"marker_column = {_q(payload)}",
        'marker_key = "actor"', 'marker = "rehearsal:synthetic-straggler"',
        f"now_columns = [{', '.join(_q(c) for c in created)}]",
        (f"values = {{ {toml_key(audit[1])} = \"REVIEW: a patient-classified value\", {toml_key(source_col)} = "
         f"\"rehearsal\" }}") if audit is not None else "values = {}  # REVIEW: the fixed values a patient row needs",
    ]


def _audit_lines(audit: tuple[str, str] | None, table: live_schema.Table | None, payload: str,
                 source: str) -> list[str]:
    """``[audit]``: the application's events table and its columns, or the cutover's own trail."""
    if audit is None:
        return ["", f"[audit]  # REVIEW: no events table found; the cutover keeps its own in {OWN_AUDIT_TABLE} "
                "(docs/plan.md), or name the application's (table = ... and its columns)", "own = true"]
    key = table.primary_key[0] if table and table.primary_key else "id"
    return ["", "[audit]  # REVIEW: where the cutover writes its own events",
            f"table = {_q(audit[0])}", f"key = {_q(key)}", f"type_column = {_q(audit[1])}",
            f"payload_column = {_q(payload)}", f"source_column = {_q(source)}", 'source_value = "cutover"',
            *[f"{k} = {_q(v)}" for k, v in AUDIT_KINDS.items()]]


def _refresh_lines(conn: Connection, o: DraftOptions, scoped: dict[str, live_schema.Table]) -> list[str]:
    """``[refresh]``: the materialized views over tenant rows, each left stale by the cutover unless
    refreshed in its transaction (or declared static by the reviewer)."""
    views = live_schema.tenant_views(conn, o.tenant_column, o.source, o.target, scoped, every_schema=True)
    if not views:
        return []
    return ["", "[refresh]  # REVIEW: or move a view to static = [...] if it holds nothing the cutover changes",
            "materialized_views = [",
            *[f"    {_q(v.name)},  # " + " ".join(f"{v.why} over {', '.join(v.over)}".split()) for v in views],
            "]"]


def _check_tenancy(conn: Connection, schema: live_schema.Catalog, o: DraftOptions,
                   scoped: dict[str, live_schema.Table]) -> None:
    """Stop, naming the flag to give, when the tenant column, the source or the target is not there:
    every query of the draft reads them, and the database's own error would name no flag."""
    carrying = [t for t in scoped.values() if o.tenant_column in t.columns]
    if not carrying:
        held = Counter(fk.columns[0] for t in scoped.values() for fk in t.foreign_keys
                       if fk.parent == o.tenant_table and len(fk.columns) == 1)
        if held:
            column, n = held.most_common(1)[0]
            raise SetupError(f"no table has the tenant column '{o.tenant_column}'; {n} tables reference "
                             f"{o.tenant_table} through {column}: pass --tenant-column {column}")
        raise SetupError(f"no table has the tenant column '{o.tenant_column}' or references {o.tenant_table}; "
                         f"pass --tenant-column (the column holding a row's tenant) and --tenant-table")
    tenants = schema.tables[o.tenant_table]
    key = next((fk.parent_columns[0] for t in carrying for fk in t.foreign_keys
                if fk.parent == o.tenant_table and fk.columns == (o.tenant_column,)), None)
    key = key or (tenants.primary_key[0] if tenants.primary_key and len(tenants.primary_key) == 1 else "id")
    for flag, value, rows in (("--source", o.source, "leave"), ("--target", o.target, "arrive")):
        default = "" if flag[2:] in o.given else f" (the reference plan's; give {flag})"
        fix = f"pass {flag} with the {o.tenant_table}.{key} of the tenant whose rows {rows}"
        try:
            with conn.transaction():  # a savepoint: a value the key's type refuses aborts only this
                found = conn.execute(sql.SQL("SELECT count(*) FROM {t} WHERE {k} = {v}").format(
                    t=table_sql(o.tenant_table), k=sql.Identifier(key), v=sql.Literal(value))).fetchone()
        except psycopg.DataError:
            raise SetupError(f"{flag} {value!r}{default} is not a {tenants.columns.get(key, '?')}, the type of "
                             f"{o.tenant_table}.{key}; {fix}") from None
        if not found or not found[0]:
            raise SetupError(f"{flag} {value!r}{default}: no {o.tenant_table} row has this {key}; {fix}")
    if o.source == o.target:
        raise SetupError(f"--source and --target are both {o.source!r}; pass two different tenants")


def _versions(conn: Connection, table: str) -> str:
    """``[features] schema_versions`` as found: alembic keeps one row (the head), Rails a row per migration."""
    n = db.one(conn, sql.SQL("SELECT count(*) FROM {}").format(table_sql(table)))[0]
    return "rails" if int(n) > 1 else "alembic"


def _version(conn: Connection, schema: live_schema.Catalog, o: DraftOptions) -> tuple[str, str, str, str]:
    """The version table and column (given, or found), the schema head to write, and its REVIEW note
    (REVIEW for all three where no version table is found).

    alembic keeps one row, the head; Rails keeps a row per applied migration, and the head is the
    newest (compared in the column's own type)."""
    if o.version_table is not None and o.version_table not in schema.tables:
        raise SetupError(f"--version-table {o.version_table}: no such table in the database; pass the table "
                         f"holding the schema's version (e.g. {', '.join(VERSION_TABLES)})")
    table = o.version_table or next((t for t in VERSION_TABLES if t in schema.tables), None)
    if table is None:  # a schema may keep no version at all: the reviewer says which, plan check names it
        return "REVIEW", "REVIEW", "REVIEW", (f"  # REVIEW: no version table found (looked for "
                                              f"{', '.join(VERSION_TABLES)}); name yours here, or draft again with "
                                              f"--version-table and --version-column")
    columns = list(schema.tables[table].columns)
    if o.version_column is not None and o.version_column not in columns:
        raise SetupError(f"--version-column {o.version_column}: {table} has no such column (its columns: "
                         f"{', '.join(columns)}); pass one of them")
    known = VERSION_TABLES.get(table)
    column = o.version_column or (known if known in columns else columns[0] if len(columns) == 1 else None)
    if column is None:
        raise SetupError(f"--version-column: {table} has several columns ({', '.join(columns)}); pass "
                         f"--version-column with the one holding the version")
    n, head = db.one(conn, sql.SQL("SELECT (SELECT count(*) FROM {t}), (SELECT {c}::text FROM {t} ORDER BY {c} "
                                   "DESC LIMIT 1)").format(t=table_sql(table), c=sql.Identifier(column)))
    if not n:
        return table, column, "REVIEW", f"  # REVIEW: {_shown(table)} is empty"
    if n > 1:
        return table, column, str(head), (f"  # REVIEW: {_shown(table)} holds {n} versions (one row per applied "
                                          f"migration); this is the newest")
    return table, column, str(head), ""


def _manual_sections() -> str:
    """The reference plan's nine manual checks: their steps are templates, valid for any schema."""
    text = DEFAULT_PLAN.read_text()
    return text[text.index("[manual.A11]"):text.index("[static]")]
