"""After the commit: the sweep (lost writes that landed on the source) and the reverse migration.

Both run the same guarded transaction as the cutover (timeouts, advisory lock, table locks,
verification before commit) and record themselves as audit events, so the database alone can
tell what moved, and a lost report can be rebuilt.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import zip_longest
from typing import Any, cast

import psycopg
from psycopg import sql

from cutover.core import audit, db, live_schema, tenants
from cutover.core.db import Connection
from cutover.core.errors import CutoverError
from cutover.core.exit_codes import ExitCode
from cutover.core.plan import Plan, TableRule, table_regclass, table_sql
from cutover.core.redact import mask_url
from cutover.core.row_keys import RowKey, SweepRecord, key_equal, key_json, key_label, key_order
from cutover.reference import engine, ownership, preflight, reports
from cutover.reference.engine import Progress, Run, RunFailed, Timeouts, _no_progress


def _require_cut_over(conn: Connection, plan: Plan, what: str) -> dict[str, Any]:
    last = preflight.last_audit_run(conn, plan)
    if last is None or last["kind"] != plan.audit.completed:
        state = "was reversed" if last is not None else "has not been committed"
        raise RunFailed(f"{what} refused: the cutover {state} on this database; nothing changed", ExitCode.BLOCKED)
    return last


def sweep(url: str, plan: Plan, actor: str, timeouts: Timeouts, progress: Progress = _no_progress,
          cutover_run_id: str | None = None) -> SweepRecord | None:
    """Move patient-owned rows that landed on the source after the commit; ``None`` if there were none.

    With ``cutover_run_id`` (the run of the report the sweep is appended to; check the report with
    :func:`check_report` first) it is refused unless that run is the database's committed cutover.
    """
    run = Run("sweep", plan, actor, 6 + (1 if plan.refresh_views else 0), progress)
    record: dict[str, Any] = {"run_id": run.run_id, "actor": actor, "kind": "sweep", "database": mask_url(url),
                              "started_at": run.started_at, "commit_status": "rolled_back"}
    with engine.guarded(url, run, record, timeouts) as conn:
        plan = run.plan = tenants.typed(conn, plan)
        engine.open_steps(run, conn, plan, timeouts)
        pf = _sweep_preflight(run, conn, plan, record, cutover_run_id)
        ids: dict[str, str] = {}
        found: dict[str, int] = {}
        with run.step("find stragglers on the source") as info:
            baseline = engine.counts(conn, plan)
            for rule in plan.moving:
                ids[rule.name] = engine.id_table(rule, "sweep")
                found[rule.name] = engine.build_owned_ids(conn, plan, rule, plan.source, ids[rule.name])
            info["rows"] = sum(found.values())
        if not any(found.values()):
            return None
        with run.step("move stragglers to the target") as info:
            moved = engine.move_listed(conn, plan, ids, plan.source, plan.target, pf.deferred)
            carried = _carry_written(conn, plan, ids, moved, plan.source, plan.target, pf.deferred)
            info["rows"] = sum(moved.values()) + sum(carried.values())
        engine.refresh_views(run, conn, plan)
        with run.step(f"verify, write {plan.audit.swept}"):
            engine.check_tenant_keys(conn, pf.deferred)
            triggered: dict[str, dict[str, int]] = {}
            engine.verify(conn, plan, "sweep", baseline, moved, {}, ids, plan.source, plan.target,
                          plan.fired(moved), triggered, listed=found)
            # The triggers' patient rows on the target are listed with the swept ones, as the execute lists
            # its own: A10 and the reverse then find every patient row the cutover and its sweeps put there.
            written_here = {t: engine.list_written(conn, plan, plan.table(t), ids[t], plan.target)
                            for t in triggered if t in ids}
            record.update(moved={k: v for k, v in moved.items() if v}, committed_at=datetime.now(UTC).isoformat())
            if triggered:
                record["triggered"] = triggered
            moved_ids = {t: ids[t] for t in ids if moved[t] or written_here.get(t) or carried.get(t)}
            audit.write_event(conn, plan, plan.audit.swept, sql.SQL("{} || jsonb_build_object('ids', {})").format(
                sql.Literal(json.dumps({k: record[k] for k in ("run_id", "cutover_run_id", "actor", "started_at",
                                                               "committed_at", "moved", "triggered") if k in record})),
                engine.ids_json(plan, moved_ids)))
            record["ids"] = {t: [r[0] for r in conn.execute(sql.SQL("SELECT {j} FROM {i} ORDER BY {o}").format(
                j=key_json(plan.table(t).key), i=ownership.ident(ids[t]), o=key_order(plan.table(t).key))).fetchall()]
                for t in moved_ids}
            engine.commit(conn, url, plan, run.run_id, plan.audit.swept)
        record["commit_status"] = "committed"
    return cast(SweepRecord, record)  # what report["sweeps"] holds, plus the command's own fields


def _sweep_preflight(run: Run, conn: Connection, plan: Plan, record: dict[str, Any],
                     cutover_run_id: str | None) -> preflight.Preflight:
    """The sweep's first step: it only makes sense after the committed cutover (of the report it is
    appended to, when given), and it stops on the same blockers as execute, but the cut-over state."""
    with run.step("check the cutover is committed and nothing blocks the sweep") as info:
        last = _require_cut_over(conn, plan, "sweep")
        if cutover_run_id is not None:
            last = _require_report_of(conn, plan, {"run_id": cutover_run_id}, "sweep")
        record["cutover_run_id"] = last.get("run_id")
        pf = preflight.run(conn, plan, planned=False)
        blockers = [b for b in pf.blockers if b.code != "already-cut-over"]
        info["rows"] = len(blockers)
        if blockers:
            raise RunFailed("sweep BLOCKED: " + " | ".join(b.line() for b in blockers), ExitCode.BLOCKED)
        engine.defer_tenant_keys(conn, pf.deferred)
    return pf


def _carry_written(conn: Connection, plan: Plan, ids: dict[str, str], moved: Mapping[str, int], source: str,
                   target: str, keys: list[live_schema.TenantKey]) -> dict[str, int]:
    """Move to ``target`` the patient rows that declared triggers wrote on ``source`` during this move, and
    add them to the id tables; rows carried per table.

    A trigger may write on the tenant a row leaves (``OLD.tenant_id``): rows no list held when the
    sweep's or the reverse's rows were listed, which its verification would find left behind. The
    execute's moves take them by predicate (the written table moves after its writer). Counted as the
    trigger's rows where they end, never as moved: the sweep's moved rows are ones A5 counts as
    written since the baseline, which these were not.
    """
    return {name: engine.move_listed(conn, plan, {name: ids[name]}, source, target, keys)[name]
            for name, fired in plan.fired(moved).items()
            if fired and name in ids and engine.list_written(conn, plan, plan.table(name), ids[name], source)}


def listed(conn: Connection, plan: Plan, rule: TableRule, run_id: str) -> sql.Composable:
    """SELECT of the rows run ``run_id`` and its sweeps moved, typed like ``rule``'s key columns, read
    from the database's audit events (:func:`cutover.core.audit.recorded_keys`), never from the report file.

    Each key value is cast to its column's own type (named from the catalog, as identifiers), so it
    goes through the column's input function and every comparison below is in the key's own type.
    A cast, not ``jsonb_populate_record`` on the table's row type: that built a whole row per key,
    3.7 s per million keys against 0.7 s, under the reverse's locks.
    """
    rows = conn.execute("SELECT a.attname, n.nspname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = "
                        "a.atttypid JOIN pg_namespace n ON n.oid = t.typnamespace WHERE a.attrelid = "
                        "to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
                        (table_regclass(rule.name),)).fetchall()
    types = {name: sql.Identifier(nsp, typ) for name, nsp, typ in rows}
    k = sql.Identifier("s", "k")
    values = [sql.SQL("({} #>> '{{}}')::{} AS {}").format(k, types[rule.key[0]], sql.Identifier(rule.key[0]))]
    if len(rule.key) > 1:
        values = [sql.SQL("({} ->> {})::{} AS {}").format(k, sql.Literal(i), types[c], sql.Identifier(c))
                  for i, c in enumerate(rule.key)]
    return sql.SQL("SELECT {values} FROM ({keys}) s").format(
        values=sql.SQL(", ").join(values), keys=audit.recorded_keys(plan, rule.name, run_id))


COMPARE_BOUND = 100_000
"""The most keys a comparison holds that have not matched yet: a report written by the execute or
rebuilt from the database lists its keys in the audit parts' order, so they match as they come."""


