"""References that cross rows: A4 (foreign keys), A7 (case shares), A9 (keys cached in JSON).

A row can sit on the right tenant and still point at a parent on the wrong one; these follow
every reference the plan declares and excuse only the crossings it allows."""

from __future__ import annotations

from psycopg import sql

from cutover.core.row_keys import key_text
from cutover.suite.checks.base import MAX_ROWS, Checker, Evidence, I, T


def a4(checker: Checker, ev: Evidence, label: str) -> Evidence:
    """Catches a record split across tenants (one reference per test): a child row on another tenant
    than the parent it references, unless a share to the child's tenant allows that crossing."""
    ev.about(subject=label, tenant="all", expected="every child on its parent's tenant "
                                                   "(or a share to the child's tenant, where allowed)")
    for name, child, kind, parent, key, via in checker.links():
        if name == label and kind == "column":
            crossing = checker.link(ev, child, parent, key, via)
            ev.found = f"{crossing} rows on another tenant than their {parent.name} row"
            if crossing:
                ev.fail(f"{crossing} {child.name} rows are not on their {parent.name} row's tenant")
    return ev


def a7(checker: Checker, ev: Evidence) -> Evidence:
    """Catches providers losing or gaining access to cases.

    A share whose case is missing or on another tenant, whose target is missing or its own tenant;
    and, as the app role under RLS for each share target, any case seen beyond exactly the provider's
    own and its shared ones (or one of those not seen)."""
    plan, share = checker.plan, checker.plan.share_table
    ev.about(tenant="each share target", expected="shares on their case's tenant, targeting another "
                                                  "existing tenant; RLS shows each provider its shares")
    if share is None or share.share_target is None:
        ev.fail("the plan has no share table (share_target)")
        return ev
    case_col = next(reference for reference in share.references)
    cases = plan.table(case_col.table)
    bad = checker.run(ev, sql.SQL(
        "SELECT {k} FROM {s} s LEFT JOIN {c} c ON c.{ck} = s.{cc} LEFT JOIN {tt} t ON t.id = s.{st} "
        "WHERE c.{ck} IS NULL OR c.{ten} <> s.{ten} OR t.id IS NULL OR s.{st} = s.{ten} "
        "ORDER BY 1 LIMIT {n}").format(
        k=key_text(share.key, "s"), s=T(share.name), c=T(cases.name), ck=I(cases.key[0]), cc=I(case_col.column),
        tt=T(plan.tenant_table), st=I(share.share_target), ten=I(plan.tenant_column), n=sql.Literal(MAX_ROWS)))
    if bad:
        ev.fail(f"{len(bad)}{'+' if len(bad) == MAX_ROWS else ''} shares do not resolve (case missing or on "
                f"another tenant, target missing or the share's own tenant)", [row[0] for row in bad])
    if not plan.features.row_level_security:  # what a provider sees is the application's to filter, not RLS's
        ev.found = ("shares resolve" if ev.ok else f"{len(ev.problems)} problems") + (
            "; per-provider visibility not applicable: the plan declares no row-level security")
        return ev
    targets = [row[0] for row in checker.run(ev, sql.SQL("SELECT DISTINCT {st}::text FROM {s} ORDER BY 1").format(
        st=I(share.share_target), s=T(share.name)))]
    seen = []
    for tenant in targets:
        expected = {row[0] for row in checker.run(ev, sql.SQL(
            "SELECT c.{ck}::text FROM {c} c WHERE c.{ten} = {t} OR EXISTS (SELECT 1 FROM {s} s WHERE s.{cc} = "
            "c.{ck} AND s.{st} = {t})").format(ck=I(cases.key[0]), c=T(cases.name), ten=I(plan.tenant_column),
                                               t=checker.literal(tenant), s=T(share.name), cc=I(case_col.column),
                                               st=I(share.share_target)))}
        visible = checker.as_app(ev, tenant, sql.SQL("SELECT {ck}::text FROM {c}").format(ck=I(cases.key[0]),
                                                                                              c=T(cases.name)))
        if visible is None:
            return ev
        seen.append(f"{tenant} sees {len(visible)}")
        if visible != expected:
            ev.fail(f"as {plan.app_role} with {plan.tenant_setting}={tenant}: {len(visible)} cases visible, expected "
                    f"{len(expected)}", sorted(visible ^ expected))
    ev.found = "; ".join(seen) if ev.ok else f"{len(ev.problems)} problems"
    return ev


def a9(checker: Checker, ev: Evidence) -> Evidence:
    """Catches a replayed request that would resolve on the wrong tenant: an idempotency key whose cached
    response names a case on another tenant (or a missing one), or a patient-route key off the target."""
    plan = checker.plan
    ev.about(tenant=plan.target, expected="keys on their cached case's tenant; patient-route keys on "
                                          "the target")
    for _label, child, kind, parent, key, via in checker.links():
        if kind != "json":
            continue
        crossing = checker.link(ev, child, parent, key, via)
        if crossing:
            ev.fail(f"{crossing} {child.name} rows name a {parent.name} row on another tenant (or a missing one)")
        if child.owner == "classified":
            off_target = checker.sample(ev, child, sql.SQL("{} <> {} AND {}").format(
                checker.tenant(), checker.literal(plan.target), checker.patient(child)))
            if off_target:
                ev.fail(f"{off_target} patient-route {child.name} rows are not on {plan.target}")
    ev.found = "none" if ev.ok else f"{len(ev.problems)} problems"
    return ev
