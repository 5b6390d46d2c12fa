"""The database against the cutover's own report: A5 (row conservation) and A10 (allow-list exact).

The only checks that read the report, so they alone can tell a cutover that moved the wrong
rows from one that moved the right ones: everything else looks at the end state only."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from psycopg import sql

from cutover.core import audit, db
from cutover.core.plan import TableRule
from cutover.core.row_keys import key_json, key_label, key_order, key_records, key_text, listed_keys, listed_rows
from cutover.suite.checks.base import MAX_ROWS, Checker, Evidence, I, T


def a5(checker: Checker, ev: Evidence) -> Evidence:
    """Catches rows lost or duplicated by the move, which the end state alone cannot show.

    Per table, the total against the report's baseline plus what the cutover wrote (its triggers' rows
    too) and swept; per tenant, the source's and the target's counts against the moved counts; every
    other tenant untouched."""
    plan = checker.plan
    ev.about(tenant=f"{plan.source}, {plan.target}", expected="totals = baseline + written (+ rows written by "
                                                             "triggers); per-tenant deltas = moved (+ sweeps)")
    report = checker.committed_report(ev)
    if report is None:
        return ev
    moved = dict(report.get("moved") or {})
    swept = {table: sum((sweep.get("moved") or {}).get(table, 0) for sweep in report.get("sweeps") or [])
             for table in plan.table_names}
    # Rows the plan's written_by triggers wrote during the moves and the sweeps' moves, per table and tenant,
    # where they landed.
    triggered: dict[str, Counter[str]] = {}
    for run in [report, *(report.get("sweeps") or [])]:
        for table, per in (run.get("triggered") or {}).items():
            triggered.setdefault(table, Counter()).update({tenant: int(count) for tenant, count in per.items()})
    for table in plan.table_names:
        by_trigger = triggered.get(table, Counter())
        now = {row[0]: int(row[1]) for row in checker.run(ev, sql.SQL(
            "SELECT {c}::text, count(*) FROM {t} GROUP BY 1").format(c=I(plan.tenant_column), t=T(table)))}
        base = {tenant: int(count) for tenant, count in (report["baseline"].get(table) or {}).items()}
        written = int((report.get("written") or {}).get(table, 0))
        if table == plan.audit.table:  # each sweep writes one `swept` event (found by the row mixes)
            written += len(report.get("sweeps") or [])
        # Stragglers arrived on the source after the baseline and were swept to the target.
        want_total = sum(base.values()) + written + swept[table] + sum(by_trigger.values())
        if sum(now.values()) != want_total:
            ev.fail(f"{table}: {sum(now.values())} rows, expected {want_total} (baseline {sum(base.values())} "
                    f"+ written {written} + swept {swept[table]}"
                    + (f" + by triggers {sum(by_trigger.values())})" if by_trigger else ")"))
        want_source = base.get(plan.source, 0) - moved.get(table, 0) + by_trigger.get(plan.source, 0)
        if now.get(plan.source, 0) != want_source:
            ev.fail(f"{table}: {now.get(plan.source, 0)} on {plan.source}, expected {want_source}")
        want_target = (base.get(plan.target, 0) + moved.get(table, 0) + written + swept[table]
                       + by_trigger.get(plan.target, 0))
        if now.get(plan.target, 0) != want_target:
            ev.fail(f"{table}: {now.get(plan.target, 0)} on {plan.target}, expected {want_target}")
        for tenant, count in now.items():
            if tenant not in (plan.source, plan.target) and count != base.get(tenant, 0) + by_trigger.get(tenant, 0):
                ev.fail(f"{table}: {count} on {tenant}, expected {base.get(tenant, 0) + by_trigger.get(tenant, 0)} "
                        f"(untouched but for its triggers' rows)")
    ev.found = "as expected" if ev.ok else f"{len(ev.problems)} mismatches"
    return ev


def a10(checker: Checker, ev: Evidence) -> Evidence:
    """Catches the target gaining rows the plan never listed, or lacking ones it did.

    The patient rows on the target against the report's allow-list plus the sweeps, key for key; and a
    report that is not the committed run's (no cutover.completed event agreeing with it)."""
    plan = checker.plan
    ev.about(tenant=plan.target, expected="patient-owned rows on the target = allow-list + sweeps; "
                                          "report = cutover.completed event")
    report = checker.committed_report(ev)
    if report is None:
        return ev
    trail = plan.audit
    events = audit.as_events(checker.run(ev, audit.events_query(plan, [trail.completed],
                                                                run_id=str(report.get("run_id")))))
    if not events:
        ev.fail(f"no {trail.completed} event for the report's run {report.get('run_id')}: wrong report or database")
    else:
        event = events[-1].payload
        for key in ("actor", "baseline", "moved", "committed_at", "held_on_target"):
            if event.get(key) != report.get(key):
                ev.fail(f"report {key} differs from the {trail.completed} event")
    for rule in plan.tables:
        if rule.owner == "provider":
            continue
        _a10_table(checker, ev, rule, list(listed_keys(report, rule.name)))
    ev.found = "exact" if ev.ok else f"{len(ev.problems)} problems"
    return ev