@dataclass
class KeyDiff:
    """Two streams of keys compared as multisets: how many each held and what only one of them had."""

    counts: tuple[int, int]
    only_left: list[RowKey] = field(default_factory=list)
    only_right: list[RowKey] = field(default_factory=list)
    overflowed: bool = False  # more than the bound differed: only the counts are exact

    @property
    def agrees(self) -> bool:
        return self.counts[0] == self.counts[1] and not (self.only_left or self.only_right or self.overflowed)


def _hashable(value: Any) -> Any:
    """A key as a dict key: a composite as a tuple; a boolean kept apart from the number 1."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return (type(value) is bool, value)


def compare_keys(left: Iterable[str], right: Iterable[str], bound: int = COMPARE_BOUND) -> KeyDiff:
    """Compare two streams of keys (JSON text, as the report and the audit parts hold them), read
    side by side: equal texts match at once; the rest wait, parsed, for their match from the other
    side. Memory holds only what has not matched yet, at most ``bound`` keys: never a whole list,
    however many millions of keys there are. Keys compare as JSON values (``"2"`` is not ``2``)."""
    waiting: tuple[dict[Any, list[Any]], dict[Any, list[Any]]] = ({}, {})
    counts = [0, 0]
    overflowed = False
    for pair in zip_longest(left, right):
        if pair[0] is not None and pair[0] == pair[1]:
            counts[0] += 1
            counts[1] += 1
            continue
        for side, text in enumerate(pair):
            if text is None:
                continue
            counts[side] += 1
            if overflowed:
                continue
            value = json.loads(text)
            key, other = _hashable(value), waiting[1 - side]
            if key in other:
                other[key].pop()
                if not other[key]:
                    del other[key]
            else:
                waiting[side].setdefault(key, []).append(value)
                overflowed = sum(map(len, waiting)) > bound
    if overflowed:
        return KeyDiff((counts[0], counts[1]), _flat(waiting[0], bound), _flat(waiting[1], bound), True)
    return KeyDiff((counts[0], counts[1]), _flat(waiting[0], bound), _flat(waiting[1], bound))


def _flat(waiting: dict[Any, list[Any]], bound: int) -> list[Any]:
    return [v for values in waiting.values() for v in values][:bound]


def _report_texts(cut_report: Mapping[str, Any], table: str) -> Iterable[str]:
    """A table's allow-list as the report holds it, as JSON text, streamed from the file when it can be."""
    allow = cut_report.get("allow_list") or {}
    if isinstance(allow, reports.AllowList):
        return allow.texts(table) if table in allow else []
    return (json.dumps(k) for k in allow.get(table, []))


