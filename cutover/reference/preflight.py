"""Pre-flight: can the cutover run on this database, and what would it move?

Run read-only by ``cutover dry-run`` and again inside the execute transaction (step 3), so what was
READY in the rehearsal is re-proved under the cutover's own locks. Every blocker is collected (not
just the first): an operator fixing a classifier dict wants the whole list in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from cutover.core import audit, db, live_schema, tenants
from cutover.core.db import Connection, Query
from cutover.core.plan import Plan, table_regclass, table_sql, toml_key
from cutover.core.row_keys import key_json, key_text
from cutover.reference import ownership

ROW_SECURITY = "row-security"


@dataclass(frozen=True)
class Blocker:
    """One reason the cutover must not run, with the evidence an operator needs to fix it."""

    code: str
    message: str
    rows: tuple[str, ...] = ()

    def line(self) -> str:
        sample = f" (e.g. {', '.join(self.rows)})" if self.rows else ""
        return f"{self.code}: {self.message}{sample}"


@dataclass
class Preflight:
    """The pre-flight's findings: planned moves per table and the blockers."""

    planned: dict[str, int] = field(default_factory=dict)
    allow_list_bytes: dict[str, int] = field(default_factory=dict)
    blockers: list[Blocker] = field(default_factory=list)
    last_run: dict[str, Any] | None = None
    # Tenant-keyed foreign keys the moves break until both sides have moved: deferred for the
    # cutover's transaction and checked before COMMIT (live_schema.TenantKey).
    deferred: list[live_schema.TenantKey] = field(default_factory=list)
    # Rows the audit insert's probe inserted and rolled back to its savepoint (the execute's pre-flight
    # only): the transaction's row statistics count them, the tables do not hold them.
    probed: dict[str, int] = field(default_factory=dict)
    # Patient-owned rows the target already holds, per table: its own, left where they are.
    held: dict[str, int] = field(default_factory=dict)
    # Triggers the moves fire that write other planned tables: (table, trigger, written table, declared in
    # the plan's written_by), the declared ones whether or not their function's source shows it.
    trigger_writes: list[tuple[str, str, str, bool]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.blockers

    @property
    def verdict(self) -> str:
        return "READY" if self.ready else "BLOCKED"

    @property
    def already_cut_over(self) -> bool:
        return any(b.code == "already-cut-over" for b in self.blockers)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "planned": self.planned, "held_by_target": self.held,
                "allow_list_bytes": self.allow_list_bytes,
                "deferred": [k.short() for k in self.deferred],
                "trigger_writes": [{"trigger": f"{t}.{g}", "writes": w, "declared": d}
                                   for t, g, w, d in self.trigger_writes],
                "blockers": [{"code": b.code, "message": b.message, "rows": list(b.rows)} for b in self.blockers]}


