"""The cutover transaction: the 14 steps of the reference contract, all or nothing.

Every step runs inside one transaction on one connection. Nothing here commits except the last
step, so any failure, a killed session or a killed client leaves the database exactly as it was.
Writers are held off with table locks taken under ``lock_timeout`` (a blocked cutover fails fast
and says which table, it never hangs the window), and a second cutover is refused by an advisory
lock before it touches anything.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

import psycopg
from psycopg import errors as pgerr
from psycopg import sql

from cutover.core import audit, db, live_schema, tenants
from cutover.core.db import Connection
from cutover.core.errors import CutoverError
from cutover.core.exit_codes import ExitCode
from cutover.core.options import DEFAULTS, DURATION
from cutover.core.plan import Plan, TableRule, table_regclass, table_sql
from cutover.core.redact import mask_url, redact
from cutover.core.row_keys import CutoverReport, key_equal, key_json, key_order
from cutover.reference import ownership, preflight


class RunFailed(CutoverError):
    """The transaction was rolled back; ``exit_code`` says why in a way scripts can branch on."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.ROLLED_BACK, summary: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        # The failure in tables, counts and run ids only: what may leave the operator's terminal (the
        # alerts go to a chat). Never a row's key (a blocker's samples are patients' keys) nor a
        # server's message text (it can quote a row's values); None where no such text was made.
        self.summary = None if summary is None else " ".join(summary.split())
        self.report: CutoverReport | None = None
        self.id_files: dict[str, Path] = {}
        self.detail: tuple[str, ...] = ()  # lines printed under the one-line message (e.g. which keys differ)


@dataclass(frozen=True)
class Timeouts:
    """``lock_timeout`` and ``statement_timeout``, as PostgreSQL interval strings, set LOCAL."""

    lock: str = DEFAULTS["lock_timeout"]
    statement: str = DEFAULTS["statement_timeout"]


@dataclass
class StepEvent:
    """One step of a run, reported as it starts (``done`` False) and as it ends."""

    number: int
    total: int
    name: str
    done: bool = False
    rows: int | None = None
    seconds: float = 0.0


Progress = Callable[[StepEvent], None]


def _no_progress(_: StepEvent) -> None:
    return None


@dataclass
class Run:
    """The state of one transaction as it proceeds; becomes the report."""

    kind: str
    plan: Plan
    actor: str
    total: int
    progress: Progress = _no_progress
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    steps: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    number: int = 0

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Time a step and report it live (start and end) through the progress callback."""
        self.number += 1
        self.progress(StepEvent(self.number, self.total, name))
        start = time.monotonic()
        info: dict[str, Any] = {"step": self.number, "name": name, "rows": None}
        yield info
        info["seconds"] = round(time.monotonic() - start, 3)
        self.steps.append(info)
        self.progress(StepEvent(self.number, self.total, name, True, info["rows"], info["seconds"]))


def set_timeouts(conn: Connection, timeouts: Timeouts) -> None:
    """Timeouts for this transaction only; plus a client liveness check, so that a killed client
    aborts even a long statement or a COMMIT still firing deferred triggers, instead of letting the
    server finish a transaction nobody is watching."""
    conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true), "
                 "set_config('client_connection_check_interval', '1s', true)", (timeouts.lock, timeouts.statement))


def lock(conn: Connection, plan: Plan, timeouts: Timeouts) -> None:
    """Refuse a concurrent cutover at once, then hold writers off every plan table until commit.

    The tables are locked all together in short attempts, releasing everything between attempts:
    a writer holding one table while waiting for another would otherwise deadlock with a cutover
    locking them one by one. An autovacuum worker is different: PostgreSQL cancels it for a waiter
    only once that waiter has waited ``deadlock_timeout``, so behind one the next attempt waits
    longer than that (see :func:`next_attempt`). The whole wait is bounded by ``lock_timeout``.
    """
    got = db.one(conn, "SELECT pg_try_advisory_xact_lock(hashtext(%s))", (plan.name,))[0]
    if not got:
        busy = (f"another cutover/sweep/reverse of plan '{plan.name}' is running on this database (advisory lock "
                f"held); wait for it to finish, nothing was changed")
        raise RunFailed(busy, summary=busy)
    budget = interval_seconds(timeouts.lock)
    deadlock = float(db.one(conn, "SELECT setting::float / 1000 FROM pg_settings WHERE name = 'deadlock_timeout'")[0])
    deadline = time.monotonic() + budget
    statement = sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
        sql.SQL(", ").join(table_sql(t) for t in plan.table_names))
    holders: list[Holder] = []
    while True:
        attempt = max(0.001, next_attempt(deadline - time.monotonic(), deadlock,
                                          any(h.autovacuum for h in holders)))
        conn.execute("SAVEPOINT cutover_lock")
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{max(1, round(attempt * 1000))}ms",))
        try:
            conn.execute(statement)
        except (pgerr.LockNotAvailable, pgerr.DeadlockDetected):
            conn.execute("ROLLBACK TO SAVEPOINT cutover_lock")
            holders = _holders(conn, plan)
            if time.monotonic() >= deadline:
                failure = _lock_failure(holders, timeouts.lock, budget, deadlock)  # tables and pids
                raise RunFailed(failure, summary=failure) from None
            continue
        conn.execute("RELEASE SAVEPOINT cutover_lock")
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeouts.lock,))
        return


ATTEMPT_S = 0.2  # below deadlock_timeout (1s by default): back off from a writer before a deadlock is even detected


def next_attempt(remaining: float, deadlock_timeout: float, autovacuum: bool) -> float:
    """Seconds the next lock attempt may wait, out of the ``remaining`` budget.

    Short by default. Behind an autovacuum worker (seen holding a plan table after the last
    attempt) it waits twice ``deadlock_timeout``: only a waiter past that makes the server cancel the
    worker, and a routine vacuum after a mass update would otherwise outlast any lock_timeout.
    """
    if autovacuum and remaining > deadlock_timeout:
        return min(remaining, 2 * deadlock_timeout)
    return min(remaining, ATTEMPT_S)


@dataclass(frozen=True)
class Holder:
    """A session holding a plan table in a mode that blocks the cutover's lock."""

    table: str
    pid: int
    application: str
    autovacuum: bool

    def describe(self) -> str:
        who = "autovacuum worker " if self.autovacuum else ""
        return f"{self.table} (held by {who}pid {self.pid}{f' {self.application!r}' if self.application else ''})"