def _sample(keys: list[Any]) -> str:
    if not keys:
        return "none"
    shown = ", ".join(key_label(k) for k in keys[:SAMPLE])
    return shown + (f" and {len(keys) - SAMPLE} more" if len(keys) > SAMPLE else "")


SAMPLE = 3


def require_recorded(conn: Connection, plan: Plan, cut_report: Mapping[str, Any], what: str) -> None:
    """Refuse a report that is not the database's last committed cutover, or whose allow-list or
    sweeps disagree with the audit events; the refusal names each table, the counts and a few keys.

    The reverse takes its rows from the audit events anyway (:func:`listed`); refusing a report that
    disagrees keeps an edited or stale file from being the record of the window (a sweep appends to
    it, the checks A5 and A10 read it). Streamed: neither side is held in memory whole.
    """
    plan = tenants.typed(conn, plan)
    last = _require_report_of(conn, plan, cut_report, what)
    run_id = str(last["run_id"])
    stored, ids = reports.rebuild(conn, plan, run_id)
    problems: list[tuple[str, str]] = []  # (one-line summary, detail)
    allow = cut_report.get("allow_list") or {}
    # The allow-list holds the moved rows and the patient rows the written_by triggers wrote on the target.
    moved = Counter(stored.get("moved") or {}) + Counter(stored.get("listed_written") or {})
    parts = audit.part_keys(conn, plan, run_id) if isinstance(allow, reports.AllowList) else {}
    for table in list(ids) + [t for t in allow if t not in ids]:
        same = None
        if isinstance(allow, reports.AllowList) and table in allow and table in ids:  # byte for byte first
            same = allow.same_text(table, audit.part_texts(conn, plan, parts.get(table, [])))
        diff = KeyDiff((same, same)) if same is not None else compare_keys(_report_texts(cut_report, table),
                                                                          ids.get(table, []))
        if diff.counts[1] != moved.get(table, 0) and table in ids:
            raise RunFailed(f"{what} refused: the database's {plan.audit.allow_list_part} events of run {run_id} list "
                            f"{diff.counts[1]} {table} keys but its {plan.audit.completed} event says "
                            f"{moved.get(table, 0)} rows moved; the audit trail was altered, nothing changed",
                            ExitCode.BLOCKED)
        if not diff.agrees:
            problems.append(_difference(f"allow_list.{table}", diff))
    recorded = {str(s.get("run_id")): s for s in stored.get("sweeps") or []}
    for swept in cut_report.get("sweeps") or []:
        mine = recorded.get(str(swept.get("run_id")))
        if mine is None:
            problems.append((f"sweep {swept.get('run_id')}: not in the database",
                             f"sweep {swept.get('run_id')}: no {plan.audit.swept} event of run {run_id} has this id"))
            continue
        theirs, ours = swept.get("ids") or {}, mine.get("ids") or {}
        for table in sorted(set(theirs) | set(ours)):
            diff = compare_keys((json.dumps(k) for k in theirs.get(table, [])),
                                (json.dumps(k) for k in ours.get(table, [])))
            if not diff.agrees:
                problems.append(_difference(f"sweep {swept.get('run_id')} {table}", diff))
    if problems:
        failure = RunFailed(
            f"{what} refused: the report is not what the database recorded for run {run_id}: "
            + "; ".join(p[0] for p in problems) + "; pass the report that run wrote, or rebuild it with 'cutover "
            "report --rebuild --report-path NEW'; nothing changed", ExitCode.BLOCKED)
        failure.detail = tuple(p[1] for p in problems)
        raise failure


