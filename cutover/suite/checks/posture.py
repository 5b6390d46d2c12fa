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


def a1(checker: Checker, ev: Evidence) -> Evidence:
    """Catches a cutover rehearsed or run against a schema the plan does not describe.

    The ownership rules hold only for the plan's schema: another alembic head, a tenant-scoped table
    the plan does not list (its rows neither moved nor checked), a planned table, key or reference
    column missing, or a tenant-keyed foreign key the move cannot run under all make every other
    check's answer meaningless, so this one comes first."""
    plan = checker.plan
    versions = plan.features.schema_versions
    if versions == "none":
        ev.about(expected="the plan and the catalog agree (schema head not applicable: the plan declares "
                          "no version table, [features] schema_versions = \"none\")", tenant="-")
        ev.found = "schema head not applicable (no version table)"
    elif versions == "rails":  # a table of every applied version: the head must be among them
        ev.about(expected=f"{plan.schema_head} among the applied versions in {plan.version_table}", tenant="-")
        applied, present = checker.run(ev, sql.SQL(
            "SELECT count(*), coalesce(bool_or({c}::text = {h}), false) FROM {t}").format(
            c=I(plan.version_column), h=sql.Literal(plan.schema_head), t=T(plan.version_table)))[0]
        ev.found = f"{applied} applied versions; {plan.schema_head} {'among them' if present else 'not among them'}"
        if not present:
            ev.fail(f"schema head {plan.schema_head} is not among the {applied} applied versions in "
                    f"{plan.version_table}")
    else:
        ev.about(expected=f"exactly one row: {plan.schema_head}", tenant="-")
        heads = [row[0] for row in checker.run(ev, sql.SQL("SELECT {}::text FROM {}").format(
            I(plan.version_column), T(plan.version_table)))]
        ev.found = f"{len(heads)} rows: {', '.join(heads) or 'none'}"
        if heads != [plan.schema_head]:
            ev.fail(f"schema head is {heads or 'missing'}, expected ['{plan.schema_head}']", heads)
    # The schema is the plan's: every tenant-scoped table planned, every planned table and column there.
    ev.queries.append("(the catalog: tables, columns, unique keys and foreign keys of the current schema)")
    schema = live_schema.read(checker.conn, plan)
    ev.queries.append("(the user triggers the moves fire on the moving tables, and their functions' sources)")
    for diff in (live_schema.compare(plan, schema)
                 + live_schema.trigger_differences(plan, live_schema.trigger_writes(checker.conn, plan))):
        rows: list[str] = []
        if diff.code == "unplanned-table" and plan.tenant_column in schema.tables[diff.table].columns:
            rows = [f"{diff.table} on {tenant}: {count} rows" for tenant, count in checker.run(ev, sql.SQL(
                "SELECT {c}::text, count(*) FROM {t} GROUP BY 1 ORDER BY 1").format(
                c=I(plan.tenant_column), t=T(diff.table)))]
        ev.fail(diff.message + (f" ({'; '.join(rows)})" if rows else ""), rows)
    return ev