def _a10_table(checker: Checker, ev: Evidence, rule: TableRule, listed: list[Any]) -> None:
    """One table's patient rows on the target against the report's keys, each key kept whole.

    A digest over the keys' JSON (as ``to_jsonb`` renders them, which is how the report holds
    them) answers the usual "exact" without shipping the rows; any difference is then settled in
    the database, in the key columns' own types, and names the rows.
    """
    plan = checker.plan
    where = sql.SQL("{} = {} AND {}").format(checker.tenant(), checker.literal(plan.target), checker.patient(rule))
    texts = sorted(json.dumps(key, ensure_ascii=False) for key in listed)
    digest = hashlib.md5("\n".join(texts).encode(), usedforsecurity=False).hexdigest()
    key_j = sql.SQL("{}::text").format(key_json(rule.key, "t"))
    count, found_digest = checker.run(ev, sql.SQL(
        "SELECT count(*), md5(coalesce(string_agg({j}, E'\\n' ORDER BY {j} COLLATE \"C\"), '')) "
        "FROM {t} t WHERE {w}").format(j=key_j, t=T(rule.name), w=where))[0]
    if int(count) == len(listed) and found_digest == digest:
        return
    held = checker.held(ev, rule.name, "patient")  # the target's own patient rows, there before the cutover
    try:
        records = key_records(rule.key, listed)
    except ValueError as exc:
        ev.fail(f"{rule.name}: the report's allow-list does not hold this plan's key ({exc})")
        return
    dupes = len(texts) - len(set(texts))
    query = sql.SQL(
        "WITH listed AS ({listed}), here AS (SELECT {k} FROM {t} t WHERE {w}), "
        "extra AS (SELECT * FROM here EXCEPT SELECT * FROM listed), "
        "missing AS (SELECT * FROM listed EXCEPT SELECT * FROM here) "
        "SELECT (SELECT count(*) FROM extra), (SELECT count(*) FROM missing), "
        "ARRAY(SELECT {ke} FROM extra e ORDER BY {oe} LIMIT {n}), "
        "ARRAY(SELECT {km} FROM missing m ORDER BY {om} LIMIT {n})").format(
        listed=listed_rows(rule.name, rule.key, sql.Literal(records)), k=key_order(rule.key, "t"),
        t=T(rule.name), w=where, ke=key_text(rule.key, "e"), oe=key_order(rule.key, "e"),
        km=key_text(rule.key, "m"), om=key_order(rule.key, "m"), n=sql.Literal(MAX_ROWS))
    ev.queries.append(f"(typed comparison of {len(listed)} reported {rule.name} keys with the target's rows)")
    extra, missing, extra_rows, missing_rows = db.one(checker.conn, query)
    if extra != held or missing:
        own = f" ({held} held by the target before the cutover)" if held else ""
        ev.fail(f"{rule.name}: {extra} patient rows on the target not in the report{own}, {missing} reported rows "
                f"not there", list(extra_rows) + list(missing_rows))
    if dupes:
        twice = Counter(texts)
        ev.fail(f"{rule.name}: the report lists {dupes} keys more than once",
                sorted({key_label(key) for key in listed if twice[json.dumps(key, ensure_ascii=False)] > 1}))
