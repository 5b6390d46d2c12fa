"""After the commit: the sweep (lost writes that landed on the source) and the reverse migration.

Both run the same guarded transaction as the cutover (timeouts, advisory lock, table locks,
verification before commit) and record themselves as audit events, so the database alone can
tell what moved, and a lost report can be rebuilt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
from psycopg import sql

from cutover.core import catalog, db
from cutover.core.db import Connection
from cutover.core.plan import Plan, TableRule
from cutover.core.redact import mask_url
from cutover.core.report_types import (
    RowKey,
    SweepRecord,
    key_equal,
    key_json,
    key_order,
    key_records,
    key_values,
    listed_rows,
)
from cutover.core.report_types import listed_keys as _listed_keys
from cutover.reference import execute as engine
from cutover.reference import ownership as rules
from cutover.reference import preflight
from cutover.reference.execute import EXIT_BLOCKED, Progress, Run, RunFailed, Timeouts, _no_progress


def _require_cut_over(conn: Connection, plan: Plan, what: str) -> dict[str, Any]:
    last = preflight.last_audit_run(conn, plan)
    if last is None or last["kind"] != plan.audit.completed:
        state = "was reversed" if last is not None else "has not been committed"
        raise RunFailed(f"{what} refused: the cutover {state} on this database; nothing changed", EXIT_BLOCKED)
    return last


def sweep(url: str, plan: Plan, actor: str, timeouts: Timeouts,
          progress: Progress = _no_progress) -> SweepRecord | None:
    """Move patient-owned rows that landed on the source after the commit; ``None`` if there were none."""
    run = Run("sweep", plan, actor, 6, progress)
    record: dict[str, Any] = {"run_id": run.run_id, "actor": actor, "kind": "sweep", "database": mask_url(url),
                              "started_at": run.started_at, "commit_status": "rolled_back"}
    with engine.guarded(url, run, record, timeouts) as conn:
        engine.open_steps(run, conn, plan, timeouts)
        with run.step("check the cutover is committed and nothing blocks the sweep") as info:
            last = _require_cut_over(conn, plan, "sweep")
            record["cutover_run_id"] = last.get("run_id")
            pf = preflight.run(conn, plan, planned=False)
            blockers = [b for b in pf.blockers if b.code != "already-cut-over"]
            info["rows"] = len(blockers)
            if blockers:
                raise RunFailed("sweep BLOCKED: " + " | ".join(b.line() for b in blockers), EXIT_BLOCKED)
            engine.defer_tenant_keys(conn, pf.deferred)
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
            info["rows"] = sum(moved.values())
        with run.step(f"verify, write {plan.audit.swept}"):
            engine.check_tenant_keys(conn, pf.deferred)
            engine.verify(conn, plan, "sweep", baseline, moved, {}, ids, plan.source, plan.target)
            record.update(moved={k: v for k, v in moved.items() if v}, committed_at=datetime.now(UTC).isoformat())
            moved_ids = {t: ids[t] for t in ids if moved[t]}
            engine.write_audit(conn, plan, plan.audit.swept, sql.SQL("{} || jsonb_build_object('ids', {})").format(
                sql.Literal(json.dumps({k: record[k] for k in ("run_id", "cutover_run_id", "actor", "started_at",
                                                               "committed_at", "moved")})),
                engine.ids_json(plan, moved_ids)))
            record["ids"] = {t: [r[0] for r in conn.execute(sql.SQL("SELECT {j} FROM {i} ORDER BY {o}").format(
                j=key_json(plan.table(t).key), i=rules.ident(ids[t]), o=key_order(plan.table(t).key))).fetchall()]
                for t in moved_ids}
            engine.commit(conn, url, plan, run.run_id, plan.audit.swept)
        record["commit_status"] = "committed"
    return cast(SweepRecord, record)  # what report["sweeps"] holds, plus the command's own fields


def listed_ids(cut_report: Mapping[str, Any], table: str) -> Iterable[RowKey]:
    """Rows the cutover and its sweeps moved, according to the report (keys kept whole)."""
    return _listed_keys(cut_report, table)


def _require_report_of(conn: Connection, plan: Plan, cut_report: Mapping[str, Any]) -> None:
    """The reverse acts on one committed cutover: the report must be the database's own last one."""
    last = _require_cut_over(conn, plan, "reverse")
    if last.get("run_id") != cut_report.get("run_id"):
        raise RunFailed(f"reverse refused: the report is run {cut_report.get('run_id')} but the database's "
                        f"committed cutover is run {last.get('run_id')}; pass that run's report (or rebuild "
                        f"it with 'cutover report --rebuild'); nothing changed", EXIT_BLOCKED)