def _difference(where: str, diff: KeyDiff) -> tuple[str, str]:
    """A difference as the refusal's summary part and its detail line."""
    left, right = diff.counts
    more = "more than " if diff.overflowed else ""
    summary = (f"{where}: {left} keys in the report, {right} in the database ({more}{len(diff.only_left)} only "
               f"in the report, {more}{len(diff.only_right)} only in the database)")
    detail = f"{where}: only in the report: {_sample(diff.only_left)}; only in the database: {_sample(diff.only_right)}"
    return summary, detail


def _require_report_of(conn: Connection, plan: Plan, cut_report: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Sweep and reverse act on one committed cutover: the report must be the database's own last one."""
    last = _require_cut_over(conn, plan, what)
    if last.get("run_id") != cut_report.get("run_id"):
        raise RunFailed(f"{what} refused: the report is run {cut_report.get('run_id')} but the database's "
                        f"committed cutover is run {last.get('run_id')}; pass that run's report (or rebuild "
                        f"it with 'cutover report --rebuild'); nothing changed", ExitCode.BLOCKED)
    return last


def check_report(url: str, plan: Plan, timeouts: Timeouts, cut_report: Mapping[str, Any], what: str) -> None:
    """:func:`require_recorded` in a READ ONLY transaction of its own, before any lock is taken: the
    comparison reads every key, and writers must not wait for it."""
    try:
        with db.connection(url, read_only=True, application_name=f"cutover-{what}-check") as conn:
            engine.set_timeouts(conn, timeouts)
            require_recorded(conn, plan, cut_report, what)
            conn.rollback()
    except psycopg.Error as exc:
        raise RunFailed(f"{what} refused: reading the audit trail failed: {engine._describe(exc, timeouts)}; "
                        f"nothing changed") from None
    except CutoverError as exc:
        if isinstance(exc, RunFailed):
            raise
        raise RunFailed(f"{what} refused: {exc}; nothing changed", ExitCode.BLOCKED) from None


def _reverse_keys(plan: Plan, rule: TableRule, listed: sql.Composable, held: sql.Composable | None) -> sql.Composable:
    """The keys of the rows the reverse moves back: on the target and patient-owned, or in the report;
    never the target's own (``held``: the patient rows it held before the cutover, as recorded then;
    ``None`` when it held none: an anti-join with an empty list still visits it once per row, a
    quarter of a second for messages and events at scale 20).

    ``listed`` names a relation of the report's keys typed like the table's key columns: the reverse's
    temp table, or the read-only count's CTE. One selection for both, so the count is what moves.
    Two disjoint halves, patient-owned (``own``) and listed but not (``own IS NOT TRUE``, a NULL
    classifier included), joined by UNION ALL: each row once with nothing to de-duplicate, in the
    table's order. Not ``owned OR EXISTS (listed)``: under an OR the EXISTS is a subplan run per row,
    hashed only while the report's keys fit in work_mem, else a scan of them per row (163 s at scale
    20). Not a UNION of the owned rows and a join with every listed key either: it sorted (or hashed)
    every row twice over, on disk past work_mem, and handed the move its keys in the sort's order.
    """
    own = ownership.patient_predicate(plan, rule, "r")
    kept: sql.Composable = sql.SQL("")
    if held is not None:
        kept = sql.SQL(" AND NOT EXISTS (SELECT 1 FROM {held} h WHERE {hjoin})").format(
            held=held, hjoin=key_equal(rule.key, "r", "h"))
    return sql.SQL("SELECT {k} FROM {t} r WHERE r.{c} = {target} AND {own}{kept} UNION ALL "
                   "SELECT {k} FROM {t} r WHERE r.{c} = {target} AND ({own}) IS NOT TRUE "
                   "AND EXISTS (SELECT 1 FROM {listed} l WHERE {join})").format(
        k=key_order(rule.key, "r"), t=table_sql(rule.name), c=ownership.ident(plan.tenant_column),
        target=tenants.literal(plan, plan.target), own=own, listed=listed, join=key_equal(rule.key, "r", "l"),
        kept=kept)


def _not_listed(rule: TableRule, alias: str, listed: sql.Composable) -> sql.Composable:
    """True for a moving row the report does not list: a patient row created since the commit."""
    return sql.SQL("NOT EXISTS (SELECT 1 FROM {listed} l WHERE {join})").format(
        listed=listed, join=key_equal(rule.key, alias, "l"))


def reverse_counts(url: str, plan: Plan, timeouts: Timeouts, cut_report: Mapping[str, Any]) -> dict[str, Any]:
    """What the reverse would move back, per table, counted in a READ ONLY transaction.

    The preview runs in production (the dry run, and Set B's next step before T+0:30), so it must
    neither write nor make writers wait: no temp table, no advisory or table lock beyond the ACCESS
    SHARE every SELECT takes. The report is checked against the audit events first, as the reverse
    does; the rows listed are the audit events' own (:func:`listed`).
    """
    try:
        with db.connection(url, read_only=True, application_name="cutover-reverse-count") as conn:
            engine.set_timeouts(conn, timeouts)
            plan = tenants.typed(conn, plan)
            engine.refuse_hidden_rows(conn, plan)
            require_recorded(conn, plan, cut_report, "reverse")
            with _no_nested_loops(conn):
                planned, new_rows = _count(conn, plan, str(cut_report["run_id"]))
            conn.rollback()
    except psycopg.Error as exc:
        raise RunFailed(f"reverse dry run failed: {engine._describe(exc, timeouts)}; nothing changed") from None
    return {"kind": "reverse", "dry_run": True, "cutover_run_id": cut_report.get("run_id"),
            "database": mask_url(url), "commit_status": "dry_run", "planned": planned,
            "new_since_commit": {k: v for k, v in new_rows.items() if v}}


def _no_nested_loops(conn: Connection) -> AbstractContextManager[None]:
    """Nested loops off while the dry run counts. Its listed keys and its selection are CTEs, which
    have no statistics, and the table's predate the cutover (the target held none of the moved rows):
    the planner took the selection for one row and counted the rows created since with a nested-loop
    anti-join, a scan of every listed key per selected row (137 s for the dry run at scale 20). A hash
    join reads each side once. Set for this read-only transaction only."""
    return db.local_settings(conn, {"enable_nestloop": "off"})


def _count(conn: Connection, plan: Plan, run_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per moving table, the rows the reverse would move back and how many of them are not listed."""
    name = sql.Identifier("listed")
    planned: dict[str, int] = {}
    new_rows: dict[str, int] = {}
    for rule in plan.moving:
        total, new = db.one(conn, count_statement(conn, plan, rule, run_id, name))
        planned[rule.name] = int(total)
        new_rows[rule.name] = int(new)
    return planned, new_rows


def count_statement(conn: Connection, plan: Plan, rule: TableRule, run_id: str,
                    name: sql.Identifier) -> sql.Composed:
    """The dry run's count of one table: the reverse's selection over its listed keys as a CTE."""
    held = sql.Identifier("held")  # the target's own patient rows, recorded by the execute: they stay
    return sql.SQL(  # NOT EXISTS in a WHERE: an anti-join, not a subplan per row
        "WITH {listed} AS MATERIALIZED ({rows}), {held} AS MATERIALIZED ({own}), i AS MATERIALIZED ({keys}) "
        "SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM i WHERE {new})").format(
        listed=name, rows=listed(conn, plan, rule, run_id), held=held,
        own=listed(conn, plan, rule, engine.held_run(run_id)),
        new=_not_listed(rule, "i", name), keys=_reverse_keys(plan, rule, name, held))


def _reverse_preflight(run: Run, conn: Connection, plan: Plan,
                       cut_report: Mapping[str, Any]) -> list[live_schema.TenantKey]:
    """The reverse's first step: only the database's committed cutover is reversed, and the tenant-keyed
    foreign keys the moves break until both sides are back are deferred for its transaction."""
    with run.step("check the report is the committed cutover of this database"):
        _require_report_of(conn, plan, cut_report, "reverse")
        deferred = [k for k in live_schema.tenant_keys(plan, live_schema.read(conn, plan)) if k.deferred_by_cutover]
        engine.defer_tenant_keys(conn, deferred)
    return deferred


def _list_back(conn: Connection, plan: Plan, rule: TableRule, run_id: str, ids: str) -> tuple[int, int, int]:
    """One table's rows to move back, in the temp table ``ids``; returns how many, how many of them the
    audit events do not list (created since the commit), and how many patient rows the target held
    of its own before the cutover and still holds (they stay)."""
    listed_table, held_table = engine.id_table(rule, "listed"), engine.id_table(rule, "held")
    engine.build_ids(conn, listed_table, listed(conn, plan, rule, run_id))
    engine.size_hash_for(conn, listed_table, len(rule.key))  # the semi-join on them, in memory
    held, kept = 0, None
    if engine.build_ids(conn, held_table, listed(conn, plan, rule, engine.held_run(run_id))):
        kept = ownership.ident(held_table)
        held = int(db.one(conn, sql.SQL("SELECT count(*) FROM {h} h JOIN {t} r ON {join} WHERE {own}").format(
            h=kept, t=table_sql(rule.name), join=key_equal(rule.key, "r", "h"),
            own=ownership.owned_on(plan, rule, plan.target, "r")))[0])
    planned = engine.build_ids(conn, ids, _reverse_keys(plan, rule, ownership.ident(listed_table), kept))
    new = int(db.one(conn, sql.SQL("SELECT count(*) FROM {ids} i WHERE {new}").format(
        ids=ownership.ident(ids), new=_not_listed(rule, "i", ownership.ident(listed_table))))[0])
    return planned, new, held


def reverse(url: str, plan: Plan, actor: str, timeouts: Timeouts, cut_report: Mapping[str, Any],
            progress: Progress = _no_progress) -> dict[str, Any]:
    """Rollback option 2: move the cutover's rows (and patient rows created since) back to the source.

    Its dry run is :func:`reverse_counts`, which selects the same rows without writing or locking.
    The rows are the ones the audit events list (:func:`listed`); a report that disagrees with them
    is refused first (:func:`check_report`), before any lock is taken.
    """
    check_report(url, plan, timeouts, cut_report, "reverse")
    run = Run("reverse", plan, actor, 6 + (1 if plan.refresh_views else 0), progress)
    record: dict[str, Any] = {"run_id": run.run_id, "actor": actor, "kind": "reverse",
                              "cutover_run_id": cut_report.get("run_id"), "database": mask_url(url),
                              "started_at": run.started_at, "commit_status": "rolled_back"}
    with engine.guarded(url, run, record, timeouts) as conn:
        plan = run.plan = tenants.typed(conn, plan)
        engine.open_steps(run, conn, plan, timeouts)
        deferred = _reverse_preflight(run, conn, plan, cut_report)
        ids: dict[str, str] = {}
        planned: dict[str, int] = {}
        new_rows: dict[str, int] = {}
        held: dict[str, int] = {}  # the target's own patient rows, still there and patient-owned: they stay
        with run.step("list the rows to move back") as info:
            baseline = engine.counts(conn, plan)
            for rule in plan.moving:
                ids[rule.name] = engine.id_table(rule, "reverse")
                planned[rule.name], new_rows[rule.name], held[rule.name] = _list_back(
                    conn, plan, rule, str(cut_report["run_id"]), ids[rule.name])
            info["rows"] = sum(planned.values())
        record.update(planned=planned, new_since_commit={k: v for k, v in new_rows.items() if v})
        with run.step("move the rows back to the source") as info:
            moved = engine.move_listed(conn, plan, ids, plan.target, plan.source, deferred)
            carried = _carry_written(conn, plan, ids, moved, plan.target, plan.source, deferred)
            info["rows"] = sum(moved.values()) + sum(carried.values())
        engine.refresh_views(run, conn, plan)
        with run.step(f"verify, write {plan.audit.reversed}"):
            engine.check_tenant_keys(conn, deferred)
            triggered: dict[str, dict[str, int]] = {}
            proof = engine.verify(conn, plan, "reverse", baseline, moved, {}, ids, plan.target, plan.source,
                                  plan.fired(moved), triggered, held=held, listed=planned)
            record.update(moved=moved, committed_at=datetime.now(UTC).isoformat(), verified_by=proof)
            if triggered:
                record["triggered"] = triggered
            audit.write_event(conn, plan, plan.audit.reversed, sql.Literal(json.dumps(
                {k: record[k] for k in ("run_id", "cutover_run_id", "actor", "started_at", "committed_at", "moved",
                                        "new_since_commit", "triggered") if k in record})))
        engine.commit(conn, url, plan, run.run_id, plan.audit.reversed)
        record["commit_status"] = "committed"
    return record
