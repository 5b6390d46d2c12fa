"""The database's shape and security: A1 (schema head, plan against catalog), A2 (target tenant), A21 (RLS).

These say whether the database is the one the plan describes and whether the application can
see only what it should; a failure here makes every row-level check's answer suspect."""

from __future__ import annotations

import json
from typing import Any

from psycopg import sql

from cutover.core import live_schema, tenants
from cutover.core.plan import table_regclass
from cutover.core.row_keys import key_text
from cutover.suite.checks.base import Checker, Evidence, I, T


def a1(c: Checker, ev: Evidence) -> Evidence:
    """Catches a cutover rehearsed or run against a schema the plan does not describe.

    The ownership rules hold only for the plan's schema: another alembic head, a tenant-scoped table
    the plan does not list (its rows neither moved nor checked), a planned table, key or reference
    column missing, or a tenant-keyed foreign key the move cannot run under all make every other
    check's answer meaningless, so this one comes first."""
    p = c.plan
    versions = p.features.schema_versions
    if versions == "none":
        ev.about(expected="the plan and the catalog agree (schema head not applicable: the plan declares "
                          "no version table, [features] schema_versions = \"none\")", tenant="-")
        ev.found = "schema head not applicable (no version table)"
    elif versions == "rails":  # a table of every applied version: the head must be among them
        ev.about(expected=f"{p.schema_head} among the applied versions in {p.version_table}", tenant="-")
        n, present = c.run(ev, sql.SQL("SELECT count(*), coalesce(bool_or({c}::text = {h}), false) FROM {t}").format(
            c=I(p.version_column), h=sql.Literal(p.schema_head), t=T(p.version_table)))[0]
        ev.found = f"{n} applied versions; {p.schema_head} {'among them' if present else 'not among them'}"
        if not present:
            ev.fail(f"schema head {p.schema_head} is not among the {n} applied versions in {p.version_table}")
    else:
        ev.about(expected=f"exactly one row: {p.schema_head}", tenant="-")
        heads = [r[0] for r in c.run(ev, sql.SQL("SELECT {}::text FROM {}").format(I(p.version_column),
                                                                                       T(p.version_table)))]
        ev.found = f"{len(heads)} rows: {', '.join(heads) or 'none'}"
        if heads != [p.schema_head]:
            ev.fail(f"schema head is {heads or 'missing'}, expected ['{p.schema_head}']", heads)
    # The schema is the plan's: every tenant-scoped table planned, every planned table and column there.
    ev.queries.append("(the catalog: tables, columns, unique keys and foreign keys of the current schema)")
    schema = live_schema.read(c.conn, p)
    ev.queries.append("(the user triggers the moves fire on the moving tables, and their functions' sources)")
    for diff in (live_schema.compare(p, schema)
                 + live_schema.trigger_differences(p, live_schema.trigger_writes(c.conn, p))):
        rows: list[str] = []
        if diff.code == "unplanned-table" and p.tenant_column in schema.tables[diff.table].columns:
            rows = [f"{diff.table} on {tenant}: {n} rows" for tenant, n in c.run(ev, sql.SQL(
                "SELECT {c}::text, count(*) FROM {t} GROUP BY 1 ORDER BY 1").format(
                c=I(p.tenant_column), t=T(diff.table)))]
        ev.fail(diff.message + (f" ({'; '.join(rows)})" if rows else ""), rows)
    return ev


