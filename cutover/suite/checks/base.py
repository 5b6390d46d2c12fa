"""What every check stands on: the evidence it returns, and the read-only context it queries through.

Independence is the point: nothing in this package imports the reference cutover (an import-linter
contract holds it). Every predicate is written again from the plan, so a cutover bug cannot make a
check agree with it. Each check returns the :class:`Evidence` an operator acts on: what was expected,
what was found, up to 20 row ids, and the query that found them. The checks themselves live in
modules by concern (posture, placement, links, accounting); the catalogue names and orders them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from cutover.core import tenants
from cutover.core.db import Connection
from cutover.core.plan import Plan, TableRule, table_sql
from cutover.core.redact import redact
from cutover.core.row_keys import CutoverReport, key_order, key_text

MAX_ROWS = 20



@dataclass
class Evidence:
    """What one check found; ``ok`` false means the check fails with this as its message."""

    check: str
    subject: str = ""
    tenant: str = ""
    expected: str = ""
    found: str = ""
    rows: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    title: str = ""  # set by the catalogue when the check runs

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def heading(self) -> str:
        """``A3 nothing patient-owned remains on the source [events]``: the title comes from the catalogue."""
        return " ".join(p for p in (self.check, self.title, f"[{self.subject}]" if self.subject else "") if p)

    def text(self) -> str:
        lines = [self.heading, f"tenant:   {self.tenant}", f"expected: {self.expected}",
                 f"found:    {self.found or '; '.join(self.problems)}"]
        if len(self.problems) > 1 or (self.found and self.problems):
            lines += [f"  - {p}" for p in self.problems]
        if self.rows:
            lines.append(f"rows ({len(self.rows)} shown, max {MAX_ROWS}): {', '.join(self.rows[:MAX_ROWS])}")
        lines += [f"query:    {q}" for q in self.queries]
        return redact("\n".join(lines))

    def about(self, *, subject: str = "", tenant: str = "", expected: str = "") -> None:
        """Say what the check looked at; its id and title are the catalogue's, set before the check runs,
        so a check function never writes its own id (one registry, no id that can drift from its title)."""
        self.subject, self.tenant, self.expected = subject, tenant, expected

    def fail(self, problem: str, rows: list[str] | None = None) -> None:
        self.problems.append(problem)
        for r in rows or []:
            if len(self.rows) < MAX_ROWS and r not in self.rows:
                self.rows.append(r)



def I(*names: str) -> sql.Identifier:  # noqa: E743 (short on purpose: queries read better)
    return sql.Identifier(*names)


T = table_sql  # a plan's table name (``app.patients`` with its schema), short like I


class Checker:
    """The read-only connection, the plan and the report the checks share, with the predicates they
    all need (is a row patient-owned, sample the offending rows, follow a reference)."""

    def __init__(self, conn: Connection, plan: Plan, report: CutoverReport | None = None) -> None:
        self.conn, self.plan, self.report = conn, tenants.typed(conn, plan), report
        self._held: dict[str, Any] | None = None

    def literal(self, tenant: str) -> sql.Composable:
        """A tenant id cast to the tenant key's own type (uuid, bigint, text: the catalog says)."""
        return tenants.literal(self.plan, tenant)

    def held(self, ev: Evidence, table: str, owner: str) -> int:
        """Rows of ``table`` owned by ``owner`` (patient, provider) that the target held of its own before
        the cutover: the report's baseline, else the committed cutover's audit event (Set B without a
        report). Rows there before are no placement fault; the checks compare with them."""
        if self._held is None:
            held = (self.report or {}).get("held_on_target")
            if held is None:
                a = self.plan.audit
                rows = self.run(ev, sql.SQL(
                    "SELECT {pl} -> 'held_on_target' FROM {t} WHERE {ty} = {done} AND {src} = {sv} "
                    "ORDER BY {pl} ->> 'committed_at' DESC LIMIT 1").format(
                    pl=I(a.payload_column), t=T(a.table), ty=I(a.type_column), done=sql.Literal(a.completed),
                    src=I(a.source_column), sv=sql.Literal(a.source_value)))
                held = rows[0][0] if rows and rows[0][0] else {}
            self._held = dict(held)
        return int((self._held.get(table) or {}).get(owner, 0))

    def run(self, ev: Evidence, query: sql.SQL | sql.Composed, params: Any = None) -> list[tuple[Any, ...]]:
        """The query's rows. A table or column the plan names that the database lacks is the check's
        failure, in one line (the checks' connection is in autocommit: the next query is unaffected)."""
        ev.queries.append(" ".join(query.as_string(self.conn).split()))
        try:
            return list(self.conn.execute(query, params).fetchall())
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raise  # inside a transaction of the check's own (as_app), which reports it
            ev.fail(f"the database lacks a table or column the plan names ({redact(str(exc).splitlines()[0])}); "
                    "fix the plan: 'cutover plan check' names its key")
            return []

    def patient(self, rule: TableRule, alias: str = "t") -> sql.Composable:
        """Is a row patient-owned, by the plan's rule (written here, independently of the cutover)."""
        if rule.owner == "patient":
            return sql.SQL("TRUE")
        if rule.owner == "provider":
            return sql.SQL("FALSE")
        return sql.SQL("{} = ANY({})").format(I(alias, rule.column or ""), sql.Literal(self.values(rule, "patient")))

    def values(self, rule: TableRule, cls: str) -> list[str]:
        if rule.owner == "column":
            return list(rule.patient_values) if cls == "patient" else []
        mapping = self.plan.classifications.get(rule.classification or "", {})
        return sorted(v for v, c in mapping.items() if c == cls)

    def sample(self, ev: Evidence, rule: TableRule, where: sql.Composable) -> int:
        rows = self.run(ev, sql.SQL("SELECT count(*) OVER (), {k} FROM {t} t WHERE {w} ORDER BY {o} "
                                     "LIMIT {n}").format(k=key_text(rule.key, "t"), t=T(rule.name), w=where,
                                                         o=key_order(rule.key, "t"), n=sql.Literal(MAX_ROWS)))
        if rows:
            ev.rows.extend(r[1] for r in rows if len(ev.rows) < MAX_ROWS)
        return int(rows[0][0]) if rows else 0

    def tenant(self, alias: str = "t") -> sql.Identifier:
        return I(alias, self.plan.tenant_column)

    def links(self) -> Iterator[tuple[str, TableRule, str, TableRule, sql.Composable, str | None]]:
        """(label, child, kind, parent, parent key expression, cross_tenant) for every reference of the plan."""
        for rule in self.plan.tables:
            for ref in rule.references:
                yield (f"{rule.name}.{ref.column}", rule, "column", self.plan.table(ref.table), I("c", ref.column),
                       ref.cross_tenant)
            if rule.case_json is not None:
                cj = rule.case_json
                parent = self.plan.table(cj.table)
                # The JSON value read as the parent key column's own type (its input function, via
                # jsonb_populate_record): no uuid = text, and the parent's index still serves the join.
                typed = sql.SQL("(jsonb_populate_record(NULL::{p}, jsonb_build_object({k}, {c} -> {f}))).{pk}").format(
                    p=T(parent.name), k=sql.Literal(parent.key[0]), c=I("c", cj.column), f=sql.Literal(cj.key),
                    pk=I(parent.key[0]))
                yield (f"{rule.name}.{cj.column}.{cj.key}", rule, "json", parent, typed, cj.cross_tenant)

    def link(self, ev: Evidence, child: TableRule, parent: TableRule, key: sql.Composable,
              cross_tenant: str | None) -> int:
        """Children whose parent is missing, or on another tenant than the plan declares allowed."""
        excuse: sql.Composable = sql.SQL("FALSE")
        share = self.plan.share_table
        if cross_tenant == "provider":  # any tenant but the patient tenant
            excuse = sql.SQL("p.{} <> {}").format(I(self.plan.tenant_column), self.literal(self.plan.target))
        elif cross_tenant == "share" and share is not None and share.share_target is not None:
            case_col = next((r.column for r in share.references if r.table == parent.name), None)
            if case_col is not None:
                excuse = sql.SQL("EXISTS (SELECT 1 FROM {s} s WHERE s.{sc} = p.{pk} AND s.{st} = c.{ct})").format(
                    s=T(share.name), sc=I(case_col), pk=I(parent.key[0]), st=I(share.share_target),
                    ct=I(self.plan.tenant_column))
        query = sql.SQL("SELECT count(*) OVER (), {ck} FROM {ct} c LEFT JOIN {pt} p ON p.{pk} = {key} "
                        "WHERE {key} IS NOT NULL AND (p.{pk} IS NULL OR (c.{ten} <> p.{ten} AND NOT {excuse})) "
                        "ORDER BY {co} LIMIT {n}").format(
            ck=key_text(child.key, "c"), ct=T(child.name), pt=T(parent.name), pk=I(parent.key[0]), key=key,
            co=key_order(child.key, "c"), ten=I(self.plan.tenant_column), excuse=excuse, n=sql.Literal(MAX_ROWS))
        rows = self.run(ev, query)
        ev.rows.extend(r[1] for r in rows if len(ev.rows) < MAX_ROWS)
        return int(rows[0][0]) if rows else 0

    def as_app(self, ev: Evidence, tenant: str, query: sql.Composed) -> set[str] | None:
        """Rows a query returns as the application role with the tenant setting: RLS as the app sees it.

        Row security is switched on for this transaction only: every other query of the checks runs
        with it off, so that no policy can hide a row from them."""
        p = self.plan
        try:
            with self.conn.transaction():
                self.conn.execute(sql.SQL("SET LOCAL ROLE {}").format(I(p.app_role)))
                self.conn.execute("SET LOCAL row_security = on")
                self.conn.execute("SELECT set_config(%s, %s, true)", (p.tenant_setting, tenant))
                return {r[0] for r in self.run(ev, query)}
        except psycopg.Error as exc:  # any failure here is the finding
            ev.fail(f"cannot query as {p.app_role} ({str(exc).splitlines()[0]}); the check user must be a member "
                    f"of {p.app_role} (GRANT {p.app_role} TO <check user>)")
            return None

    def shared_to(self, ev: Evidence, rule: TableRule, tenant: str) -> set[str]:
        """Rows of ``rule`` a case share grants ``tenant`` (the provider sees its forwarded cases)."""
        share = self.plan.share_table
        if share is None or share.share_target is None:
            return set()
        case_ref = next(iter(share.references), None)
        if case_ref is None:
            return set()
        if rule.name == share.name:
            where: sql.Composable = sql.SQL("t.{} = {}").format(I(share.share_target), self.literal(tenant))
        else:
            if rule.name == case_ref.table:
                col = rule.key[0]
            else:
                col = next((r.column for r in rule.references if r.table == case_ref.table), "")
                if not col:
                    return set()
            where = sql.SQL("EXISTS (SELECT 1 FROM {s} s WHERE s.{sc} = t.{c} AND s.{st} = {ten})").format(
                s=T(share.name), sc=I(case_ref.column), c=I(col), st=I(share.share_target), ten=self.literal(tenant))
        return {r[0] for r in self.run(ev, sql.SQL("SELECT {k} FROM {t} t WHERE {w}").format(
            k=key_text(rule.key, "t"), t=T(rule.name), w=where))}

    def committed_report(self, ev: Evidence) -> CutoverReport | None:
        if self.report is None:
            ev.fail(f"no cutover report: pass the execute's report with --report-path ({ev.check} compares the "
                    "database with it)")
            return None
        if self.report.get("commit_status") != "committed":
            ev.fail(f"the report says commit_status={self.report.get('commit_status')!r}, not 'committed'")
            return None
        return self.report