def _reverse_keys(plan: Plan, rule: TableRule, listed: sql.Composable) -> sql.Composable:
    """The keys of the rows the reverse moves back: on the target and patient-owned, or in the report.

    ``listed`` names a relation of the report's keys typed like the table's key columns: the reverse's
    temp table, or the read-only count's CTE. One selection for both, so the count is what moves.
    A UNION of two joins, not ``owned OR EXISTS (listed)``: under an OR the EXISTS is a subplan run
    per row, hashed only while the report's keys fit in work_mem, else a scan of them per row (the
    reverse took 163 s at scale 20 and would have taken hours at scale 100).
    """
    return sql.SQL("SELECT {k} FROM {t} r WHERE r.{c} = {target} AND {own} UNION "
                   "SELECT {k} FROM {t} r JOIN {listed} l ON {join} WHERE r.{c} = {target}").format(
        k=key_order(rule.key, "r"), t=rules.ident(rule.name), c=rules.ident(plan.tenant_column),
        target=sql.Literal(plan.target), own=rules.patient_predicate(plan, rule, "r"),
        listed=listed, join=key_equal(rule.key, "r", "l"))


def _not_listed(rule: TableRule, alias: str, listed: sql.Composable) -> sql.Composable:
    """True for a moving row the report does not list: a patient row created since the commit."""
    return sql.SQL("NOT EXISTS (SELECT 1 FROM {listed} l WHERE {join})").format(
        listed=listed, join=key_equal(rule.key, alias, "l"))


def reverse_counts(url: str, plan: Plan, timeouts: Timeouts, cut_report: Mapping[str, Any]) -> dict[str, Any]:
    """What the reverse would move back, per table, counted in a READ ONLY transaction.

    The preview runs in production (the dry run, and Set B's next step before T+0:30), so it must
    neither write nor make writers wait: no temp table, no advisory or table lock beyond the ACCESS
    SHARE every SELECT takes; the report's keys reach the server as one jsonb value per table.
    """
    listed = sql.Identifier("listed")
    planned: dict[str, int] = {}
    new_rows: dict[str, int] = {}
    try:
        with db.connection(url, read_only=True, application_name="cutover-reverse-count") as conn:
            engine.set_timeouts(conn, timeouts)
            engine.refuse_hidden_rows(conn, plan)
            _require_report_of(conn, plan, cut_report)
            for rule in plan.moving:
                try:
                    records = key_records(rule.key, listed_ids(cut_report, rule.name))
                except ValueError as exc:
                    raise _wrong_key(rule.name, exc) from None
                total, new = db.one(conn, sql.SQL(  # NOT EXISTS in a WHERE: an anti-join, not a subplan per row
                    "WITH {listed} AS MATERIALIZED ({rows}), i AS MATERIALIZED ({keys}) "
                    "SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM i WHERE {new})").format(
                    listed=listed, rows=listed_rows(rule.name, rule.key, sql.SQL("%s::jsonb")),
                    new=_not_listed(rule, "i", listed), keys=_reverse_keys(plan, rule, listed)), (records,))
                planned[rule.name] = int(total)
                new_rows[rule.name] = int(new)
            conn.rollback()
    except psycopg.Error as exc:
        raise RunFailed(f"reverse dry run failed: {engine._describe(exc, timeouts)}; nothing changed") from None
    return {"kind": "reverse", "dry_run": True, "cutover_run_id": cut_report.get("run_id"),
            "database": mask_url(url), "commit_status": "dry_run", "planned": planned,
            "new_since_commit": {k: v for k, v in new_rows.items() if v}}


