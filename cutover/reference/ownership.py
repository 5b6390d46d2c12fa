"""The plan's ownership rules as SQL: one place builds every predicate the suite runs.

The cutover's moves, the pre-flight's blockers, the sweep, the reverse and the smoke checks all ask
the same questions ("is this row patient-owned?", "is this child on its parent's tenant?"). Building
the SQL once, from the plan, with ``psycopg.sql`` is what keeps the check and the thing checked from
drifting apart: a check that used its own predicate could pass on a cutover that moved the wrong rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from cutover.core import tenants
from cutover.core.plan import Plan, TableRule, table_sql
from cutover.core.row_keys import key_equal, key_text


def ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def patient_predicate(plan: Plan, rule: TableRule, alias: str | None = None) -> sql.Composable:
    """True for the rows of ``rule``'s table that are patient-owned, wherever they are."""
    if rule.owner == "patient":
        return sql.SQL("TRUE")
    if rule.owner == "provider":
        return sql.SQL("FALSE")
    assert rule.column is not None
    col = ident(alias, rule.column) if alias else ident(rule.column)
    return sql.SQL("{} = ANY({})").format(col, sql.Literal(list(plan.patient_values(rule))))


def provider_predicate(plan: Plan, rule: TableRule, alias: str | None = None) -> sql.Composable:
    """True for the rows of ``rule``'s table that are provider-owned (a provider table's, a column
    value that is not the patients', a provider-classified value): what must never reach the target."""
    if rule.owner == "provider":
        return sql.SQL("TRUE")
    if rule.owner == "patient":
        return sql.SQL("FALSE")
    assert rule.column is not None
    col = ident(alias, rule.column) if alias else ident(rule.column)
    if rule.owner == "column":
        return sql.SQL("NOT ({} = ANY({}))").format(col, sql.Literal(list(plan.patient_values(rule))))
    assert rule.classification is not None
    mapping = plan.classifications[rule.classification]
    return sql.SQL("{} = ANY({})").format(col, sql.Literal(sorted(v for v, c in mapping.items() if c == "provider")))


def held_counts(plan: Plan, rule: TableRule) -> sql.Composed:
    """(patient-owned, provider-owned) rows of ``rule``'s table on the target: what it holds of its own
    before a cutover (the report's ``held_on_target``)."""
    return sql.SQL("SELECT count(*) FILTER (WHERE {pat}), count(*) FILTER (WHERE {pro}) FROM {t} WHERE {c} = {tgt}"
                   ).format(pat=patient_predicate(plan, rule), pro=provider_predicate(plan, rule),
                            t=table_sql(rule.name), c=tenant_of(plan), tgt=tenants.literal(plan, plan.target))


def tenant_of(plan: Plan, alias: str | None = None) -> sql.Identifier:
    return ident(alias, plan.tenant_column) if alias else ident(plan.tenant_column)


def owned_on(plan: Plan, rule: TableRule, tenant: str, alias: str | None = None) -> sql.Composable:
    """Rows of ``rule``'s table on ``tenant`` that the cutover treats as patient-owned."""
    return sql.SQL("({} = {} AND {})").format(tenant_of(plan, alias), tenants.literal(plan, tenant),
                                              patient_predicate(plan, rule, alias))


def count_owned(plan: Plan, rule: TableRule, tenant: str) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table_sql(rule.name), owned_on(plan, rule, tenant))


def move_owned(plan: Plan, rule: TableRule, source: str, target: str) -> sql.Composed:
    """The set-based move: one UPDATE per table, no per-row round trips."""
    return sql.SQL("UPDATE {t} SET {c} = {to} WHERE {w}").format(
        t=table_sql(rule.name), c=tenant_of(plan), to=tenants.literal(plan, target), w=owned_on(plan, rule, source))


def move_ids(plan: Plan, rule: TableRule, id_table: str, source: str, target: str) -> sql.Composed:
    """Move exactly the rows whose keys are listed in ``id_table`` (typed like the table's key columns)."""
    return sql.SQL("UPDATE {t} AS r SET {c} = {to} FROM {ids} AS i WHERE {join} AND r.{c} = {src}").format(
        t=table_sql(rule.name), c=tenant_of(plan), to=tenants.literal(plan, target), ids=ident(id_table),
        join=key_equal(rule.key, "r", "i"), src=tenants.literal(plan, source))


def tenant_counts(plan: Plan, table: str) -> sql.Composed:
    col = tenant_of(plan)
    return sql.SQL("SELECT {c}::text, count(*) FROM {t} GROUP BY {c}").format(c=col, t=table_sql(table))