def _holders(conn: Connection, plan: Plan) -> list[Holder]:
    """Which plan tables other sessions hold in a mode that blocks ours, and who they are."""
    rows = conn.execute(
        "SELECT u.n, a.pid, coalesce(a.application_name, ''), a.backend_type = 'autovacuum worker' "
        "FROM pg_locks l JOIN unnest(%s::text[], %s::text[]) u(n, r) ON l.relation = to_regclass(u.r) "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.granted AND l.pid <> pg_backend_pid() AND l.database = (SELECT oid FROM pg_database "
        "WHERE datname = current_database()) AND l.mode <> 'AccessShareLock' "
        "ORDER BY 1, 2", (list(plan.table_names), [table_regclass(t) for t in plan.table_names])).fetchall()
    return [Holder(rel, pid, app, bool(vacuum)) for rel, pid, app, vacuum in rows]


def _lock_failure(holders: list[Holder], lock_timeout: str, budget: float, deadlock: float) -> str:
    blocked_on = ", ".join(h.describe() for h in holders[:5]) or "of the plan (the holder has just let go)"
    fix = "retry once it is released or raise --lock-timeout"
    if any(h.autovacuum for h in holders):
        fix = (f"autovacuum yields only to a wait longer than deadlock_timeout ({deadlock:g}s): raise --lock-timeout "
               f"above it" if budget <= deadlock + ATTEMPT_S else
               "this vacuum did not yield (one preventing wraparound never does): wait for it to finish")
    return (f"could not lock table {blocked_on} within lock_timeout {lock_timeout}: another session holds a "
            f"conflicting lock; nothing was changed, {fix}")


def open_steps(run: Run, conn: Connection, plan: Plan, timeouts: Timeouts) -> None:
    """Steps 1-2 of every writing run (execute, sweep, reverse): bound the transaction, then take the locks."""
    with run.step("set local lock_timeout and statement_timeout"):
        set_timeouts(conn, timeouts)
    with run.step("advisory lock; lock the plan's tables against writes"):
        lock(conn, plan, timeouts)
        refuse_hidden_rows(conn, plan)


def refuse_hidden_rows(conn: Connection, plan: Plan) -> None:
    """BLOCKED when row security would filter the plan's tables for this role: every statement would fail."""
    hidden = db.hidden_by_row_security(conn, plan.all_tables)
    if hidden is not None:
        raise RunFailed(f"row-security: {hidden}; nothing changed", ExitCode.BLOCKED)


def defer_tenant_keys(conn: Connection, keys: list[live_schema.TenantKey]) -> None:
    """Defer the tenant-keyed foreign keys for this transaction only: each table moves in its own
    statement, so between the parent's move and its children's such a key is broken by design."""
    if keys:
        conn.execute(sql.SQL("SET CONSTRAINTS {} DEFERRED").format(_constraint_names(conn, keys)))


def check_tenant_keys(conn: Connection, keys: list[live_schema.TenantKey]) -> None:
    """Check the deferred keys now, at verification, so that a row the moves left pointing at another
    tenant rolls the run back naming the key, instead of an anonymous failure at COMMIT."""
    if not keys:
        return
    try:
        conn.execute(sql.SQL("SET CONSTRAINTS {} IMMEDIATE").format(_constraint_names(conn, keys)))
    except pgerr.ForeignKeyViolation as exc:
        name = exc.diag.constraint_name
        which = next((k.short() for k in keys if k.name == name), name or "a deferred foreign key")
        first = redact(str(exc).strip().splitlines()[0])
        broken = f"verification failed, rolled back: foreign key {which} is broken after the moves"
        raise RunFailed(f"{broken} ({first}); a row that does not move points at one that does, or the reverse: fix "
                        f"the rows or the plan's rules; nothing changed", summary=broken) from None


def _constraint_names(conn: Connection, keys: list[live_schema.TenantKey]) -> sql.Composable:
    """Schema-qualified, each in its own table's schema: a constraint name is only unique per table, and
    SET CONSTRAINTS searches the search path otherwise (or the current schema, for a key read without one)."""
    schema = str(db.one(conn, "SELECT current_schema()")[0])
    return sql.SQL(", ").join(sql.Identifier(s or schema, n)
                              for s, n in dict.fromkeys((k.key.schema, k.name) for k in keys))


def interval_seconds(value: str) -> float:
    """'500ms', '3s', '2min', '1h' or a bare number of milliseconds (PostgreSQL's unit) as seconds."""
    match = DURATION.fullmatch(value.strip())
    if match is None:
        raise CutoverError(f"--lock-timeout must be a duration like 500ms, 3s or 15min, got {value!r}")
    number, unit = int(match.group(1)), match.group(2) or "ms"
    return number * {"ms": 0.001, "s": 1, "min": 60, "h": 3600}[unit]


def counts(conn: Connection, plan: Plan) -> dict[str, dict[str, int]]:
    """Rows per table per tenant: the baseline, and the verification's after-state."""
    out: dict[str, dict[str, int]] = {}
    for table in plan.table_names:
        out[table] = {tenant: int(n) for tenant, n in conn.execute(ownership.tenant_counts(plan, table)).fetchall()}
    return out


def id_table(rule: TableRule, prefix: str) -> str:
    return f"cutover_{prefix}_{rule.name}"


def _sink(spool: Path, table: str) -> BinaryIO:
    """Where a table's allow-list keys go as the audit parts are written: a file in the private
    spool, only the owner may read it (the keys are patient row ids)."""
    return os.fdopen(os.open(spool / f"{table}.ids", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def verify(conn: Connection, plan: Plan, kind: str, baseline: dict[str, dict[str, int]], moved: dict[str, int],
           written: dict[str, int], ids: dict[str, str], source: str, target: str,
           fired: Mapping[str, int] | None = None, triggered: dict[str, dict[str, int]] | None = None,
           probed: dict[str, int] | None = None, held: dict[str, int] | None = None,
           listed: Mapping[str, int] | None = None) -> str:
    """Prove the move inside the transaction: anything off rolls the whole cutover back.

    ``held``: the reverse's count, per table, of the patient-owned rows the target held of its own
    before the cutover: they stay on the target, and only they may.

    Returns how it was proved. Where no trigger or rule can change what the move statements do,
    the transaction's own statistics prove it without reading the tables again (see
    :func:`proved_by_statistics`); otherwise, or if they disagree, every table is counted again.

    ``fired``: per table, the rows its ``written_by`` triggers wrote (one per moved row of the table
    each fires on). Those rows land on whatever tenant the trigger gives them, so the verification
    measures that: what each tenant holds beyond the moves must be no fewer rows than before and
    add up to exactly ``fired``; ``triggered`` receives it per tenant, for the report.

    ``listed``: per id table, how many keys it held when its move ran. Sweep and reverse list their
    rows from the table itself, one key per row, under locks that keep writers out; when the move's
    UPDATE (key join, on ``source``) counted as many rows as the list and the statistics prove that
    nothing else touched the table, every listed row is on ``target`` and reading them back through
    the key's index (half a second at scale 20) would only say it again.
    """
    fired = fired or {}
    problems: list[str] = []
    proved = not fired and proved_by_statistics(conn, plan, moved, written, probed or {})
    for rule in plan.moving:
        if proved and listed is not None and rule.name in ids and moved.get(rule.name) == listed.get(rule.name):
            continue
        if rule.name in ids:  # sweep and reverse: the listed rows, through the key's index
            missing = db.one(conn, sql.SQL("SELECT count(*) FROM {ids} i WHERE NOT EXISTS (SELECT 1 FROM {t} r "
                                           "WHERE {join} AND r.{c} = {to})").format(
                ids=ownership.ident(ids[rule.name]), t=table_sql(rule.name), join=key_equal(rule.key, "r", "i"),
                c=ownership.tenant_of(plan), to=tenants.literal(plan, target)))[0]
            if missing:
                problems.append(f"{rule.name}: {missing} listed rows are not on {target}")
    if not problems and proved:
        return "statistics"
    problems += _count_problems(plan, baseline, counts(conn, plan), moved, written, fired, triggered, source, target)
    for rule in plan.moving:
        left_on = source if kind != "reverse" else plan.target
        left = db.one(conn, ownership.count_owned(plan, rule, left_on))[0]
        own = (held or {}).get(rule.name, 0) if kind == "reverse" else 0
        if left != own:
            problems.append(f"{rule.name}: {left} patient-owned rows still on {left_on}"
                            + (f", {own} of them its own" if own else ""))
    if problems:
        failure = "verification failed, rolled back: " + "; ".join(problems)  # tables and counts
        raise RunFailed(failure, summary=failure)
    return "full count"


def _count_problems(plan: Plan, baseline: dict[str, dict[str, int]], after: dict[str, dict[str, int]],
                    moved: dict[str, int], written: dict[str, int], fired: Mapping[str, int],
                    triggered: dict[str, dict[str, int]] | None, source: str, target: str) -> list[str]:
    """The counts after the moves against the baseline: each table's total grew by exactly what was
    written (and its triggers wrote), the source lost and the target gained exactly the moved rows,
    and a trigger's rows only added to a tenant. Fills ``triggered`` with where those went."""
    problems: list[str] = []
    for table in plan.table_names:
        before_total, after_total = sum(baseline[table].values()), sum(after[table].values())
        extra, by_triggers = written.get(table, 0), fired.get(table, 0)
        if after_total != before_total + extra + by_triggers:
            problems.append(f"{table}: total {after_total}, baseline {before_total} + written {extra}"
                            + (f" + {by_triggers} by its written_by triggers" if table in fired else ""))
            if table in fired:
                continue  # where the trigger's rows went says nothing more once their number is wrong
        n = moved.get(table, 0)
        src_delta = after[table].get(source, 0) - baseline[table].get(source, 0)
        tgt_delta = after[table].get(target, 0) - baseline[table].get(target, 0)
        if table not in fired:
            if src_delta != -n or tgt_delta != n + extra:
                problems.append(f"{table}: {source} {src_delta:+d} and {target} {tgt_delta:+d}, expected {-n:+d} "
                                f"and {n + extra:+d}")
            continue
        beyond = {t: after[table].get(t, 0) - baseline[table].get(t, 0)
                  for t in sorted(set(after[table]) | set(baseline[table]))}
        beyond[source] = src_delta + n
        beyond[target] = tgt_delta - n - extra
        beyond = {t: d for t, d in beyond.items() if d}
        if any(d < 0 for d in beyond.values()):
            shown = ", ".join(f"{t} {d:+d}" for t, d in beyond.items())
            problems.append(f"{table}: beyond the {n} moved rows the tenants changed by {shown}; its written_by "
                            f"triggers add rows, they never take one away")
        elif triggered is not None:
            triggered[table] = beyond
    return problems


def proved_by_statistics(conn: Connection, plan: Plan, moved: dict[str, int], written: dict[str, int],
                         probed: dict[str, int] | None = None) -> bool:
    """Did this transaction change exactly what the moves and the audit events say, and nothing else?

    Each move is one UPDATE that sets the tenant of every row its predicate selects on the source
    (the same predicate as "patient-owned"), under locks that keep every writer out. So when no
    user trigger or rule on a plan table can alter or add to what a statement does, and the
    transaction's own row statistics (``pg_stat_xact_all_tables``: free, no table is read) show
    exactly ``moved`` rows updated, ``written`` inserted and none deleted per table, the totals are
    conserved, the per-tenant deltas are the moved counts and nothing patient-owned is left: the
    full recount of every table (most of step 14 at scale 100) would only say it again.
    """
    tables = list(plan.table_names)
    off = db.one(conn, "WITH r AS (SELECT to_regclass(n) AS oid FROM unnest(%s::text[]) n) "
                       "SELECT current_setting('track_counts') <> 'on' OR EXISTS (SELECT 1 FROM pg_trigger t "
                       "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND t.tgrelid IN (SELECT oid FROM r)) "
                       "OR EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.rulename <> '_RETURN' AND w.ev_class IN "
                       "(SELECT oid FROM r))", ([table_regclass(t) for t in tables],))[0]
    if off:
        return False
    stats = {name: (int(ins), int(upd), int(dele)) for name, ins, upd, dele in conn.execute(
        "SELECT n, s.n_tup_ins, s.n_tup_upd, s.n_tup_del FROM unnest(%s::text[], %s::text[]) u(n, r) "
        "JOIN pg_stat_xact_all_tables s ON s.relid = to_regclass(r)",
        (tables, [table_regclass(t) for t in tables])).fetchall()}
    inserted = {t: written.get(t, 0) + (probed or {}).get(t, 0) for t in tables}  # the probe's row was rolled back
    return all(stats.get(t, (0, 0, 0)) == (inserted[t], moved.get(t, 0), 0) for t in tables)


ID_STATISTICS_TARGET = "10"
"""The statistics target an id table is ANALYZEd with: a 3,000-row sample. The planner needs its
row count and that its keys are distinct, which such a sample gives as well as the default's
30,000 rows, in a third of the time (0.01 s against 0.03 s for 400,000 keys, thirty tables a reverse)."""


def build_ids(conn: Connection, name: str, select: sql.Composable) -> int:
    """Materialise a list of row keys (typed like the table's key columns) in a temp table dropped at commit."""
    cur = conn.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS {}").format(ownership.ident(name), select))
    if cur.rowcount:  # an empty one needs no statistics: its row count is read from its size
        with db.local_settings(conn, {"default_statistics_target": ID_STATISTICS_TARGET}):
            conn.execute(sql.SQL("ANALYZE {}").format(ownership.ident(name)))
    return int(cur.rowcount)


def build_owned_ids(conn: Connection, plan: Plan, rule: TableRule, tenant: str, name: str) -> int:
    """The keys of ``rule``'s patient-owned rows on ``tenant``: the allow-list, or the sweep's stragglers."""
    return build_ids(conn, name, sql.SQL("SELECT {k} FROM {t} WHERE {w}").format(
        k=key_order(rule.key), t=table_sql(rule.name), w=ownership.owned_on(plan, rule, tenant)))


def list_written(conn: Connection, plan: Plan, rule: TableRule, id_table: str, tenant: str) -> int:
    """Add to ``id_table`` the patient rows of ``rule``'s table on ``tenant`` that this transaction's
    triggers wrote (its ``written_by``); returns how many.

    Written by this transaction: their ``xmin`` is its own transaction id or one of its
    subtransactions' (a trigger's EXCEPTION block), all at or past its own (``age(xmin) <= 0``). No other
    session can have written the table since this transaction's id was given out: its first write came
    after it locked every plan table against writers."""
    return int(conn.execute(sql.SQL(
        "INSERT INTO {ids} SELECT {k} FROM {t} r WHERE {owned} AND age(r.xmin) <= 0 "
        "AND NOT EXISTS (SELECT 1 FROM {ids} i WHERE {join})").format(
        ids=ownership.ident(id_table), k=key_order(rule.key, "r"), t=table_sql(rule.name),
        owned=ownership.owned_on(plan, rule, tenant, "r"), join=key_equal(rule.key, "r", "i"))).rowcount)


HASH_BYTES_PER_KEY_COLUMN = 64
"""What one listed key costs a hash join per key column, rounded up (PostgreSQL's own estimate for a
bigint key is about 48 bytes with its bucket)."""
HASH_WORK_MEM_CAP_MB = 256
"""The most work_mem a listed move asks for, per transaction: 256 MB hashes about 4 million bigint
keys of one table in memory (hash_mem_multiplier 2, PostgreSQL 15's default). Past it the join batches
to disk again, slower but bounded: the server's memory stays the cap, however many rows move."""


def size_hash_for(conn: Connection, id_table: str, columns: int) -> None:
    """Raise work_mem, for this transaction only, so a hash join on ``id_table``'s keys fits in memory.

    A move of listed rows is ``UPDATE ... FROM`` its id table: hashed, and past work_mem (4 MB by
    default: some 130,000 keys) batched to disk, every row of both sides written to temp files and
    read back (the bare reverse UPDATEs took 202 s at scale 100 against 67 s for the forward ones).
    Sized from the table's row count (ANALYZEd by :func:`build_ids`), never lowered within the
    transaction, capped at :data:`HASH_WORK_MEM_CAP_MB`.
    """
    rows, current = db.one(conn, "SELECT greatest(reltuples, 0)::bigint, pg_size_bytes(current_setting('work_mem')) "
                                 "FROM pg_class WHERE oid = to_regclass(quote_ident(%s))", (id_table,))
    wanted_kb = int(rows) * HASH_BYTES_PER_KEY_COLUMN * max(columns, 1) // 1024
    current_kb = int(current) // 1024
    size_kb = min(max(wanted_kb, current_kb), max(current_kb, HASH_WORK_MEM_CAP_MB * 1024))
    if size_kb > current_kb:
        conn.execute("SELECT set_config('work_mem', %s, true)", (f"{size_kb}kB",))


def move_listed(conn: Connection, plan: Plan, ids: dict[str, str], source: str, target: str,
                keys: list[live_schema.TenantKey] | None = None) -> dict[str, int]:
    """Move the rows listed in each table's id table from ``source`` to ``target``; rows moved per table.

    An ON UPDATE CASCADE child of ``keys`` moves before its parent, so the cascade carries nothing. A
    key that holds the tenant column (``(tenant_id, id)``) changes with the move: the id table is
    rekeyed to ``target`` with it, so that it names the rows as they now are, as the execute's
    allow-list does (keys after the move), for the verification and for what the sweep records.
    """
    moved = {}
    for name in live_schema.cascade_order(ids, keys or []):
        rule, table = plan.table(name), ids[name]
        size_hash_for(conn, table, len(rule.key))
        moved[name] = int(conn.execute(ownership.move_ids(plan, rule, table, source, target)).rowcount)
        if plan.tenant_column in rule.key:
            conn.execute(sql.SQL("UPDATE {ids} SET {c} = {to}").format(
                ids=ownership.ident(table), c=ownership.tenant_of(plan), to=tenants.literal(plan, target)))
    return {name: moved[name] for name in ids}


@contextmanager
def private_spool() -> Iterator[Path]:
    """A directory only the owner can enter, for the allow-list's id files; gone on any way out.

    The ids are patient row keys: they must not outlive the report that carries them, whether the
    run committed, failed or was interrupted (every execute used to leave one in the temp dir).
    """
    path = Path(tempfile.mkdtemp(prefix="cutover-spool-"))  # mkdtemp creates it 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def execute(url: str, plan: Plan, actor: str, timeouts: Timeouts, progress: Progress = _no_progress, *,
            spool: Path, before_commit: Callable[[], None] | None = None
            ) -> tuple[CutoverReport, dict[str, Path]]:
    """Run the cutover; returns the report and the allow-list id files; raises :class:`RunFailed`.

    The ids go to files in ``spool`` (see :func:`private_spool`) and never sit in memory, however many
    rows moved: write the report from them (:func:`cutover.reference.reports.write`) before leaving it.
    Every caller, the tests' included, takes this one way, so the report a test reads is the one an
    operator gets.

    The moves are the plan's bare UPDATEs; the allow-list is read back from the moved rows at step
    14, under the same locks (see :func:`write_parts`): listing the rows in a pass before the moves
    cost as much as a move, and capturing them with ``UPDATE ... RETURNING`` slowed every move.

    ``before_commit`` runs just before COMMIT: the command holds Ctrl-C there until the report is
    written (past that point an interrupt can no longer roll back, only misreport).
    """
    total = 7 + len(plan.move_steps) + (1 if plan.refresh_views else 0)
    run = Run("execute", plan, actor, total, progress)
    report: CutoverReport = {"run_id": run.run_id, "actor": actor, "plan": plan.name, "database": mask_url(url),
                              "source": plan.source, "target": plan.target, "started_at": run.started_at,
                              "committed_at": None, "duration_s": None, "commit_status": "rolled_back",
                              "baseline": {}, "moved": {}, "written": {}, "steps": run.steps}
    id_files: dict[str, Path] = {}
    with guarded(url, run, report, timeouts, id_files) as conn:
        plan = run.plan = tenants.typed(conn, plan)
        report["source"], report["target"] = plan.source, plan.target  # as the database writes them
        open_steps(run, conn, plan, timeouts)
        locked_at = time.monotonic()
        pf = _preflight_in_transaction(run, conn, plan, report)
        with run.step("record baseline counts per table and tenant") as info:
            baseline = counts(conn, plan)
            report["baseline"] = baseline
            info["rows"] = sum(sum(v.values()) for v in baseline.values())
        held = _note_held_on_target(run, conn, plan, report)
        written = {plan.audit.table: 1}
        with run.step(f"write {plan.audit.started}"):
            audit.write_event(conn, plan, plan.audit.started, sql.Literal(json.dumps(
                {"run_id": run.run_id, "actor": actor, "started_at": run.started_at})))
        moved = _move_in_steps(run, conn, plan, pf.deferred)
        report["moved"] = moved
        refresh_views(run, conn, plan)
        with run.step(f"verify, write {plan.audit.completed}") as info:
            _verify_and_complete(run, conn, plan, report, pf, baseline, moved, written, held, spool, id_files)
            info["rows"] = sum(moved.values())
        if before_commit is not None:
            before_commit()
        commit(conn, url, plan, run.run_id)  # not a step: the steps are the work COMMIT makes durable, timed alone
        report["commit_status"] = "committed"
        report["writers_blocked_s"] = round(time.monotonic() - locked_at, 3)
    return report, id_files


def _preflight_in_transaction(run: Run, conn: Connection, plan: Plan, report: CutoverReport) -> preflight.Preflight:
    """The pre-flight again under the locks, where nothing can change it before COMMIT: a blocker or a
    finished earlier run stops the cutover before anything moves; the keys it finds are deferred."""
    with run.step("pre-flight inside the transaction") as info:
        audit.create_own(conn, plan)  # [audit] own = true: made on first use, in this transaction
        pf = preflight.run(conn, plan, planned=False)
        info["rows"] = len(pf.blockers)
        if pf.already_cut_over and len(pf.blockers) == 1 and pf.last_run is not None:
            done = f"{pf.blockers[0].message}; nothing changed"  # the run id and rows per table
            raise RunFailed(done, ExitCode.ALREADY_CUT_OVER, summary=done)
        if not pf.ready:  # the blockers with their sample rows; the summary without them
            raise RunFailed("BLOCKED inside the transaction: " + " | ".join(b.line() for b in pf.blockers),
                            ExitCode.BLOCKED, summary="BLOCKED inside the transaction: " + " | ".join(
                                f"{b.code}: {b.message}" for b in pf.blockers))
        defer_tenant_keys(conn, pf.deferred)
        if pf.deferred:
            report["deferred_constraints"] = [k.name for k in pf.deferred]
    return pf


def _note_held_on_target(run: Run, conn: Connection, plan: Plan, report: CutoverReport) -> dict[str, dict[str, int]]:
    """The target's own rows: there before the moves, so not the cutover's (not in the allow-list,
    not moved back by the reverse, no placement fault). Their keys stay in the server."""
    with run.step("allow-list: the moved rows, read back at step 14 under these locks") as info:
        held = held_on_target(conn, plan)
        report["held_on_target"] = held
        for rule in plan.moving:
            if held.get(rule.name, {}).get("patient"):
                build_owned_ids(conn, plan, rule, plan.target, id_table(rule, "held"))
        info["rows"] = sum(h.get("patient", 0) for h in held.values())
    return held


def _move_in_steps(run: Run, conn: Connection, plan: Plan, deferred: list[live_schema.TenantKey]) -> dict[str, int]:
    """The plan's move steps, one timed step each; an ON UPDATE CASCADE child moves before its parent
    (whose cascade would otherwise carry it). Returns the rows moved per table."""
    moved: dict[str, int] = {}
    order = live_schema.cascade_order([n for group in plan.move_steps for n in group], deferred)
    for group in plan.move_steps:
        with run.step("move " + ", ".join(group)) as info:
            before = sum(moved.values())
            for name in order[:max(order.index(n) for n in group) + 1]:  # an ON UPDATE CASCADE child first
                if name not in moved:
                    rule = plan.table(name)
                    moved[name] = int(conn.execute(ownership.move_owned(plan, rule, plan.source,
                                                                    plan.target)).rowcount)
            info["rows"] = sum(moved.values()) - before
    return moved


def _verify_and_complete(run: Run, conn: Connection, plan: Plan, report: CutoverReport, pf: preflight.Preflight,
                         baseline: dict[str, dict[str, int]], moved: dict[str, int], written: dict[str, int],
                         held: dict[str, dict[str, int]], spool: Path, id_files: dict[str, Path]) -> None:
    """Prove the moves, write the allow-list, and record the completed event with the run's summary:
    all in the transaction, so a failure here still rolls everything back."""
    check_tenant_keys(conn, pf.deferred)
    triggered: dict[str, dict[str, int]] = {}
    report["verified_by"] = verify(conn, plan, "execute", baseline, moved, written, {}, plan.source,
                                   plan.target, plan.fired(moved), triggered, probed=pf.probed)
    parts, held_parts = _write_allow_list(run, conn, plan, report, moved, held, triggered, spool, id_files)
    written[plan.audit.table] += sum(parts.values()) + held_parts + 1
    report["written"], report["committed_at"] = written, datetime.now(UTC).isoformat()
    if triggered:
        report["triggered"] = triggered
    fields = ("run_id", "actor", "started_at", "committed_at", "baseline", "moved", "written", "source",
              "target", "plan", "triggered", "listed_written", "held_on_target")
    summary: dict[str, Any] = {k: v for k, v in report.items() if k in fields}
    summary["allow_list_parts"] = parts
    audit.write_event(conn, plan, plan.audit.completed, sql.Literal(json.dumps(summary)))
    report["allow_list_parts"] = parts


def _write_allow_list(run: Run, conn: Connection, plan: Plan, report: CutoverReport, moved: dict[str, int],
                      held: dict[str, dict[str, int]], triggered: dict[str, dict[str, int]], spool: Path,
                      id_files: dict[str, Path]) -> tuple[dict[str, int], int]:
    """The moved rows' keys as audit parts (and spool files), the target's own rows'
    apart for the reverse; rolls back when the rows listed are not the rows moved. Returns the parts
    per table and the held rows' parts."""
    prefer_lz4(conn)
    parts: dict[str, int] = {}
    held_parts = 0
    for rule in plan.moving:
        own = id_table(rule, "held") if held.get(rule.name, {}).get("patient") else None
        if own is not None:  # recorded for the reverse, which must leave them where they are
            with open(os.devnull, "wb") as nowhere:
                held_parts += write_parts(conn, plan, held_run(run.run_id), rule.name, nowhere,
                                          held=own, of_held=True)[0]
        with _sink(spool, rule.name) as out:
            parts[rule.name], listed = write_parts(conn, plan, run.run_id, rule.name, out, held=own)
            # A trigger's rows on the target are patient-owned there too when the table's rule says
            # so: listed with the moved ones (A10 and the reverse find them all), never more.
            written_here = triggered.get(rule.name, {}).get(plan.target, 0)
            if not moved.get(rule.name, 0) <= listed <= moved.get(rule.name, 0) + written_here:
                bent = (f"{rule.name}: the move moved {moved.get(rule.name, 0)} rows"
                        + (f" and its triggers wrote {written_here} on {plan.target}" if written_here else "")
                        + f" but {listed} patient-owned rows are on {plan.target}; rolled back")
                raise RunFailed(bent, summary=bent)
            if listed > moved.get(rule.name, 0):
                report.setdefault("listed_written", {})[rule.name] = listed - moved.get(rule.name, 0)
        id_files[rule.name] = spool / f"{rule.name}.ids"
    return parts, held_parts


def refresh_views(run: Run, conn: Connection, plan: Plan) -> None:
    """Refresh the plan's ``[refresh] materialized_views`` after the moves, inside the transaction, as a
    step of its own (timed: each holds an exclusive lock on its view until COMMIT). Otherwise a view that
    counts rows per tenant keeps showing the moved rows on the source until someone refreshes it."""
    if not plan.refresh_views:
        return
    with run.step("refresh " + ", ".join(plan.refresh_views)) as info:
        for view in plan.refresh_views:
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(table_sql(view)))
        info["rows"] = len(plan.refresh_views)


def prefer_lz4(conn: Connection) -> None:
    """Compress this transaction's large audit payloads with lz4 where the server has it: pglz (the
    default) spent seconds per million ids on the allow-list while writers were held off, and lz4
    reads back as any value does. Set LOCAL: nothing else on the server changes."""
    conn.execute("SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings WHERE name = "
                 "'default_toast_compression' AND 'lz4' = ANY(enumvals)")


AUDIT_PART_BYTES = 64 * 1024 * 1024
"""The most key text one audit part holds: a quarter of jsonb's ceiling for a string (268435455
bytes), so a part never reaches it whatever the keys look like."""

PART_BLOCKS = 2048
"""Heap blocks of a table read for one part (16 MB with the default block size): what bounds a
part's usual size, and with it the client's memory, which holds one part's text at a time."""

_SLOTS = 1 << 9  # positions per block in a range of tuple ids: above the 291 tuples a heap page can hold


def held_run(run_id: str) -> str:
    """The run id under which a run records the target's own patient-owned rows (audit parts like the
    allow-list's): never the run's own, so no reader of the allow-list takes them for moved rows."""
    return f"{run_id}/held-by-target"


def held_on_target(conn: Connection, plan: Plan) -> dict[str, dict[str, int]]:
    """Per table, the patient-owned and provider-owned rows the target holds (tables holding none left out)."""
    out: dict[str, dict[str, int]] = {}
    for rule in plan.tables:
        patient, provider = db.one(conn, ownership.held_counts(plan, rule))
        found = {k: int(v) for k, v in (("patient", patient), ("provider", provider)) if v}
        if found:
            out[rule.name] = found
    return out


def write_parts(conn: Connection, plan: Plan, run_id: str, table: str, out: BinaryIO, held: str | None = None,
                of_held: bool = False) -> tuple[int, int]:
    """Store one table's allow-list, its patient-owned rows now on the target, as audit events of at
    most ``AUDIT_PART_BYTES`` of key text each, and copy the same text to ``out``; returns how many parts
    and how many keys.

    Under the cutover's locks, those rows less the ones the target held before the moves (``held``)
    are exactly the moved ones; the caller compares the count with the moves' own. A part is one key per line,
    each key as the report holds it (JSON in the column's own type; a JSON text never holds a raw
    newline), built by the server from a range of the table's tuple ids (a TID range scan reads only
    those blocks), in physical order: the order the report lists the keys in. A range whose text
    would pass that size is halved, down to one row. Capturing the keys during the moves
    (``UPDATE ... RETURNING`` into temp tables) made the moves 10-25% slower than the bare UPDATEs;
    reading them back once costs less, and the text travels to the client once, as the spool.

    ``held`` names the temp table of the target's own patient-owned rows (keyed as the table): they
    were there before the moves, so they are left out, or with ``of_held`` they alone are stored.
    """
    rule = plan.table(table)
    which = ownership.owned_on(plan, rule, plan.target, "r")
    if held is not None:
        which = sql.SQL("{owned} AND {neg} EXISTS (SELECT 1 FROM {h} h WHERE {join})").format(
            owned=which, neg=sql.SQL("" if of_held else "NOT"), h=ownership.ident(held),
            join=key_equal(rule.key, "r", "h"))
    with _scans_by_tid(conn):
        return _write_parts(conn, plan, run_id, table, out, AUDIT_PART_BYTES, which)


def _scans_by_tid(conn: Connection) -> AbstractContextManager[None]:
    """Index scans off while the parts are read. The planner's statistics predate the moves and say
    the target holds almost none of the table, so it took the tenant column's index for each range:
    every moved row's index entry read once per range (13 s of step 14 at scale 100, not 1 s)."""
    return db.local_settings(conn, dict.fromkeys(("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"),
                                                 "off"))


def _write_parts(conn: Connection, plan: Plan, run_id: str, table: str, out: BinaryIO, limit: int,
                 which: sql.Composable) -> tuple[int, int]:
    a, rule = plan.audit, plan.table(table)
    insert, fresh = audit.insert_head(conn, plan, sql.SQL("gen_random_uuid()"))
    # A partitioned or inherited table has no blocks of its own: a range of tuple ids applies to each
    # of its partitions, so the ranges cover the largest one.
    pages = int(db.one(conn, "WITH RECURSIVE tree(oid) AS (SELECT to_regclass(%s)::oid UNION ALL "
                             "SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid) "
                             "SELECT coalesce(max(pg_relation_size(oid)), 0) / current_setting('block_size')::bigint "
                             "FROM tree", (table_regclass(table),))[0])
    ranges = [(b * _SLOTS, min(b + PART_BLOCKS, pages) * _SLOTS) for b in range(0, pages, PART_BLOCKS)][::-1]
    part = listed = 0
    while ranges:
        lo, hi = ranges.pop()
        n, size, text = conn.execute(sql.SQL(
            "WITH agg AS MATERIALIZED (SELECT count(*) AS n, string_agg({j}::text, E'\\n') AS s FROM {t} r "
            "WHERE r.ctid >= {lo}::tid AND r.ctid < {hi}::tid AND {owned}), "
            "ins AS ({insert} SELECT {fresh}{target}, {kind}, "
            "jsonb_build_object('run_id', {rid}, 'table', {name}, 'part', {part}, 'keys', s), {sv} FROM agg "
            "WHERE octet_length(s) <= {size}) "
            "SELECT n, octet_length(s), CASE WHEN octet_length(s) <= {size} THEN convert_to(s, 'UTF8') END FROM agg"
        ).format(
            j=key_json(rule.key, "r"), t=table_sql(table), lo=sql.Literal(_tid(lo)), hi=sql.Literal(_tid(hi)),
            owned=which, insert=insert, fresh=fresh,
            target=tenants.literal(plan, plan.target), kind=sql.Literal(a.allow_list_part),
            rid=sql.Literal(run_id), name=sql.Literal(table), part=sql.Literal(part), size=sql.Literal(limit),
            sv=sql.Literal(a.source_value)), binary=True).fetchone() or (0, None, None)
        if size is None:
            continue  # no moved row in this range
        if text is None:
            if hi - lo == 1:
                too_big = (f"{table}: one key's text is {size} bytes, more than an audit part holds ({limit}); "
                           f"nothing changed")
                raise RunFailed(too_big, summary=too_big)
            mid = (lo + hi) // 2
            ranges += [(mid, hi), (lo, mid)]
            continue
        out.write(b"\n" + text if part else text)
        part += 1
        listed += int(n)
    return part, listed


def _tid(position: int) -> str:
    return f"({position // _SLOTS},{position % _SLOTS})"


def ids_json(plan: Plan, ids: dict[str, str]) -> sql.Composed:
    """A jsonb object {table: [keys]} built server-side from the temp id tables (keys kept whole), in
    capture order: a sweep's few stragglers, recorded in its event."""
    return sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
        sql.SQL("{}, (SELECT coalesce(jsonb_agg({j}), '[]'::jsonb) FROM {i})").format(
            sql.Literal(t), j=key_json(plan.table(t).key), i=ownership.ident(ids[t]))
        for t in ids))