def a2(c: Checker, ev: Evidence) -> Evidence:
    """Catches a half-made patient tenant: missing, inactive, unprotected, or with settings that differ
    from the source's mirrored ones, which breaks the moved patients' logins and billing."""
    p = c.plan
    f = p.features
    wanted = ["exists"] + (["active", "protected"] if f.tenant_flags else []) + (
        [f"{', '.join(p.mirrored_settings)} equal to {p.source}'s"] if f.tenant_settings else [])
    absent = [w for key, w in f.absent().items() if key in ("tenant_flags", "tenant_settings")]
    ev.about(tenant=p.target, expected=", ".join(wanted) + (
        f" (not applicable, as the plan declares: {', '.join(absent)})" if absent else ""))
    # Which row is which is asked of the database, in the key's own type (a uuid comes back as a UUID).
    src, tgt, tid = tenants.literal(p, p.source), tenants.literal(p, p.target), I(tenants.TENANT_KEY)
    columns = [sql.SQL("{} = {}").format(tid, src), sql.SQL("{} = {}").format(tid, tgt)] + (
        [I(p.active_column), I(p.protected_column)] if f.tenant_flags else []) + (
        [I(p.settings_column)] if f.tenant_settings else [])
    rows: dict[str, tuple[Any, ...]] = {}
    for is_source, is_target, *row in c.run(ev, sql.SQL("SELECT {cols} FROM {t} WHERE {id} IN ({src}, {tgt})").format(
            cols=sql.SQL(", ").join(columns), t=T(p.tenant_table), id=tid, src=src, tgt=tgt)):
        rows.update({t: tuple(row) for t, hit in ((p.source, is_source), (p.target, is_target)) if hit})
    if p.target not in rows:
        ev.fail(f"tenant {p.target} does not exist")
        return ev
    found = list(rows[p.target])
    seen = []
    if f.tenant_flags:
        active, protected = found[0], found[1]
        seen.append(f"active={active}, protected={protected}")
        if not active:
            ev.fail("target tenant is not active")
        if not protected:
            ev.fail("target tenant is not protected")
    if p.source not in rows:
        ev.fail(f"source tenant {p.source} does not exist" + (", so the mirrored settings cannot be compared"
                                                               if f.tenant_settings else ""))
    if f.tenant_settings:
        settings = found[-1] or {}
        source_settings: dict[str, object] = (rows.get(p.source) or [{}])[-1] or {}
        seen.append(f"settings={json.dumps(settings, sort_keys=True)}")
        for key in p.mirrored_settings:
            if key not in settings or settings.get(key) != source_settings.get(key):
                ev.fail(f"setting {key}: {settings.get(key)!r}, source has {source_settings.get(key)!r}")
    ev.found = "; ".join(seen) or "exists"
    return ev


def a21(c: Checker, ev: Evidence) -> Evidence:
    """Catches a tenant boundary that does not hold, which the whole move relies on.

    A planned table without RLS enabled, forced and a policy; an app role that bypasses RLS
    (BYPASSRLS or superuser); or, as the app role on the source, a patient row still visible without
    a share granting it."""
    p = c.plan
    ev.about(tenant=p.source, expected="RLS enabled + forced + policy on every table; app role "
                                       "without BYPASSRLS; 0 patient rows visible on the source")
    rows = c.run(ev, sql.SQL(
        "SELECT u.n, c.relrowsecurity, c.relforcerowsecurity, (SELECT count(*) FROM pg_policy "
        "WHERE polrelid = c.oid) FROM unnest({}::text[], {}::text[]) u(n, r) JOIN pg_class c ON c.oid = "
        "to_regclass(u.r)").format(sql.Literal(list(p.table_names)),
                                   sql.Literal([table_regclass(t) for t in p.table_names])))
    found = {r[0]: r[1:] for r in rows}
    for table in p.table_names:
        enabled, forced, policies = found.get(table, (False, False, 0))
        for what, ok in (("enabled", enabled), ("forced", forced), ("a policy", policies)):
            if not ok:
                ev.fail(f"{table}: RLS not {what}" if what != "a policy" else f"{table}: no RLS policy", [table])
    role = c.run(ev, sql.SQL("SELECT rolbypassrls, rolsuper FROM pg_roles WHERE rolname = {}").format(
        sql.Literal(p.app_role)))
    if not role:
        ev.fail(f"role {p.app_role} does not exist")
        return ev
    if role[0][0] or role[0][1]:
        ev.fail(f"role {p.app_role} bypasses RLS (bypassrls={role[0][0]}, superuser={role[0][1]})")
    for rule in p.tables:
        if rule.owner == "provider":
            continue
        visible = c.as_app(ev, p.source, sql.SQL("SELECT {k} FROM {t} t WHERE {w}").format(
            k=key_text(rule.key, "t"), t=T(rule.name), w=c.patient(rule)))
        if visible is None:
            return ev
        leaked = visible - c.shared_to(ev, rule, p.source)
        if leaked:
            ev.fail(f"{rule.name}: {len(leaked)} patient rows visible as {p.app_role} on {p.source} without a "
                    f"share granting them", sorted(leaked))
    ev.found = "as expected" if ev.ok else f"{len(ev.problems)} problems"
    return ev
