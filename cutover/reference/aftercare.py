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

from psycopg import sql

from cutover.core.db import Connection
from cutover.core.plan import Plan
from cutover.core.redact import mask_url
from cutover.core.report_types import RowKey, SweepRecord, key_equal, key_json, key_order, key_values
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
            pf = preflight.run(conn, plan)
            blockers = [b for b in pf.blockers if b.code != "already-cut-over"]
            info["rows"] = len(blockers)
            if blockers:
                raise RunFailed("sweep BLOCKED: " + " | ".join(b.line() for b in blockers), EXIT_BLOCKED)
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
            moved = engine.move_listed(conn, plan, ids, plan.source, plan.target)
            info["rows"] = sum(moved.values())
        with run.step(f"verify, write {plan.audit.swept}"):
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


def reverse(url: str, plan: Plan, actor: str, timeouts: Timeouts, cut_report: Mapping[str, Any], dry_run: bool,
            progress: Progress = _no_progress) -> dict[str, Any]:
    """Rollback option 2: move the cutover's rows (and patient rows created since) back to the source."""
    run = Run("reverse", plan, actor, 6, progress)
    record: dict[str, Any] = {"run_id": run.run_id, "actor": actor, "kind": "reverse", "dry_run": dry_run,
                              "cutover_run_id": cut_report.get("run_id"), "database": mask_url(url),
                              "started_at": run.started_at, "commit_status": "rolled_back"}
    with engine.guarded(url, run, record, timeouts) as conn:
        engine.open_steps(run, conn, plan, timeouts)
        with run.step("check the report is the committed cutover of this database"):
            last = _require_cut_over(conn, plan, "reverse")
            if last.get("run_id") != cut_report.get("run_id"):
                raise RunFailed(f"reverse refused: the report is run {cut_report.get('run_id')} but the database's "
                                f"committed cutover is run {last.get('run_id')}; pass that run's report (or rebuild "
                                f"it with 'cutover report --rebuild'); nothing changed", EXIT_BLOCKED)
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
                planned[rule.name] = engine.build_ids(conn, ids[rule.name], sql.SQL(
                    "SELECT {k} FROM {t} r WHERE r.{c} = {target} AND ({own} OR EXISTS "
                    "(SELECT 1 FROM {listed} l WHERE {join}))").format(
                    k=key_order(rule.key, "r"), t=rules.ident(rule.name), c=rules.ident(plan.tenant_column),
                    target=sql.Literal(plan.target), own=rules.patient_predicate(plan, rule, "r"),
                    listed=rules.ident(listed), join=key_equal(rule.key, "r", "l")))
                new_rows[rule.name] = int(conn.execute(sql.SQL(
                    "SELECT count(*) FROM {ids} i WHERE NOT EXISTS (SELECT 1 FROM {listed} l WHERE {join})").format(
                    ids=rules.ident(ids[rule.name]), listed=rules.ident(listed),
                    join=key_equal(rule.key, "i", "l"))).fetchone()[0])
            info["rows"] = sum(planned.values())
        record.update(planned=planned, new_since_commit={k: v for k, v in new_rows.items() if v})
        if dry_run:
            record["commit_status"] = "dry_run"
            return record
        with run.step("move the rows back to the source") as info:
            moved = engine.move_listed(conn, plan, ids, plan.target, plan.source)
            info["rows"] = sum(moved.values())
        with run.step(f"verify, write {plan.audit.reversed}"):
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
        raise RunFailed(f"reverse refused: report allow_list.{table}: {exc}; pass the report this plan's execute "
                        f"wrote (or rebuild it with 'cutover report --rebuild'); nothing changed",
                        EXIT_BLOCKED) from None
    return tuple(v if isinstance(v, str) else json.dumps(v) for v in values)
