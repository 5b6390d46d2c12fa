"""Rows on the tenant their owner says: A3 (source), A6 (target), A8 (classified events), A20 (stragglers).

Each is one ownership predicate, written again from the plan, counted on one tenant."""

from __future__ import annotations

from psycopg import sql

from cutover.suite.checks.base import Checker, Evidence, I


def a3(c: Checker, ev: Evidence, table: str) -> Evidence:
    """Catches patient-owned rows left on the source (one table per test): a patient the new tenant
    cannot see, from an ownership rule the cutover missed or a table it skipped."""
    rule, p = c.plan.table(table), c.plan
    ev.about(subject=table, tenant=p.source, expected="0 patient-owned rows")
    n = c.sample(ev, rule, sql.SQL("{} = {} AND {}").format(c.tenant(), c.literal(p.source),
                                                                c.patient(rule)))
    ev.found = f"{n} patient-owned rows"
    if n:
        ev.fail(f"{n} patient-owned {table} rows are still on {p.source}")
    return ev


def a6(c: Checker, ev: Evidence, table: str) -> Evidence:
    """Catches provider data dragged onto the patient tenant, a data leak (one table per test): provider
    staff and organizations, profiles, quotes, provider-classified events or provider-route keys."""
    rule, p = c.plan.table(table), c.plan
    ev.about(subject=table, tenant=p.target, expected="0 provider-owned rows")
    if rule.owner == "provider":
        where: sql.Composable = sql.SQL("TRUE")
    elif rule.owner == "column":
        where = sql.SQL("NOT ({})").format(c.patient(rule))
    elif rule.owner == "classified":
        where = sql.SQL("t.{} = ANY({})").format(I(rule.column or ""), sql.Literal(c.values(rule, "provider")))
    else:
        where = sql.SQL("FALSE")
    n = c.sample(ev, rule, sql.SQL("{} = {} AND {}").format(c.tenant(), c.literal(p.target), where))
    held = c.held(ev, table, "provider")  # the target's own, there before the cutover: no fault
    own = f", {held} of them held before the cutover" if held else ""
    if held:
        ev.expected = f"no provider-owned row but the {held} the target held before the cutover (report baseline)"
    ev.found = f"{n} provider-owned rows{own}"
    if n > held:
        ev.fail(f"{n} provider-owned {table} rows are on {p.target}{own}")
    return ev


def a8(c: Checker, ev: Evidence) -> Evidence:
    """Catches incomplete ownership rules for events: an event type no classification names (the
    cutover could not know whose it is), a patient event left on the source, a provider event moved."""
    p = c.plan
    expected = "every type classified; no patient type on the source; no provider type on the target"
    event_table = p.features.event_table or (None if p.audit.own else p.audit.table)
    if event_table is None:  # the plan names no events table of the application's: nothing here to classify
        ev.about(subject=p.audit.table, tenant=f"{p.source}, {p.target}", expected=expected)
        ev.fail(f"no events table to check: the plan keeps the cutover's trail in {p.audit.table} ([audit] own = "
                f"true); an unchecked {ev.check} is not a pass")
        return ev
    rule = p.table(event_table)
    ev.about(subject=rule.name, tenant=f"{p.source}, {p.target}", expected=expected)
    known = sorted(p.classifications.get(rule.classification or "", {}))
    col = I("t", rule.column or "")
    for what, where in (
        ("unclassified", sql.SQL("{c} IS NULL OR NOT ({c} = ANY({k}))").format(c=col, k=sql.Literal(known))),
        (f"patient-classified on {p.source}", sql.SQL("{} = {} AND {} = ANY({})").format(
            c.tenant(), c.literal(p.source), col, sql.Literal(c.values(rule, "patient")))),
        (f"provider-classified on {p.target}", sql.SQL("{} = {} AND {} = ANY({})").format(
            c.tenant(), c.literal(p.target), col, sql.Literal(c.values(rule, "provider")))),
    ):
        held = c.held(ev, rule.name, "provider") if what.startswith("provider") else 0
        n = c.sample(ev, rule, where)
        if n > held:  # the target's own provider events, there before the cutover, are no fault
            ev.fail(f"{n} {what} {rule.name} rows" + (f", {held} of them held before the cutover" if held else ""))
    ev.found = "none" if ev.ok else f"{len(ev.problems)} problems"
    return ev


def a20(c: Checker, ev: Evidence) -> Evidence:
    """Catches late writes that landed on the source after the cutover (an app still writing to it):
    the sweep's own predicate in count mode, read-only, so the window can run it without moving a row."""
    p = c.plan
    ev.about(tenant=p.source, expected="0 rows for the sweep predicate (count mode, read-only)")
    total = 0
    for rule in p.tables:
        if rule.owner == "provider":
            continue
        n = c.sample(ev, rule, sql.SQL("{} = {} AND {}").format(c.tenant(), c.literal(p.source),
                                                                    c.patient(rule)))
        if n:
            ev.fail(f"{n} {rule.name} stragglers on {p.source}")
        total += n
    ev.found = f"{total} rows"
    return ev
