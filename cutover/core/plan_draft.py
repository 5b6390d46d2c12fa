"""A first plan from a live database, for an operator adapting the suite to their own schema.

Drafting is read-only and mechanical: every tenant-scoped table with its primary key (composite
included) and its foreign keys as references, partitioned parents rather than partitions, owner
"patient" where a chain of foreign keys leads to the patient root, classification tables pre-filled
with the values found on the source tenant. Everything the catalog cannot decide is marked
``# REVIEW``: a draft is where the review starts, never a plan to run unread.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from psycopg import sql

from cutover.core import catalog as cat
from cutover.core.db import Connection
from cutover.core.errors import SetupError
from cutover.core.plan import DEFAULT_PLAN, PLAN_FORMAT, toml_key, toml_string

CLASSIFYING = re.compile(r"^(kind|role|type|route|category)$|_(type|kind|route)$")
MAX_VALUES = 200


@dataclass(frozen=True)
class DraftOptions:
    """What the catalog cannot tell: the tenancy's names (defaults come from the reference plan)."""

    tenant_table: str
    tenant_column: str
    source: str
    target: str
    version_table: str
    version_column: str
    patient_table: str | None = None  # the patient root; guessed from the names when absent


def _q(value: str) -> str:
    return toml_string(value)


def _shown(name: str) -> str:
    """A name inside a ``# REVIEW`` comment: as it is, or quoted where a newline would end the comment."""
    return name if name.isprintable() else toml_string(name)


def _key(table: cat.Table) -> tuple[tuple[str, ...], str]:
    if table.primary_key:
        return table.primary_key, ""
    if table.unique:
        return table.unique[0], "  # REVIEW: no primary key; this is a unique index"
    first = next(iter(table.columns))
    return (first,), "  # REVIEW: no primary key or unique index: name the columns that identify a row"


def _toml_key(columns: tuple[str, ...]) -> str:
    return _q(columns[0]) if len(columns) == 1 else "[" + ", ".join(_q(c) for c in columns) + "]"


def _root(tables: dict[str, cat.Table], wanted: str | None) -> str | None:
    if wanted is not None:
        if wanted not in tables:
            raise SetupError(f"--patient-table {wanted}: no tenant-scoped table of that name; pass one of "
                             f"{', '.join(sorted(tables)[:10])}")
        return wanted
    return next((name for name in sorted(tables, key=lambda n: (len(n), n)) if name.startswith("patient")), None)


def _chains(tables: dict[str, cat.Table], root: str | None) -> dict[str, list[str]]:
    """For each table, a foreign-key path to the root (child first), if one exists."""
    if root is None:
        return {}
    paths: dict[str, list[str]] = {root: [_shown(root)]}
    changed = True
    while changed:
        changed = False
        for name, table in sorted(tables.items()):
            if name in paths:
                continue
            for fk in table.foreign_keys:
                if len(fk.columns) == 1 and fk.parent in paths and fk.parent != name:
                    paths[name] = [f"{_shown(name)}.{_shown(fk.columns[0])}", *paths[fk.parent]]
                    changed = True
                    break
    return paths


def _levels(names: Iterable[str], tables: dict[str, cat.Table]) -> list[list[str]]:
    """Move steps: parents before children (by foreign keys among the moving tables)."""
    todo = set(names)
    out: list[list[str]] = []
    while todo:
        ready = sorted(n for n in todo if not any(fk.parent in todo and fk.parent != n
                                                    for fk in tables[n].foreign_keys))
        if not ready:  # a cycle: take the rest in one step and let the reviewer split it
            ready = sorted(todo)
        out.append(ready)
        todo -= set(ready)
    return out