@contextmanager
def guarded(url: str, run: Run, report: CutoverReport | dict[str, Any], timeouts: Timeouts,
            id_files: dict[str, Path] | None = None) -> Iterator[Any]:
    """One connection, one transaction: any way out but the body's own commit is a rollback.

    Errors become :class:`RunFailed` carrying the report, so the caller can still write it.
    """
    conn = db.connect(url, application_name=f"cutover-{run.kind}")
    try:
        yield conn
    except RunFailed as exc:
        report["error"] = str(exc)
        raise _with_report(exc, report, id_files or {}) from None
    except psycopg.Error as exc:
        report["error"] = _describe(exc, timeouts)
        failed = RunFailed(f"rolled back: {report['error']}", summary=f"rolled back: {_cause(exc, timeouts)}")
        raise _with_report(failed, report, id_files or {}) from None
    except KeyboardInterrupt:
        report["error"] = "interrupted by the operator"
        stopped = RunFailed("interrupted, rolled back", ExitCode.INTERRUPTED,
                            summary="interrupted by the operator, rolled back")
        raise _with_report(stopped, report, id_files or {}) from None
    finally:
        _rollback_quietly(conn)  # a no-op after a commit
        conn.close()
        report["duration_s"] = round(time.monotonic() - run.t0, 3)


