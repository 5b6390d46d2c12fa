"""Rows on the tenant their owner says: A3 (source), A6 (target), A8 (classified events), A20 (stragglers).

Each is one ownership predicate, written again from the plan, counted on one tenant."""

from __future__ import annotations

from psycopg import sql

from cutover.suite.checks.base import Checker, Evidence, I


def a3(checker: Checker, ev: Evidence, table: str) -> Evidence:
    """Catches patient-owned rows left on the source (one table per test): a patient the new tenant
    cannot see, from an ownership rule the cutover missed or a table it skipped."""
    rule, plan = checker.plan.table(table), checker.plan
    ev.about(subject=table, tenant=plan.source, expected="0 patient-owned rows")
    left = checker.sample(ev, rule, sql.SQL("{} = {} AND {}").format(
        checker.tenant(), checker.literal(plan.source), checker.patient(rule)))
    ev.found = f"{left} patient-owned rows"
    if left:
        ev.fail(f"{left} patient-owned {table} rows are still on {plan.source}")
    return ev


def a6(checker: Checker, ev: Evidence, table: str) -> Evidence:
    """Catches provider data dragged onto the patient tenant, a data leak (one table per test): provider
    staff and organizations, profiles, quotes, provider-classified events or provider-route keys."""
    rule, plan = checker.plan.table(table), checker.plan
    ev.about(subject=table, tenant=plan.target, expected="0 provider-owned rows")
    if rule.owner == "provider":
        where: sql.Composable = sql.SQL("TRUE")
    elif rule.owner == "column":
        where = sql.SQL("NOT ({})").format(checker.patient(rule))
    elif rule.owner == "classified":
        where = sql.SQL("t.{} = ANY({})").format(I(rule.column or ""), sql.Literal(checker.values(rule, "provider")))
    else:
        where = sql.SQL("FALSE")
    provider_rows = checker.sample(ev, rule, sql.SQL("{} = {} AND {}").format(
        checker.tenant(), checker.literal(plan.target), where))
    held = checker.held(ev, table, "provider")  # the target's own, there before the cutover: no fault
    own = f", {held} of them held before the cutover" if held else ""
    if held:
        ev.expected = f"no provider-owned row but the {held} the target held before the cutover (report baseline)"
    ev.found = f"{provider_rows} provider-owned rows{own}"
    if provider_rows > held:
        ev.fail(f"{provider_rows} provider-owned {table} rows are on {plan.target}{own}")
    return ev


def a8(checker: Checker, ev: Evidence) -> Evidence:
    """Catches incomplete ownership rules for events: an event type no classification names (the
    cutover could not know whose it is), a patient event left on the source, a provider event moved."""
    plan = checker.plan
    expected = "every type classified; no patient type on the source; no provider type on the target"
    event_table = plan.features.event_table or (None if plan.audit.own else plan.audit.table)
    if event_table is None:  # the plan names no events table of the application's: nothing here to classify
        ev.about(subject=plan.audit.table, tenant=f"{plan.source}, {plan.target}", expected=expected)
        ev.fail(f"no events table to check: the plan keeps the cutover's trail in {plan.audit.table} ([audit] own = "
                f"true); an unchecked {ev.check} is not a pass")
        return ev
    rule = plan.table(event_table)
    ev.about(subject=rule.name, tenant=f"{plan.source}, {plan.target}", expected=expected)
    known = sorted(plan.classifications.get(rule.classification or "", {}))
    col = I("t", rule.column or "")
    for what, where in (
        ("unclassified", sql.SQL("{c} IS NULL OR NOT ({c} = ANY({k}))").format(c=col, k=sql.Literal(known))),
        (f"patient-classified on {plan.source}", sql.SQL("{} = {} AND {} = ANY({})").format(
            checker.tenant(), checker.literal(plan.source), col, sql.Literal(checker.values(rule, "patient")))),
        (f"provider-classified on {plan.target}", sql.SQL("{} = {} AND {} = ANY({})").format(
            checker.tenant(), checker.literal(plan.target), col, sql.Literal(checker.values(rule, "provider")))),
    ):
        held = checker.held(ev, rule.name, "provider") if what.startswith("provider") else 0
        found = checker.sample(ev, rule, where)
        if found > held:  # the target's own provider events, there before the cutover, are no fault
            ev.fail(f"{found} {what} {rule.name} rows" + (f", {held} of them held before the cutover" if held else ""))
    ev.found = "none" if ev.ok else f"{len(ev.problems)} problems"
    return ev


def a20(checker: Checker, ev: Evidence) -> Evidence:
    """Catches late writes that landed on the source after the cutover (an app still writing to it):
    the sweep's own predicate in count mode, read-only, so the window can run it without moving a row."""
    plan = checker.plan
    ev.about(tenant=plan.source, expected="0 rows for the sweep predicate (count mode, read-only)")
    total = 0
    for rule in plan.tables:
        if rule.owner == "provider":
            continue
        stragglers = checker.sample(ev, rule, sql.SQL("{} = {} AND {}").format(
            checker.tenant(), checker.literal(plan.source), checker.patient(rule)))
        if stragglers:
            ev.fail(f"{stragglers} {rule.name} stragglers on {plan.source}")
        total += stragglers
    ev.found = f"{total} rows"
    return ev