def draft(conn: Connection, options: DraftOptions) -> str:
    """The draft plan's TOML text; reads the catalog once and the classifying columns' values."""
    schema = cat.read(conn)
    o = options
    if o.tenant_table not in schema.tables:
        raise SetupError(f"the database has no table '{o.tenant_table}' (the tenants table); pass --tenant-table, "
                         f"or point --db-url at the application's database")

    class _P:  # just enough of a plan for the catalog's tenant_scoped()
        tenant_table, tenant_column = o.tenant_table, o.tenant_column

    scoped = {t.name: t for t in schema.tenant_scoped(_P())}  # type: ignore[arg-type]
    root = _root(scoped, o.patient_table)
    chains = _chains(scoped, root)
    static = [n for n, t in schema.tables.items() if t.partition_of is None and n not in scoped]
    lines: list[str] = []
    classifications: dict[str, list[str]] = {}
    owners: dict[str, str] = {}
    audit: tuple[str, str] | None = None
    body: list[str] = []
    pending: list[tuple[int, list[tuple[str, str, str]]]] = []  # each table's references: first line, (column, parent)
    for name, table in sorted(scoped.items()):
        key, key_note = _key(table)
        body += ["", f"[tables.{toml_key(name)}]", f"key = {_toml_key(key)}{key_note}"]
        classifier = next((c for c in table.columns if CLASSIFYING.search(c) and "char" in table.columns[c]
                           or CLASSIFYING.search(c) and table.columns[c] == "text"), None)
        share = next((fk.columns[0] for fk in table.foreign_keys if fk.parent == o.tenant_table
                      and len(fk.columns) == 1 and fk.columns[0] != o.tenant_column), None)
        if name in chains:
            owners[name] = "patient"
            how = "the patient root" if name == root else " -> ".join(chains[name])
            body.append(f'owner = "patient"  # REVIEW: inferred from {how}')
        elif classifier is not None:
            owners[name] = "classified"
            classification = classifier
            body += ['owner = "classified"  # REVIEW: or "column" with patient_values, or "provider"',
                     f"column = {_q(classifier)}", f"classification = {_q(classification)}"]
            values = [r[0] for r in conn.execute(sql.SQL(
                "SELECT DISTINCT {c}::text FROM {t} WHERE {ten} = {src} AND {c} IS NOT NULL "
                "ORDER BY 1 LIMIT {n}").format(
                c=sql.Identifier(classifier), t=sql.Identifier(name), ten=sql.Identifier(o.tenant_column),
                src=sql.Literal(o.source), n=sql.Literal(MAX_VALUES))).fetchall()]
            classifications.setdefault(classification, [])
            classifications[classification] += [v for v in values if v not in classifications[classification]]
            payload = next((c for c, t in table.columns.items() if t == "jsonb"), None)
            if audit is None and payload is not None and ("event" in name or "audit" in name):
                audit = (name, classifier)
        else:
            owners[name] = "provider"
            body.append(f'owner = "provider"  # REVIEW: no foreign-key chain to {_shown(root or "a patient table")}')
        if share is not None:
            body.append(f"share_target = {_q(share)}  # REVIEW: a case share's target tenant?")
        refs: list[tuple[str, str, str]] = []
        for fk in table.foreign_keys:
            if len(fk.columns) != 1 or fk.parent not in scoped or fk.parent == name:
                continue
            if len(scoped[fk.parent].primary_key or ()) > 1:
                continue
            refs.append((fk.columns[0], fk.parent, ""))
        if refs:
            body.append("references = [")
            body += [f"    {{ column = {_q(c)}, table = {_q(p)} }},{n}" for c, p, n in refs]
            body.append("]")
            pending.append((len(body) - 1 - len(refs), refs))
    if audit is None:
        audit = next(((n, c) for n in sorted(scoped) if owners.get(n) == "classified"
                      for c in [next(c for c in scoped[n].columns if CLASSIFYING.search(c))]), ("REVIEW", "REVIEW"))
    audit_table = scoped.get(audit[0])
    # Cross-tenant references the reviewer must settle: a patient table pointing at a non-patient one.
    for first, refs in pending:
        for i, (_, parent, _) in enumerate(refs, start=first):
            if owners.get(parent) == "provider":
                body[i] += (f"  # REVIEW: {_shown(parent)} is not patient-owned; declare cross_tenant = \"provider\" "
                            f"(or \"share\") if the parent stays on another tenant")
    for kind in ("cutover.started", "cutover.completed", "cutover.swept", "cutover.reversed",
                 "cutover.allow_list_part"):
        if audit[1] in classifications and kind not in classifications[audit[1]]:
            classifications[audit[1]].append(kind)
    moving = [n for n in sorted(scoped) if owners[n] != "provider"]
    head = _schema_head(conn, schema, o.version_table, o.version_column)
    tenants = schema.tables[o.tenant_table]
    jsonb = next((c for c, t in tenants.columns.items() if t == "jsonb"), None)
    active = next((c for c, t in tenants.columns.items() if t == "boolean" and "active" in c), None)
    protected = next((c for c, t in tenants.columns.items() if t == "boolean" and "protect" in c), None)
    versions = _versions(conn, schema, o.version_table, o.version_column)
    shares = sorted(n for n, t in scoped.items() for fk in t.foreign_keys if fk.parent == o.tenant_table
                    and len(fk.columns) == 1 and fk.columns[0] != o.tenant_column)
    rls = bool(conn.execute("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
                            "n.nspname = current_schema() AND c.relname = ANY(%s) AND c.relrowsecurity LIMIT 1",
                            (sorted(scoped),)).fetchone())
    features = [  # what the schema was found to have: a check whose subject is absent is not applicable
        "", "[features]  # REVIEW: what the schema has (docs/plan.md, [features])",
        f"row_level_security = {str(rls).lower()}", f"tenant_settings = {str(jsonb is not None).lower()}",
        f"tenant_flags = {str(active is not None and protected is not None).lower()}",
        f"share_table = {_q(shares[0]) if shares else 'false'}",
        f"event_table = {_q(audit[0]) if owners.get(audit[0]) == 'classified' else 'false'}",
        "idempotency_table = false  # REVIEW: a table whose case_json names a case, if the schema has one",
        f"schema_versions = {_q(versions)}",
    ]
    version_lines = ([f"schema_head = {_q(head)}", f"version_table = {_q(o.version_table)}",
                      f"version_column = {_q(o.version_column)}"] if versions != "none" else [])
    tenant_lines = ([] if jsonb is None else ['mirrored_settings = ["region", "language", "currency"]  # REVIEW',
                                              f"settings_column = {_q(jsonb)}"]) + (
        [] if active is None or protected is None else
        [f"active_column = {_q(active)}", f"protected_column = {_q(protected)}"])
    payload = next((c for c, t in (audit_table.columns.items() if audit_table else []) if t == "jsonb"), "payload")
    source_col = next((c for c in (audit_table.columns if audit_table else []) if c.startswith("source")), "REVIEW")
    audit_key = audit_table.primary_key[0] if audit_table and audit_table.primary_key else "id"
    created = [c for c in (audit_table.columns if audit_table else []) if c == "created_at"]
    pick = {"case": next((n for n in moving if n.startswith("case")), root or "REVIEW"),
            "doc": next((n for n in moving if "doc" in n), root or "REVIEW"),
            "key": next((n for n in moving if "idempot" in n or n.endswith("_keys")), audit[0])}
    key_tbl = scoped.get(pick["key"])
    lines += [
        "# Drafted by `cutover plan draft` from the live schema. Settle every REVIEW before the first rehearsal,",
        "# then run `cutover plan check` (exit 0 when the plan and the database agree). See docs/plan.md.",
        "", "[plan]", f"format = {PLAN_FORMAT}", 'name = "drafted-cutover"  # REVIEW', *version_lines,
        f"tenant_column = {_q(o.tenant_column)}", "move_steps = [",
        *[f"    [{', '.join(_q(n) for n in step)}]," for step in _levels(moving, scoped)], "]",
        *features,
        "", "[tenants]", f"table = {_q(o.tenant_table)}", f"source = {_q(o.source)}", f"target = {_q(o.target)}",
        f"protected = [{_q(o.source)}, {_q(o.target)}]", *tenant_lines,
        "", "[roles]", 'app = "app_user"  # REVIEW', 'app_privileges = ["SELECT", "INSERT", "UPDATE", "DELETE"]',
        'tenant_setting = "app.tenant_id"  # REVIEW',
        "", "[audit]  # REVIEW: where the cutover writes its own events",
        f"table = {_q(audit[0])}", f"key = {_q(audit_key)}", f"type_column = {_q(audit[1])}",
        f"payload_column = {_q(payload)}", f"source_column = {_q(source_col)}", 'source_value = "cutover"',
        'started = "cutover.started"', 'completed = "cutover.completed"', 'swept = "cutover.swept"',
        'reversed = "cutover.reversed"', 'allow_list_part = "cutover.allow_list_part"',
        "", "[rehearsal]  # REVIEW: the tables the manual checks' values come from",
        f"case_table = {_q(pick['case'])}", f"patient_table = {_q(root or 'REVIEW')}",
        f"document_table = {_q(pick['doc'])}", f"key_table = {_q(pick['key'])}",
        f"key_column = {_q(key_tbl.primary_key[0] if key_tbl and key_tbl.primary_key else 'key')}",
        'key_route_column = "route"', 'key_response_column = "response_body"', 'key_case_field = "case_id"',
        "", "[rehearsal.straggler]  # REVIEW: A20-active's synthetic patient row",
        f"table = {_q(audit[0])}", f"marker_column = {_q(payload)}", 'marker_key = "actor"',
        'marker = "rehearsal:synthetic-straggler"', f"now_columns = [{', '.join(_q(c) for c in created)}]",
        f"values = {{ {toml_key(audit[1])} = \"REVIEW: a patient-classified value\", {toml_key(source_col)} = "
        f"\"rehearsal\" }}",
        "", _manual_sections().rstrip(),
        "", "[static]", f"tables = [{', '.join(_q(n) for n in sorted(static))}]",
    ]
    views = cat.tenant_views(conn, o.tenant_column, o.source, o.target, scoped)
    if views:  # each would be left stale by the cutover: refreshed in its transaction unless you say static
        lines += ["", "[refresh]  # REVIEW: or move a view to static = [...] if it holds nothing the cutover changes",
                  "materialized_views = ["]
        lines += [f"    {_q(v.name)},  # " + " ".join(f"{v.why} over {', '.join(v.over)}".split()) for v in views]
        lines.append("]")
    lines += body
    for name, values in sorted(classifications.items()):
        lines += ["", f"[classification.{toml_key(name)}]  # REVIEW every value: patient, provider or system"]
        for value in values:
            cls = "system" if value.startswith("cutover.") else ("patient" if "patient" in value else "provider")
            lines.append(f"{_q(value)} = {_q(cls)}" + ("" if value.startswith("cutover.") else "  # REVIEW"))
    return "\n".join(lines) + "\n"


def _versions(conn: Connection, schema: cat.Catalog, version_table: str, version_column: str) -> str:
    """``[features] schema_versions`` as found: alembic's one row, a table of applied versions, or none."""
    table = schema.tables.get(version_table)
    if table is None or version_column not in table.columns:
        return "none"
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(version_table))).fetchone()
    return "rails" if row is not None and int(row[0]) > 1 else "alembic"


def _schema_head(conn: Connection, schema: cat.Catalog, version_table: str, version_column: str) -> str:
    table = schema.tables.get(version_table)
    if table is None or version_column not in table.columns:
        return "REVIEW"
    row = conn.execute(sql.SQL("SELECT {0}::text FROM {1} ORDER BY 1 DESC LIMIT 1").format(
        sql.Identifier(version_column), sql.Identifier(version_table))).fetchone()
    return str(row[0]) if row else "REVIEW"


def _manual_sections() -> str:
    """The reference plan's nine manual checks: their steps are templates, valid for any schema."""
    text = DEFAULT_PLAN.read_text()
    return text[text.index("[manual.A11]"):text.index("[static]")]