def reverse(url: str, plan: Plan, actor: str, timeouts: Timeouts, cut_report: Mapping[str, Any],
            progress: Progress = _no_progress) -> dict[str, Any]:
    """Rollback option 2: move the cutover's rows (and patient rows created since) back to the source.

    Its dry run is :func:`reverse_counts`, which selects the same rows without writing or locking.
    """
    run = Run("reverse", plan, actor, 6, progress)
    record: dict[str, Any] = {"run_id": run.run_id, "actor": actor, "kind": "reverse",
                              "cutover_run_id": cut_report.get("run_id"), "database": mask_url(url),
                              "started_at": run.started_at, "commit_status": "rolled_back"}
    with engine.guarded(url, run, record, timeouts) as conn:
        engine.open_steps(run, conn, plan, timeouts)
        with run.step("check the report is the committed cutover of this database"):
            _require_report_of(conn, plan, cut_report)
            deferred = [k for k in catalog.tenant_keys(plan, catalog.read(conn)) if k.deferred_by_cutover]
            engine.defer_tenant_keys(conn, deferred)
        ids: dict[str, str] = {}
        planned: dict[str, int] = {}
        new_rows: dict[str, int] = {}
        with run.step("list the rows to move back") as info:
            baseline = engine.counts(conn, plan)
            for rule in plan.moving:
                # The report's keys go into a table typed like the key columns (COPY applies each
                # column's input function), so every comparison below is in the key's own type.
                listed = engine.id_table(rule, "listed")
                conn.execute(sql.SQL("CREATE TEMP TABLE {l} ON COMMIT DROP AS SELECT {k} FROM {t} LIMIT 0").format(
                    l=rules.ident(listed), k=key_order(rule.key), t=rules.ident(rule.name)))
                with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                        rules.ident(listed), key_order(rule.key))) as cp:
                    for key in listed_ids(cut_report, rule.name):
                        cp.write_row(_copy_values(rule.name, rule.key, key))
                conn.execute(sql.SQL("ANALYZE {}").format(rules.ident(listed)))
                ids[rule.name] = engine.id_table(rule, "reverse")
                planned[rule.name] = engine.build_ids(conn, ids[rule.name],
                                                      _reverse_keys(plan, rule, rules.ident(listed)))
                new_rows[rule.name] = int(db.one(conn, sql.SQL("SELECT count(*) FROM {ids} i WHERE {new}").format(
                    ids=rules.ident(ids[rule.name]), new=_not_listed(rule, "i", rules.ident(listed))))[0])
            info["rows"] = sum(planned.values())
        record.update(planned=planned, new_since_commit={k: v for k, v in new_rows.items() if v})
        with run.step("move the rows back to the source") as info:
            moved = engine.move_listed(conn, plan, ids, plan.target, plan.source, deferred)
            info["rows"] = sum(moved.values())
        with run.step(f"verify, write {plan.audit.reversed}"):
            engine.check_tenant_keys(conn, deferred)
            engine.verify(conn, plan, "reverse", baseline, moved, {}, ids, plan.target, plan.source)
            record.update(moved=moved, committed_at=datetime.now(UTC).isoformat())
            engine.write_audit(conn, plan, plan.audit.reversed, sql.Literal(json.dumps(
                {k: record[k] for k in ("run_id", "cutover_run_id", "actor", "started_at", "committed_at", "moved",
                                        "new_since_commit")})))
        engine.commit(conn, url, plan, run.run_id, plan.audit.reversed)
        record["commit_status"] = "committed"
    return record


def _copy_values(table: str, columns: tuple[str, ...], key: RowKey) -> tuple[Any, ...]:
    """A report key as COPY text values; a key of the wrong shape stops the reverse naming the table."""
    try:
        values = key_values(columns, key)
    except ValueError as exc:
        raise _wrong_key(table, exc) from None
    return tuple(v if isinstance(v, str) else json.dumps(v) for v in values)


def _wrong_key(table: str, exc: ValueError) -> RunFailed:
    return RunFailed(f"reverse refused: report allow_list.{table}: {exc}; pass the report this plan's execute "
                     f"wrote (or rebuild it with 'cutover report --rebuild'); nothing changed", EXIT_BLOCKED)