def a2(checker: Checker, ev: Evidence) -> Evidence:
    """Catches a half-made patient tenant: missing, inactive, unprotected, or with settings that differ
    from the source's mirrored ones, which breaks the moved patients' logins and billing."""
    plan = checker.plan
    features = plan.features
    wanted = ["exists"] + (["active", "protected"] if features.tenant_flags else []) + (
        [f"{', '.join(plan.mirrored_settings)} equal to {plan.source}'s"] if features.tenant_settings else [])
    absent = [reason for key, reason in features.absent().items() if key in ("tenant_flags", "tenant_settings")]
    ev.about(tenant=plan.target, expected=", ".join(wanted) + (
        f" (not applicable, as the plan declares: {', '.join(absent)})" if absent else ""))
    # Which row is which is asked of the database, in the key's own type (a uuid comes back as a UUID).
    src, tgt, tid = tenants.literal(plan, plan.source), tenants.literal(plan, plan.target), I(tenants.TENANT_KEY)
    columns = [sql.SQL("{} = {}").format(tid, src), sql.SQL("{} = {}").format(tid, tgt)] + (
        [I(plan.active_column), I(plan.protected_column)] if features.tenant_flags else []) + (
        [I(plan.settings_column)] if features.tenant_settings else [])
    rows: dict[str, tuple[Any, ...]] = {}
    for is_source, is_target, *row in checker.run(ev, sql.SQL(
            "SELECT {cols} FROM {t} WHERE {id} IN ({src}, {tgt})").format(
            cols=sql.SQL(", ").join(columns), t=T(plan.tenant_table), id=tid, src=src, tgt=tgt)):
        rows.update({tenant: tuple(row) for tenant, hit in ((plan.source, is_source), (plan.target, is_target)) if hit})
    if plan.target not in rows:
        ev.fail(f"tenant {plan.target} does not exist")
        return ev
    found = list(rows[plan.target])
    seen = []
    if features.tenant_flags:
        active, protected = found[0], found[1]
        seen.append(f"active={active}, protected={protected}")
        if not active:
            ev.fail("target tenant is not active")
        if not protected:
            ev.fail("target tenant is not protected")
    if plan.source not in rows:
        ev.fail(f"source tenant {plan.source} does not exist" + (", so the mirrored settings cannot be compared"
                                                                  if features.tenant_settings else ""))
    if features.tenant_settings:
        settings = found[-1] or {}
        source_settings: dict[str, object] = (rows.get(plan.source) or [{}])[-1] or {}
        seen.append(f"settings={json.dumps(settings, sort_keys=True)}")
        for key in plan.mirrored_settings:
            if key not in settings or settings.get(key) != source_settings.get(key):
                ev.fail(f"setting {key}: {settings.get(key)!r}, source has {source_settings.get(key)!r}")
    ev.found = "; ".join(seen) or "exists"
    return ev


def a21(checker: Checker, ev: Evidence) -> Evidence:
    """Catches a tenant boundary that does not hold, which the whole move relies on.

    A planned table without RLS enabled, forced and a policy; an app role that bypasses RLS
    (BYPASSRLS or superuser); or, as the app role on the source, a patient row still visible without
    a share granting it."""
    plan = checker.plan
    ev.about(tenant=plan.source, expected="RLS enabled + forced + policy on every table; app role "
                                          "without BYPASSRLS; 0 patient rows visible on the source")
    rows = checker.run(ev, sql.SQL(
        "SELECT u.n, c.relrowsecurity, c.relforcerowsecurity, (SELECT count(*) FROM pg_policy "
        "WHERE polrelid = c.oid) FROM unnest({}::text[], {}::text[]) u(n, r) JOIN pg_class c ON c.oid = "
        "to_regclass(u.r)").format(sql.Literal(list(plan.table_names)),
                                   sql.Literal([table_regclass(name) for name in plan.table_names])))
    found = {row[0]: row[1:] for row in rows}
    for table in plan.table_names:
        enabled, forced, policies = found.get(table, (False, False, 0))
        for what, ok in (("enabled", enabled), ("forced", forced), ("a policy", policies)):
            if not ok:
                ev.fail(f"{table}: RLS not {what}" if what != "a policy" else f"{table}: no RLS policy", [table])
    role = checker.run(ev, sql.SQL("SELECT rolbypassrls, rolsuper FROM pg_roles WHERE rolname = {}").format(
        sql.Literal(plan.app_role)))
    if not role:
        ev.fail(f"role {plan.app_role} does not exist")
        return ev
    if role[0][0] or role[0][1]:
        ev.fail(f"role {plan.app_role} bypasses RLS (bypassrls={role[0][0]}, superuser={role[0][1]})")
    for rule in plan.tables:
        if rule.owner == "provider":
            continue
        visible = checker.as_app(ev, plan.source, sql.SQL("SELECT {k} FROM {t} t WHERE {w}").format(
            k=key_text(rule.key, "t"), t=T(rule.name), w=checker.patient(rule)))
        if visible is None:
            return ev
        leaked = visible - checker.shared_to(ev, rule, plan.source)
        if leaked:
            ev.fail(f"{rule.name}: {len(leaked)} patient rows visible as {plan.app_role} on {plan.source} without a "
                    f"share granting them", sorted(leaked))
    ev.found = "as expected" if ev.ok else f"{len(ev.problems)} problems"
    return ev