def _one(conn: Connection, query: Query, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def catalog_columns(conn: Connection, table: str) -> set[str]:
    rows = conn.execute("SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
                        "AND a.attnum > 0 AND NOT a.attisdropped", (table_regclass(table),)).fetchall()
    return {r[0] for r in rows}


def last_audit_run(conn: Connection, plan: Plan) -> dict[str, Any] | None:
    """The newest completed-or-reversed audit event on the target: the database's own record of state,
    without its allow-list (the caller wants the run, not its keys)."""
    last = audit.newest(conn, plan, [plan.audit.completed, plan.audit.reversed])
    return None if last is None else {"kind": last.kind, **last.payload}


def _schema_head(conn: Connection, plan: Plan) -> list[Blocker]:
    """The schema head as the plan's [features] schema_versions reads it: alembic's one row is the head, a
    Rails-style table of applied versions must hold it among them, and with no version table there is none."""
    versions = plan.features.schema_versions
    if versions == "none":
        return []
    table, column = table_sql(plan.version_table), ownership.ident(plan.version_column)
    if versions == "rails":
        n, present = db.one(conn, sql.SQL("SELECT count(*), coalesce(bool_or({c}::text = {h}), false) FROM {t}").format(
            c=column, h=sql.Literal(plan.schema_head), t=table))
        if not present:
            return [Blocker("wrong-schema-head", f"{plan.version_table} holds {n} applied versions, not "
                                                 f"'{plan.schema_head}'; run the migration first, or fix [plan] "
                                                 f"schema_head")]
        return []
    rows = conn.execute(sql.SQL("SELECT {c}::text FROM {t}").format(c=column, t=table)).fetchall()
    heads = [r[0] for r in rows]
    if heads != [plan.schema_head]:
        return [Blocker("wrong-schema-head", f"{plan.version_table} holds {heads or 'no row'}, expected exactly "
                                             f"['{plan.schema_head}']; run the Phase 1 migration first"
                                             + ("; a table of every applied version is [features] schema_versions "
                                                "= \"rails\"" if len(heads) > 1 else ""))]
    return []


def tenant_problems(conn: Connection, plan: Plan) -> list[str]:
    """What is wrong with the source and target tenant rows (shared with check A2): they exist, and the
    features the plan declares (active and protected flags, mirrored settings) hold on the target.

    Which row is which is asked of the database, in the key's own type: a uuid key comes back as a
    ``UUID``, which never equals the plan's text."""
    plan = tenants.typed(conn, plan)
    f = plan.features
    src, tgt = tenants.literal(plan, plan.source), tenants.literal(plan, plan.target)
    key = ownership.ident(tenants.TENANT_KEY)
    columns = [sql.SQL("{} = {}").format(key, src), sql.SQL("{} = {}").format(key, tgt)] + (
        [ownership.ident(plan.settings_column)] if f.tenant_settings else []) + (
        [ownership.ident(plan.active_column), ownership.ident(plan.protected_column)] if f.tenant_flags else [])
    q = sql.SQL("SELECT {cols} FROM {t} WHERE {id} IN ({src}, {tgt})").format(
        cols=sql.SQL(", ").join(columns), id=key, t=table_sql(plan.tenant_table), src=src, tgt=tgt)
    found: dict[str, tuple[Any, ...]] = {}
    for is_source, is_target, *row in conn.execute(q).fetchall():
        found.update({t: tuple(row) for t, hit in ((plan.source, is_source), (plan.target, is_target)) if hit})
    problems = [f"tenant '{t}' does not exist" for t in (plan.source, plan.target) if t not in found]
    if problems:
        return problems
    target = list(found[plan.target])
    if f.tenant_settings:
        src_settings, tgt_settings = found[plan.source][0] or {}, target.pop(0) or {}
        diff = [k for k in plan.mirrored_settings
                if tgt_settings.get(k) != src_settings.get(k) or k not in tgt_settings]
        if diff:
            shown = ", ".join(f"{k}={tgt_settings.get(k)!r} (source {src_settings.get(k)!r})" for k in diff)
            problems.append(f"tenant '{plan.target}' settings not mirrored from '{plan.source}': {shown}")
    if f.tenant_flags:
        if not target[0]:
            problems.append(f"tenant '{plan.target}' is not active")
        if not target[1]:
            problems.append(f"tenant '{plan.target}' is not protected")
    return problems


def rls_problems(conn: Connection, plan: Plan) -> list[str]:
    """Tables whose row-level security is not enabled, not forced, or without a policy (shared with A21)."""
    rows = conn.execute(
        "SELECT u.n, c.relrowsecurity, c.relforcerowsecurity, "
        "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) FROM unnest(%s::text[], %s::text[]) u(n, r) "
        "JOIN pg_class c ON c.oid = to_regclass(u.r)",
        (list(plan.table_names), [table_regclass(t) for t in plan.table_names])).fetchall()
    out = []
    for name, enabled, forced, policies in sorted(rows):
        missing = [what for what, ok in (("enabled", enabled), ("forced", forced), ("policy", policies > 0))
                   if not ok]
        if missing:
            out.append(f"{name}: RLS lacks {' / '.join(missing)}")
    return out


def rls_declared_absent(conn: Connection, plan: Plan) -> list[Blocker]:
    """A plan that declares no row-level security on a schema whose tables have it would leave the RLS posture
    (A21) unchecked for a schema that relies on it: the declaration is wrong, and says which tables show it."""
    rows = conn.execute("SELECT t FROM unnest(%s::text[], %s::text[]) AS u(t, r) JOIN pg_class c "
                        "ON c.oid = to_regclass(r) WHERE c.relrowsecurity ORDER BY 1",
                        (list(plan.table_names), [table_regclass(t) for t in plan.table_names])).fetchall()
    if not rows:
        return []
    return [Blocker("rls-declared-absent", f"[features] row_level_security = false, but {len(rows)} planned tables "
                                           f"have row-level security enabled; declare row_level_security = true "
                                           f"(the checks then verify it)", tuple(r[0] for r in rows[:5]))]


def cascade_blocker(conn: Connection, plan: Plan, key: live_schema.TenantKey) -> Blocker | None:
    """Rows an ON UPDATE CASCADE key would carry along with a moving parent although the plan keeps
    them (their own table's rule does not move them): the cascade would put them on the target
    against the plan. None when there are none."""
    child, parent = plan.table(key.table), plan.table(key.key.parent)
    join = sql.SQL(" AND ").join(sql.SQL("c.{} = p.{}").format(ownership.ident(a), ownership.ident(b))
                                 for a, b in zip(key.key.columns, key.key.parent_columns, strict=True))
    n, sample = db.one(conn, sql.SQL(
        "SELECT count(*), (array_agg({ck} ORDER BY {ck}))[1:5] FROM {ct} c JOIN {pt} p ON {join} "
        "WHERE {parent_moves} AND NOT {child_moves}").format(
        ck=key_text(child.key, "c"), ct=table_sql(child.name), pt=table_sql(parent.name), join=join,
        parent_moves=ownership.owned_on(plan, parent, plan.source, "p"),
        child_moves=ownership.owned_on(plan, child, plan.source, "c")))
    if not n:
        return None
    return Blocker("tenant-key-cascade", (
        f"foreign key {key.short()} is ON UPDATE CASCADE and {n} {child.name} rows the plan does not move point at "
        f"{parent.name} rows that move: the cascade would carry them to '{plan.target}' against the plan; fix the "
        f"rows or the plan's rules for {child.name}, or re-create the key ON UPDATE NO ACTION DEFERRABLE"),
        tuple(sample or ()))


def run(conn: Connection, plan: Plan, *, planned: bool = True) -> Preflight:
    """Every blocker of the reference contract, and the planned moves; reads only.

    ``planned`` counts the rows to move and measures the allow-list's bytes (the dry run tells the
    operator both). Under the execute's locks they are left out, where every second holds writers
    off: a full scan of each moving table only to say what the moves then count themselves, and
    the verification proves what they did.
    """
    result = Preflight()
    plan = tenants.typed(conn, plan)
    hidden = db.hidden_by_row_security(conn, plan.all_tables)
    if hidden is not None:  # every count below would fail (row_security is off), or read a partial database
        result.blockers.append(Blocker(ROW_SECURITY, hidden))
        return result
    if not _schema_matches(conn, plan, result):
        return result  # the plan's own queries would fail on a missing table or column
    result.blockers += _schema_head(conn, plan)
    result.blockers += [Blocker("target-tenant", p) for p in tenant_problems(conn, plan)]
    result.blockers += _row_blockers(conn, plan, result.deferred)
    _read_audit_trail(conn, plan, result)
    if planned:
        _measure_moves(conn, plan, result)
    return result


def _schema_matches(conn: Connection, plan: Plan, result: Preflight) -> bool:
    """The live schema against the plan: its differences as blockers, the trigger writes and the
    keys the cutover defers noted; False when a table or column the plan's queries need is missing."""
    schema = live_schema.read(conn, plan)
    triggers = live_schema.trigger_writes(conn, plan)
    result.trigger_writes = [(w.table, w.trigger, r.name, True) for r in plan.tables for w in r.written_by]
    result.trigger_writes += [(t.table, t.trigger, w, False) for t in triggers for w in t.undeclared(plan)]
    differences = (live_schema.compare(plan, schema) + live_schema.materialized_view_differences(conn, plan)
                   + live_schema.trigger_differences(plan, triggers))
    result.deferred = [k for k in live_schema.tenant_keys(plan, schema) if k.deferred_by_cutover]
    missing = [d.table for d in differences if d.code == "missing-table"]
    if missing and set(plan.all_tables) <= set(missing):
        result.blockers.append(_missing_tables_blocker(conn, missing))
        return False
    for diff in differences:
        rows: tuple[str, ...] = ()
        if diff.code == "unplanned-table" and plan.tenant_column in catalog_columns(conn, diff.table):
            rows = tuple(f"{tenant}: {n} rows" for tenant, n in conn.execute(sql.SQL(
                "SELECT {c}::text, count(*) FROM {t} GROUP BY 1 ORDER BY 1 LIMIT 5").format(
                c=ownership.ident(plan.tenant_column), t=table_sql(diff.table))).fetchall())
        result.blockers.append(Blocker(diff.code, diff.message, rows))
    return not any(d.structural for d in differences)


def _missing_tables_blocker(conn: Connection, missing: list[str]) -> Blocker:
    """Every planned table missing: the wrong database or search path, said with the schema that has them."""
    current, elsewhere = live_schema.schemas_holding(conn, missing)
    fix = "wrong database, or pass the matching --plan"
    if elsewhere:
        fix = (f"they are in schema {elsewhere[0]}: put it first in the search path, "
               f"options=-csearch_path%3D{elsewhere[0]} in the --db-url, or PGOPTIONS='-c search_path="
               f"{elsewhere[0]}'")
    return Blocker("missing-tables", f"tables the plan names are missing from schema {current}: "
                                     f"{', '.join(map(toml_key, missing))}; {fix}")


def _row_blockers(conn: Connection, plan: Plan, deferred: list[live_schema.TenantKey]) -> list[Blocker]:
    """The rows that would move wrongly or not at all: unclassified values, orphans, cascades the
    plan does not follow, and row-level security that is not as the plan declares."""
    blockers: list[Blocker] = []
    for rule in plan.tables:
        if rule.owner == "classified":
            values = [r[0] for r in conn.execute(ownership.unclassified_values(plan, rule)).fetchall()]
            if values:
                blockers.append(Blocker(
                    f"unclassified-{rule.classification}",
                    f"{rule.name}.{rule.column} values not in [classification.{rule.classification}]: "
                    f"{', '.join(repr(v) for v in values[:10])}; classify them in the plan"))
    for link in ownership.links(plan):
        n, sample = db.one(conn, ownership.link_violations(plan, link, after_move=True))
        if n:
            blockers.append(Blocker(
                "orphans", f"{n} {link.child.name} rows would end on another tenant than their parent "
                           f"({link.label}); fix the rows or the plan's rules", tuple(sample or ())))
    blockers += [b for k in deferred if k.cascades and (b := cascade_blocker(conn, plan, k))]
    if plan.features.row_level_security:  # a schema without RLS declares so: no policy is made for the tool
        blockers += [Blocker("rls-off", p) for p in rls_problems(conn, plan)]
    else:
        blockers += rls_declared_absent(conn, plan)
    return blockers


def _read_audit_trail(conn: Connection, plan: Plan, result: Preflight) -> None:
    """Whether the cutover can write its events and has already run: the audit-insert probe, the
    last run, the patient rows the target holds, and a blocker when a committed run says it is done."""
    refused, probed = audit.insert_problems(conn, plan)
    result.blockers += [Blocker("audit-insert", p) for p in refused]
    if probed:
        result.probed[plan.audit.table] = probed
    # A table that refuses the cutover's events (an enum without its types) cannot hold any to read.
    result.last_run = None if refused else last_audit_run(conn, plan)
    for rule in plan.moving:
        n = _one(conn, ownership.count_owned(plan, rule, plan.target))
        if n:
            result.held[rule.name] = int(n)
    # Decided by the audit trail: patient rows on the target may be its own (a tenant that had users
    # before), which the cutover leaves where they are; only a committed run means it is done.
    if result.last_run is not None and result.last_run["kind"] == plan.audit.completed:
        shown = ", ".join(f"{t}={n}" for t, n in result.held.items()) or "none"
        result.blockers.append(Blocker("already-cut-over", (
            f"run {result.last_run.get('run_id')} committed at {result.last_run.get('committed_at')} (the audit "
            f"trail's last {plan.audit.completed} event, not reversed); patient rows on '{plan.target}': {shown}")))


def _measure_moves(conn: Connection, plan: Plan, result: Preflight) -> None:
    """The rows each moving table would move and its keys' bytes in the allow-list (for the dry run)."""
    for rule in plan.moving:
        n, size = db.one(conn, sql.SQL("SELECT count(*), coalesce(sum(octet_length({k}::text) + 1), 0) FROM {t} "
                                       "WHERE {w}").format(
            k=key_json(rule.key), t=table_sql(rule.name), w=ownership.owned_on(plan, rule, plan.source)))
        result.planned[rule.name] = int(n)
        result.allow_list_bytes[rule.name] = int(size)


def audit_parts(sizes: dict[str, int], part_bytes: int) -> int:
    """The fewest audit events the allow-list takes: each moving table's key text (a line per key)
    in parts of at most ``part_bytes``; smaller parts where its keys are spread over many pages."""
    return sum(-(-size // part_bytes) for size in sizes.values())
