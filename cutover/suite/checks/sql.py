"""The 12 automated checks of the smoke matrix, as read-only queries built from the plan.

Independence is the point: nothing here imports the cutover module (engine, rules, preflight,
aftercare). Every predicate is written again from the plan, so a cutover bug cannot make a check
agree with it. Each check returns the :class:`Evidence` an operator acts on: what was expected,
what was found, up to 20 row ids, and the query that found them.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from cutover.core import catalog, db
from cutover.core.db import Connection
from cutover.core.plan import Plan, TableRule
from cutover.core.redact import redact
from cutover.core.report_types import key_label, key_order, key_records, key_text, listed_keys, listed_rows

MAX_ROWS = 20

TITLES = {
    "A1": "schema head is exactly the plan's revision",
    "A2": "target tenant exists, active, protected, settings mirrored",
    "A3": "nothing patient-owned remains on the source",
    "A4": "references are tenant-consistent",
    "A5": "row conservation against the report's baseline",
    "A6": "provider data intact: no provider-owned row on the target",
    "A7": "case shares resolve, and providers see exactly their shared cases",
    "A8": "events classified and on the right tenant",
    "A9": "idempotency keys on their case's tenant; patient routes on the target",
    "A10": "allow-list exact: the target holds exactly the report's rows",
    "A20": "no stragglers: the sweep predicate finds nothing",
    "A21": "RLS posture: enabled, forced, policies, no BYPASSRLS, nothing patient visible on the source",
}
SET_B = ("A1", "A2", "A3", "A4", "A6", "A7", "A8", "A9")


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

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def title(self) -> str:
        return f"{self.check} {TITLES[self.check]}" + (f" [{self.subject}]" if self.subject else "")

    def text(self) -> str:
        lines = [self.title, f"tenant:   {self.tenant}", f"expected: {self.expected}",
                 f"found:    {self.found or '; '.join(self.problems)}"]
        if len(self.problems) > 1 or (self.found and self.problems):
            lines += [f"  - {p}" for p in self.problems]
        if self.rows:
            lines.append(f"rows ({len(self.rows)} shown, max {MAX_ROWS}): {', '.join(self.rows[:MAX_ROWS])}")
        lines += [f"query:    {q}" for q in self.queries]
        return redact("\n".join(lines))

    def fail(self, problem: str, rows: list[str] | None = None) -> None:
        self.problems.append(problem)
        for r in rows or []:
            if len(self.rows) < MAX_ROWS and r not in self.rows:
                self.rows.append(r)


def _key_json(columns: tuple[str, ...], alias: str) -> sql.Composable:
    """A key as the report holds it (jsonb): written here again, so A10 does not trust the report's writer."""
    if len(columns) == 1:
        return sql.SQL("to_jsonb({})").format(I(alias, columns[0]))
    return sql.SQL("jsonb_build_array({})").format(sql.SQL(", ").join(I(alias, c) for c in columns))


def I(*names: str) -> sql.Identifier:  # noqa: E743 (short on purpose: queries read better)
    return sql.Identifier(*names)