def commit(conn: Connection, url: str, plan: Plan, run_id: str, kind: str | None = None) -> None:
    """Commit; if the connection dies during COMMIT, ask the database what happened.

    A lost connection at COMMIT leaves the outcome unknown to the client; the run's audit event is
    the database's own answer, so the report never claims a rollback that was in fact a commit.
    """
    try:
        conn.commit()
    except psycopg.OperationalError as exc:
        if committed_in_database(url, plan, run_id, kind or plan.audit.completed):
            return
        raise RunFailed(f"connection lost during COMMIT ({redact(str(exc).strip().splitlines()[0])}); the "
                        f"database confirms it did NOT commit; nothing changed",
                        summary="connection lost during COMMIT; the database confirms it did NOT commit") from None


def committed_in_database(url: str, plan: Plan, run_id: str, kind: str) -> bool:
    """Is run ``run_id``'s ``kind`` event in the database? Asked on a new connection after a COMMIT
    whose answer was lost."""
    with db.connection(url, autocommit=True) as check:
        return bool(audit.events(check, plan, [kind], run_id=run_id, slim=True))


def _rollback_quietly(conn: Connection) -> None:
    try:
        conn.rollback()
    except psycopg.Error:
        pass  # the session is gone: the server has already rolled the transaction back


def _describe(exc: psycopg.Error, timeouts: Timeouts) -> str:
    """The real cause: the timeouts by their option, a lost session as the rollback it means, the rest
    as every command describes a database error (:func:`cutover.core.db.describe_error`)."""
    first = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if isinstance(exc, pgerr.QueryCanceled):
        return f"statement_timeout {timeouts.statement} reached ({first}); raise --statement-timeout"
    if isinstance(exc, pgerr.LockNotAvailable):
        return f"lock_timeout {timeouts.lock} reached ({first}); another session holds a lock, retry once it is gone"
    if db.connection_lost(exc):
        return f"connection lost ({first}); the server rolled the transaction back"
    return db.describe_error(exc)


def _cause(exc: psycopg.Error, timeouts: Timeouts) -> str:
    """:func:`_describe` without the server's own text, which can quote a row's values (a key in a
    constraint's or a trigger's message): the cause, the SQLSTATE, and the table and constraint
    names the server reports."""
    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, pgerr.QueryCanceled):
        return f"statement_timeout {timeouts.statement} reached"
    if isinstance(exc, pgerr.LockNotAvailable):
        return f"lock_timeout {timeouts.lock} reached"
    cause = db.cause_of(exc)
    diag = getattr(exc, "diag", None)
    names = [f"{what} {value}" for what, value in (("table", getattr(diag, "table_name", None)),
                                                    ("constraint", getattr(diag, "constraint_name", None))) if value]
    return ", ".join([cause + (f" (SQLSTATE {state})" if state else ""), *names])


def _with_report(exc: RunFailed, report: CutoverReport | dict[str, Any], id_files: dict[str, Path]) -> RunFailed:
    exc.report, exc.id_files = cast(CutoverReport, report), id_files
    return exc