def unclassified_values(plan: Plan, rule: TableRule) -> sql.Composed:
    """Values of a classified column the plan's classification does not know (NULL included)."""
    assert rule.column is not None and rule.classification is not None
    known = sorted(plan.classifications[rule.classification])
    col = ident(rule.column)
    return sql.SQL("SELECT DISTINCT {c}::text FROM {t} WHERE {c} IS NULL OR NOT ({c} = ANY({k})) ORDER BY 1").format(
        c=col, t=table_sql(rule.name), k=sql.Literal(known))


@dataclass(frozen=True)
class Link:
    """One child → parent pointer of the plan: a column, or a key inside a jsonb column."""

    child: TableRule
    parent: TableRule
    label: str
    parent_key: sql.Composable
    cross_tenant: str | None

    @property
    def via_share(self) -> bool:
        return self.cross_tenant == "share"


def links(plan: Plan) -> list[Link]:
    """Every reference the plan declares, ready to be joined (on the parent's single key column)."""
    out: list[Link] = []
    for rule in plan.tables:
        for ref in rule.references:
            out.append(Link(rule, plan.table(ref.table), f"{rule.name}.{ref.column} -> {ref.table}",
                            ident("c", ref.column), ref.cross_tenant))
        if rule.case_json is not None:
            cj = rule.case_json
            parent = plan.table(cj.table)
            out.append(Link(rule, parent, f"{rule.name}.{cj.column}->>'{cj.key}' -> {cj.table}",
                            json_key(parent, ident("c", cj.column), cj.key), cj.cross_tenant))
    return out


def json_key(parent: TableRule, column: sql.Composable, field: str) -> sql.Composable:
    """A parent key named inside a jsonb value, converted to the parent key column's own type.

    ``jsonb_populate_record`` applies the column's input function, so a uuid or bigint parent key is
    compared as what it is (no ``uuid = text``), and the parent's index stays usable.
    """
    return sql.SQL("(jsonb_populate_record(NULL::{p}, jsonb_build_object({k}, {c} -> {f}))).{pk}").format(
        p=table_sql(parent.name), k=sql.Literal(parent.key[0]), c=column, f=sql.Literal(field), pk=ident(parent.key[0]))


def _projected(plan: Plan, rule: TableRule, alias: str, after_move: bool) -> sql.Composable:
    """A row's tenant now, or (``after_move``) once the cutover has moved the source's patient rows."""
    if not after_move:
        return tenant_of(plan, alias)
    return sql.SQL("(CASE WHEN {o} THEN {to} ELSE {c} END)").format(
        o=owned_on(plan, rule, plan.source, alias), to=tenants.literal(plan, plan.target), c=tenant_of(plan, alias))


def link_violations(plan: Plan, link: Link, *, after_move: bool = False, limit: int = 5) -> sql.Composed:
    """Child rows not on their parent's tenant (a missing parent counts), except share-backed ones.

    With ``after_move`` the question is asked of the state the cutover would leave behind: that is
    the pre-flight's "orphans the predicates cannot place". Returns (count, sample ids).
    """
    child_t = _projected(plan, link.child, "c", after_move)
    parent_t = _projected(plan, link.parent, "p", after_move)
    excuse: sql.Composable = sql.SQL("FALSE")
    share = plan.share_table
    if link.cross_tenant == "provider":
        excuse = sql.SQL("{} <> {}").format(parent_t, tenants.literal(plan, plan.target))
    elif link.via_share and share is not None and share.share_target is not None:
        case_ref = next((r.column for r in share.references if r.table == link.parent.name), None)
        if case_ref is not None:
            excuse = sql.SQL("EXISTS (SELECT 1 FROM {s} s WHERE s.{sc} = p.{pk} AND s.{st} = {ct})").format(
                s=table_sql(share.name), sc=ident(case_ref), pk=ident(link.parent.key[0]),
                st=ident(share.share_target), ct=child_t)
    bad = sql.SQL("SELECT {ck} AS id FROM {ct} c LEFT JOIN {pt} p ON p.{pk} = {ref} "
                  "WHERE {ref} IS NOT NULL AND (p.{pk} IS NULL OR ({cten} <> {pten} AND NOT {excuse}))").format(
        ck=key_text(link.child.key, "c"), ct=table_sql(link.child.name), pt=table_sql(link.parent.name),
        pk=ident(link.parent.key[0]), ref=link.parent_key, cten=child_t, pten=parent_t, excuse=excuse)
    return sql.SQL("SELECT count(*), (array_agg(id ORDER BY id))[1:{n}] FROM ({bad}) v").format(
        bad=bad, n=sql.Literal(limit))