class Checker:
    """Runs the checks on one read-only connection; each method returns its evidence."""

    def __init__(self, conn: Connection, plan: Plan, report: Mapping[str, Any] | None = None) -> None:
        self.conn, self.plan, self.report = conn, plan, report

    # -- helpers ---------------------------------------------------------------------------------
    def _run(self, ev: Evidence, query: sql.SQL | sql.Composed, params: Any = None) -> list[tuple[Any, ...]]:
        ev.queries.append(" ".join(query.as_string(self.conn).split()))
        return list(self.conn.execute(query, params).fetchall())

    def _patient(self, rule: TableRule, alias: str = "t") -> sql.Composable:
        """Is a row patient-owned, by the plan's rule (written here, independently of the cutover)."""
        if rule.owner == "patient":
            return sql.SQL("TRUE")
        if rule.owner == "provider":
            return sql.SQL("FALSE")
        return sql.SQL("{} = ANY({})").format(I(alias, rule.column or ""), sql.Literal(self._values(rule, "patient")))

    def _values(self, rule: TableRule, cls: str) -> list[str]:
        if rule.owner == "column":
            return list(rule.patient_values) if cls == "patient" else []
        mapping = self.plan.classifications.get(rule.classification or "", {})
        return sorted(v for v, c in mapping.items() if c == cls)

    def _sample(self, ev: Evidence, rule: TableRule, where: sql.Composable) -> int:
        rows = self._run(ev, sql.SQL("SELECT count(*) OVER (), {k} FROM {t} t WHERE {w} ORDER BY {o} "
                                     "LIMIT {n}").format(k=key_text(rule.key, "t"), t=I(rule.name), w=where,
                                                         o=key_order(rule.key, "t"), n=sql.Literal(MAX_ROWS)))
        if rows:
            ev.rows.extend(r[1] for r in rows if len(ev.rows) < MAX_ROWS)
        return int(rows[0][0]) if rows else 0

    def _tenant(self, alias: str = "t") -> sql.Identifier:
        return I(alias, self.plan.tenant_column)

    # -- the checks ------------------------------------------------------------------------------
    def a1(self) -> Evidence:
        p = self.plan
        ev = Evidence("A1", expected=f"exactly one row: {p.schema_head}", tenant="-")
        heads = [r[0] for r in self._run(ev, sql.SQL("SELECT {}::text FROM {}").format(I(p.version_column),
                                                                                       I(p.version_table)))]
        ev.found = f"{len(heads)} rows: {', '.join(heads) or 'none'}"
        if heads != [p.schema_head]:
            ev.fail(f"schema head is {heads or 'missing'}, expected ['{p.schema_head}']", heads)
        # The schema is the plan's: every tenant-scoped table planned, every planned table and column there.
        ev.queries.append("(the catalog: tables, columns, unique keys and foreign keys of the current schema)")
        schema = catalog.read(self.conn)
        for diff in catalog.compare(p, schema):
            rows: list[str] = []
            if diff.code == "unplanned-table" and p.tenant_column in schema.tables[diff.table].columns:
                rows = [f"{diff.table} on {tenant}: {n} rows" for tenant, n in self._run(ev, sql.SQL(
                    "SELECT {c}::text, count(*) FROM {t} GROUP BY 1 ORDER BY 1").format(
                    c=I(p.tenant_column), t=I(diff.table)))]
            ev.fail(diff.message + (f" ({'; '.join(rows)})" if rows else ""), rows)
        return ev

    def a2(self) -> Evidence:
        p = self.plan
        ev = Evidence("A2", tenant=p.target, expected=f"exists, active, protected, {', '.join(p.mirrored_settings)} "
                                                      f"equal to {p.source}'s")
        rows = {r[0]: r[1:] for r in self._run(ev, sql.SQL("SELECT id, {s}, {a}, {pr} FROM {t} WHERE id = ANY({ids})")
                                               .format(s=I(p.settings_column), a=I(p.active_column),
                                                       pr=I(p.protected_column), t=I(p.tenant_table),
                                                       ids=sql.Literal([p.source, p.target])))}
        if p.target not in rows:
            ev.fail(f"tenant {p.target} does not exist")
            return ev
        settings, active, protected = rows[p.target]
        source_settings = (rows.get(p.source) or ({},))[0] or {}
        settings = settings or {}
        ev.found = f"active={active}, protected={protected}, settings={json.dumps(settings, sort_keys=True)}"
        if p.source not in rows:
            ev.fail(f"source tenant {p.source} does not exist, so the mirrored settings cannot be compared")
        if not active:
            ev.fail("target tenant is not active")
        if not protected:
            ev.fail("target tenant is not protected")
        for key in p.mirrored_settings:
            if key not in settings or settings.get(key) != source_settings.get(key):
                ev.fail(f"setting {key}: {settings.get(key)!r}, source has {source_settings.get(key)!r}")
        return ev

    def a3(self, table: str) -> Evidence:
        rule, p = self.plan.table(table), self.plan
        ev = Evidence("A3", subject=table, tenant=p.source, expected="0 patient-owned rows")
        n = self._sample(ev, rule, sql.SQL("{} = {} AND {}").format(self._tenant(), sql.Literal(p.source),
                                                                    self._patient(rule)))
        ev.found = f"{n} patient-owned rows"
        if n:
            ev.fail(f"{n} patient-owned {table} rows are still on {p.source}")
        return ev

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
                    p=I(parent.name), k=sql.Literal(parent.key[0]), c=I("c", cj.column), f=sql.Literal(cj.key),
                    pk=I(parent.key[0]))
                yield (f"{rule.name}.{cj.column}.{cj.key}", rule, "json", parent, typed, cj.cross_tenant)

    def _link(self, ev: Evidence, child: TableRule, parent: TableRule, key: sql.Composable,
              cross_tenant: str | None) -> int:
        """Children whose parent is missing, or on another tenant than the plan declares allowed."""
        excuse: sql.Composable = sql.SQL("FALSE")
        share = self.plan.share_table
        if cross_tenant == "provider":  # any tenant but the patient tenant
            excuse = sql.SQL("p.{} <> {}").format(I(self.plan.tenant_column), sql.Literal(self.plan.target))
        elif cross_tenant == "share" and share is not None and share.share_target is not None:
            case_col = next((r.column for r in share.references if r.table == parent.name), None)
            if case_col is not None:
                excuse = sql.SQL("EXISTS (SELECT 1 FROM {s} s WHERE s.{sc} = p.{pk} AND s.{st} = c.{ct})").format(
                    s=I(share.name), sc=I(case_col), pk=I(parent.key[0]), st=I(share.share_target),
                    ct=I(self.plan.tenant_column))
        query = sql.SQL("SELECT count(*) OVER (), {ck} FROM {ct} c LEFT JOIN {pt} p ON p.{pk} = {key} "
                        "WHERE {key} IS NOT NULL AND (p.{pk} IS NULL OR (c.{ten} <> p.{ten} AND NOT {excuse})) "
                        "ORDER BY {co} LIMIT {n}").format(
            ck=key_text(child.key, "c"), ct=I(child.name), pt=I(parent.name), pk=I(parent.key[0]), key=key,
            co=key_order(child.key, "c"), ten=I(self.plan.tenant_column), excuse=excuse, n=sql.Literal(MAX_ROWS))
        rows = self._run(ev, query)
        ev.rows.extend(r[1] for r in rows if len(ev.rows) < MAX_ROWS)
        return int(rows[0][0]) if rows else 0

    def a4(self, label: str) -> Evidence:
        ev = Evidence("A4", subject=label, tenant="all", expected="every child on its parent's tenant "
                                                                  "(or a share to the child's tenant, where allowed)")
        for name, child, kind, parent, key, via in self.links():
            if name == label and kind == "column":
                n = self._link(ev, child, parent, key, via)
                ev.found = f"{n} rows on another tenant than their {parent.name} row"
                if n:
                    ev.fail(f"{n} {child.name} rows are not on their {parent.name} row's tenant")
        return ev

    def a5(self) -> Evidence:
        p = self.plan
        ev = Evidence("A5", tenant=f"{p.source}, {p.target}", expected="totals = baseline + written; per-tenant "
                                                                      "deltas = moved (+ sweeps)")
        report = self._report(ev)
        if report is None:
            return ev
        moved = dict(report.get("moved") or {})
        swept = {t: sum((s.get("moved") or {}).get(t, 0) for s in report.get("sweeps") or []) for t in p.table_names}
        for table in p.table_names:
            now = {r[0]: int(r[1]) for r in self._run(ev, sql.SQL("SELECT {c}::text, count(*) FROM {t} GROUP BY 1")
                                                      .format(c=I(p.tenant_column), t=I(table)))}
            base = {k: int(v) for k, v in (report["baseline"].get(table) or {}).items()}
            written = int((report.get("written") or {}).get(table, 0))
            if table == p.audit.table:  # each sweep writes one `swept` event (found by the row mixes)
                written += len(report.get("sweeps") or [])
            # Stragglers arrived on the source after the baseline and were swept to the target.
            want_total = sum(base.values()) + written + swept[table]
            if sum(now.values()) != want_total:
                ev.fail(f"{table}: {sum(now.values())} rows, expected {want_total} (baseline {sum(base.values())} "
                        f"+ written {written} + swept {swept[table]})")
            want_source = base.get(p.source, 0) - moved.get(table, 0)
            if now.get(p.source, 0) != want_source:
                ev.fail(f"{table}: {now.get(p.source, 0)} on {p.source}, expected {want_source}")
            want_target = base.get(p.target, 0) + moved.get(table, 0) + written + swept[table]
            if now.get(p.target, 0) != want_target:
                ev.fail(f"{table}: {now.get(p.target, 0)} on {p.target}, expected {want_target}")
            for tenant, count in now.items():
                if tenant not in (p.source, p.target) and count != base.get(tenant, 0):
                    ev.fail(f"{table}: {count} on {tenant}, expected {base.get(tenant, 0)} (untouched)")
        ev.found = "as expected" if ev.ok else f"{len(ev.problems)} mismatches"
        return ev

    def a6(self, table: str) -> Evidence:
        rule, p = self.plan.table(table), self.plan
        ev = Evidence("A6", subject=table, tenant=p.target, expected="0 provider-owned rows")
        if rule.owner == "provider":
            where: sql.Composable = sql.SQL("TRUE")
        elif rule.owner == "column":
            where = sql.SQL("NOT ({})").format(self._patient(rule))
        elif rule.owner == "classified":
            where = sql.SQL("t.{} = ANY({})").format(I(rule.column or ""), sql.Literal(self._values(rule, "provider")))
        else:
            where = sql.SQL("FALSE")
        n = self._sample(ev, rule, sql.SQL("{} = {} AND {}").format(self._tenant(), sql.Literal(p.target), where))
        ev.found = f"{n} provider-owned rows"
        if n:
            ev.fail(f"{n} provider-owned {table} rows are on {p.target}")
        return ev

    def a7(self) -> Evidence:
        p, share = self.plan, self.plan.share_table
        ev = Evidence("A7", tenant="each share target", expected="shares on their case's tenant, targeting another "
                                                                 "existing tenant; RLS shows each provider its shares")
        if share is None or share.share_target is None:
            ev.fail("the plan has no share table (share_target)")
            return ev
        case_col = next(r for r in share.references)
        cases = p.table(case_col.table)
        bad = self._run(ev, sql.SQL(
            "SELECT {k} FROM {s} s LEFT JOIN {c} c ON c.{ck} = s.{cc} LEFT JOIN {tt} t ON t.id = s.{st} "
            "WHERE c.{ck} IS NULL OR c.{ten} <> s.{ten} OR t.id IS NULL OR s.{st} = s.{ten} "
            "ORDER BY 1 LIMIT {n}").format(
            k=key_text(share.key, "s"), s=I(share.name), c=I(cases.name), ck=I(cases.key[0]), cc=I(case_col.column),
            tt=I(p.tenant_table), st=I(share.share_target), ten=I(p.tenant_column), n=sql.Literal(MAX_ROWS)))
        if bad:
            ev.fail(f"{len(bad)}{'+' if len(bad) == MAX_ROWS else ''} shares do not resolve (case missing or on "
                    f"another tenant, target missing or the share's own tenant)", [r[0] for r in bad])
        targets = [r[0] for r in self._run(ev, sql.SQL("SELECT DISTINCT {st}::text FROM {s} ORDER BY 1").format(
            st=I(share.share_target), s=I(share.name)))]
        seen = []
        for tenant in targets:
            expected = {r[0] for r in self._run(ev, sql.SQL(
                "SELECT c.{ck}::text FROM {c} c WHERE c.{ten} = {t} OR EXISTS (SELECT 1 FROM {s} s WHERE s.{cc} = "
                "c.{ck} AND s.{st} = {t})").format(ck=I(cases.key[0]), c=I(cases.name), ten=I(p.tenant_column),
                                                   t=sql.Literal(tenant), s=I(share.name), cc=I(case_col.column),
                                                   st=I(share.share_target)))}
            visible = self._as_app(ev, tenant, sql.SQL("SELECT {ck}::text FROM {c}").format(ck=I(cases.key[0]),
                                                                                            c=I(cases.name)))
            if visible is None:
                return ev
            seen.append(f"{tenant} sees {len(visible)}")
            if visible != expected:
                ev.fail(f"as {p.app_role} with {p.tenant_setting}={tenant}: {len(visible)} cases visible, expected "
                        f"{len(expected)}", sorted(visible ^ expected))
        ev.found = "; ".join(seen) if ev.ok else f"{len(ev.problems)} problems"
        return ev

    def _as_app(self, ev: Evidence, tenant: str, query: sql.Composed) -> set[str] | None:
        """Rows a query returns as the application role with the tenant setting: RLS as the app sees it."""
        p = self.plan
        try:
            with self.conn.transaction():
                self.conn.execute(sql.SQL("SET LOCAL ROLE {}").format(I(p.app_role)))
                self.conn.execute("SELECT set_config(%s, %s, true)", (p.tenant_setting, tenant))
                return {r[0] for r in self._run(ev, query)}
        except psycopg.Error as exc:  # any failure here is the finding
            ev.fail(f"cannot query as {p.app_role} ({str(exc).splitlines()[0]}); the check user must be a member "
                    f"of {p.app_role} (GRANT {p.app_role} TO <check user>)")
            return None

    def _shared_to(self, ev: Evidence, rule: TableRule, tenant: str) -> set[str]:
        """Rows of ``rule`` a case share grants ``tenant`` (the provider sees its forwarded cases)."""
        share = self.plan.share_table
        if share is None or share.share_target is None:
            return set()
        case_ref = next(iter(share.references), None)
        if case_ref is None:
            return set()
        if rule.name == share.name:
            where: sql.Composable = sql.SQL("t.{} = {}").format(I(share.share_target), sql.Literal(tenant))
        else:
            if rule.name == case_ref.table:
                col = rule.key[0]
            else:
                col = next((r.column for r in rule.references if r.table == case_ref.table), "")
                if not col:
                    return set()
            where = sql.SQL("EXISTS (SELECT 1 FROM {s} s WHERE s.{sc} = t.{c} AND s.{st} = {ten})").format(
                s=I(share.name), sc=I(case_ref.column), c=I(col), st=I(share.share_target), ten=sql.Literal(tenant))
        return {r[0] for r in self._run(ev, sql.SQL("SELECT {k} FROM {t} t WHERE {w}").format(
            k=key_text(rule.key, "t"), t=I(rule.name), w=where))}

    def a8(self) -> Evidence:
        p = self.plan
        rule = p.table(p.audit.table)
        ev = Evidence("A8", subject=rule.name, tenant=f"{p.source}, {p.target}",
                      expected="every type classified; no patient type on the source; no provider type on the target")
        known = sorted(p.classifications.get(rule.classification or "", {}))
        col = I("t", rule.column or "")
        for what, where in (
            ("unclassified", sql.SQL("{c} IS NULL OR NOT ({c} = ANY({k}))").format(c=col, k=sql.Literal(known))),
            (f"patient-classified on {p.source}", sql.SQL("{} = {} AND {} = ANY({})").format(
                self._tenant(), sql.Literal(p.source), col, sql.Literal(self._values(rule, "patient")))),
            (f"provider-classified on {p.target}", sql.SQL("{} = {} AND {} = ANY({})").format(
                self._tenant(), sql.Literal(p.target), col, sql.Literal(self._values(rule, "provider")))),
        ):
            n = self._sample(ev, rule, where)
            if n:
                ev.fail(f"{n} {what} {rule.name} rows")
        ev.found = "none" if ev.ok else f"{len(ev.problems)} problems"
        return ev

    def a9(self) -> Evidence:
        p = self.plan
        ev = Evidence("A9", tenant=p.target, expected="keys on their cached case's tenant; patient-route keys on "
                                                      "the target")
        for _label, child, kind, parent, key, via in self.links():
            if kind != "json":
                continue
            n = self._link(ev, child, parent, key, via)
            if n:
                ev.fail(f"{n} {child.name} rows name a {parent.name} row on another tenant (or a missing one)")
            if child.owner == "classified":
                m = self._sample(ev, child, sql.SQL("{} <> {} AND {}").format(self._tenant(), sql.Literal(p.target),
                                                                            self._patient(child)))
                if m:
                    ev.fail(f"{m} patient-route {child.name} rows are not on {p.target}")
        ev.found = "none" if ev.ok else f"{len(ev.problems)} problems"
        return ev

    def _report(self, ev: Evidence) -> Mapping[str, Any] | None:
        if self.report is None:
            ev.fail("no cutover report: pass the execute's report with --report-path (A5 and A10 compare the "
                    "database with it)")
            return None
        if self.report.get("commit_status") != "committed":
            ev.fail(f"the report says commit_status={self.report.get('commit_status')!r}, not 'committed'")
            return None
        return self.report

    def a10(self) -> Evidence:
        p = self.plan
        ev = Evidence("A10", tenant=p.target, expected="patient-owned rows on the target = allow-list + sweeps; "
                                                       "report = cutover.completed event")
        report = self._report(ev)
        if report is None:
            return ev
        a = p.audit
        events = self._run(ev, sql.SQL("SELECT {pl} FROM {t} WHERE {ty} = {k} AND {pl} ->> 'run_id' = {rid}").format(
            pl=I(a.payload_column), t=I(a.table), ty=I(a.type_column), k=sql.Literal(a.completed),
            rid=sql.Literal(str(report.get("run_id")))))
        if not events:
            ev.fail(f"no {a.completed} event for the report's run {report.get('run_id')}: wrong report or database")
        else:
            event = events[0][0]
            for key in ("actor", "baseline", "moved", "committed_at"):
                if event.get(key) != report.get(key):
                    ev.fail(f"report {key} differs from the {a.completed} event")
        for rule in p.tables:
            if rule.owner == "provider":
                continue
            self._a10_table(ev, rule, list(listed_keys(report, rule.name)))
        ev.found = "exact" if ev.ok else f"{len(ev.problems)} problems"
        return ev

    def _a10_table(self, ev: Evidence, rule: TableRule, listed: list[Any]) -> None:
        """One table's patient rows on the target against the report's keys, each key kept whole.

        A digest over the keys' JSON (as ``to_jsonb`` renders them, which is how the report holds
        them) answers the usual "exact" without shipping the rows; any difference is then settled in
        the database, in the key columns' own types, and names the rows.
        """
        p = self.plan
        where = sql.SQL("{} = {} AND {}").format(self._tenant(), sql.Literal(p.target), self._patient(rule))
        texts = sorted(json.dumps(k, ensure_ascii=False) for k in listed)
        digest = hashlib.md5("\n".join(texts).encode(), usedforsecurity=False).hexdigest()
        key_j = sql.SQL("{}::text").format(_key_json(rule.key, "t"))
        count, found_digest = self._run(ev, sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg({j}, E'\\n' ORDER BY {j} COLLATE \"C\"), '')) "
            "FROM {t} t WHERE {w}").format(j=key_j, t=I(rule.name), w=where))[0]
        if int(count) == len(listed) and found_digest == digest:
            return
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
            t=I(rule.name), w=where, ke=key_text(rule.key, "e"), oe=key_order(rule.key, "e"),
            km=key_text(rule.key, "m"), om=key_order(rule.key, "m"), n=sql.Literal(MAX_ROWS))
        ev.queries.append(f"(typed comparison of {len(listed)} reported {rule.name} keys with the target's rows)")
        extra, missing, extra_rows, missing_rows = db.one(self.conn, query)
        if extra or missing:
            ev.fail(f"{rule.name}: {extra} patient rows on the target not in the report, {missing} reported rows "
                    f"not there", list(extra_rows) + list(missing_rows))
        if dupes:
            twice = Counter(texts)
            ev.fail(f"{rule.name}: the report lists {dupes} keys more than once",
                    sorted({key_label(k) for k in listed if twice[json.dumps(k, ensure_ascii=False)] > 1}))

    def a20(self) -> Evidence:
        p = self.plan
        ev = Evidence("A20", tenant=p.source, expected="0 rows for the sweep predicate (count mode, read-only)")
        total = 0
        for rule in p.tables:
            if rule.owner == "provider":
                continue
            n = self._sample(ev, rule, sql.SQL("{} = {} AND {}").format(self._tenant(), sql.Literal(p.source),
                                                                        self._patient(rule)))
            if n:
                ev.fail(f"{n} {rule.name} stragglers on {p.source}")
            total += n
        ev.found = f"{total} rows"
        return ev

    def a21(self) -> Evidence:
        p = self.plan
        ev = Evidence("A21", tenant=p.source, expected="RLS enabled + forced + policy on every table; app role "
                                                       "without BYPASSRLS; 0 patient rows visible on the source")
        rows = self._run(ev, sql.SQL(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, (SELECT count(*) FROM pg_policy "
            "WHERE polrelid = c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
            "n.nspname = current_schema() AND c.relname = ANY({})").format(sql.Literal(list(p.table_names))))
        found = {r[0]: r[1:] for r in rows}
        for table in p.table_names:
            enabled, forced, policies = found.get(table, (False, False, 0))
            for what, ok in (("enabled", enabled), ("forced", forced), ("a policy", policies)):
                if not ok:
                    ev.fail(f"{table}: RLS not {what}" if what != "a policy" else f"{table}: no RLS policy", [table])
        role = self._run(ev, sql.SQL("SELECT rolbypassrls, rolsuper FROM pg_roles WHERE rolname = {}").format(
            sql.Literal(p.app_role)))
        if not role:
            ev.fail(f"role {p.app_role} does not exist")
            return ev
        if role[0][0] or role[0][1]:
            ev.fail(f"role {p.app_role} bypasses RLS (bypassrls={role[0][0]}, superuser={role[0][1]})")
        for rule in p.tables:
            if rule.owner == "provider":
                continue
            visible = self._as_app(ev, p.source, sql.SQL("SELECT {k} FROM {t} t WHERE {w}").format(
                k=key_text(rule.key, "t"), t=I(rule.name), w=self._patient(rule)))
            if visible is None:
                return ev
            leaked = visible - self._shared_to(ev, rule, p.source)
            if leaked:
                ev.fail(f"{rule.name}: {len(leaked)} patient rows visible as {p.app_role} on {p.source} without a "
                        f"share granting them", sorted(leaked))
        ev.found = "as expected" if ev.ok else f"{len(ev.problems)} problems"
        return ev
