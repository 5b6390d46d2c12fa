"""Hypothesis row mixes against a real PostgreSQL: the cutover's predicates and the checks, stressed.

Each example gets its own database, cloned from an empty reference template (schema, tenants, roles
and RLS, no rows) and filled with the example's INSERTs, which are printed when it fails. Profiles:
HYPOTHESIS_PROFILE=ci (default; the whole file well under 3 minutes on 2 cores), dev, stress.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from psycopg import sql

from cutover.core import db
from cutover.core.exit_codes import ExitCode
from cutover.core.options import Settings
from cutover.core.plan import Plan, load_plan, table_sql
from cutover.core.row_keys import CutoverReport
from cutover.reference import aftercare, engine, preflight, reports
from cutover.sandbox.backends import ServerInfo
from cutover.suite.under_check import DatabaseUnderCheck
from tests import third_model
from tests.row_mixes import FORTIS, KEY, ORDER, SOURCE, TARGET, World, insert_sql, loaded, must_move, tenants_of, worlds
from tests.support import failing_evidence, reference_database

EXAMPLE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.data_too_large], deadline=None)
ACTOR = "test:hypothesis"


@pytest.fixture(scope="session")
def reference_template(cutover_server: ServerInfo, cutover_plan: Plan) -> Iterator[str]:
    """An empty reference database: schema, the three tenants, the schema head, roles, grants, RLS."""
    url = reference_database(cutover_server, cutover_plan, 0, 1, prefix="hypo_tpl")  # scale 0: the fixed rows only
    with db.connection(url) as conn:
        for table in reversed(ORDER):  # keep tenants and the schema head, drop the generated rows
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 (constant table names of the test oracle)
        conn.commit()
    name = db.database_name(url)
    yield name
    db.drop_database(cutover_server.admin_url, name)


def failing(url: str, report: CutoverReport, plan: Plan, settings_: Settings) -> dict[str, str]:
    """The failing checks with their evidence, so a falsifying example says what the check saw."""
    return failing_evidence(DatabaseUnderCheck(url, report, None, True), plan, settings_)


def _name() -> str:
    return f"hypo_{uuid.uuid4().hex[:10]}"


def _execute(url: str, plan: Plan) -> CutoverReport:
    """The bundled cutover, its report written and read back as operators get it (with the allow-list)."""
    with tempfile.TemporaryDirectory() as tmp, engine.private_spool() as spool:
        report, ids = engine.execute(url, plan, ACTOR, engine.Timeouts(), spool=spool)
        path = Path(tmp) / "report.json"
        reports.write(path, report, ids)
        return reports.load(path)


def _moved(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> dict[str, set[str]]:
    return {t: {k for k, tenant in after[t].items() if before[t].get(k) == SOURCE and tenant == TARGET}
            for t in ORDER}


@EXAMPLE
@given(world=worlds())
def test_the_cutover_moves_exactly_what_the_spec_says_and_reverse_undoes_it(
    world: World, cutover_server: ServerInfo, reference_template: str, cutover_plan: Plan,
    cutover_settings: Settings
) -> None:
    """moved == oracle; everything else untouched; dry-run plan == moves; the 12 checks pass; a second
    execute changes nothing; reverse restores the pre-cutover state."""
    with loaded(cutover_server.admin_url, reference_template, _name(), world) as (url, text):
        note(f"-- reproduce on an empty reference database:\n{text}")
        before = tenants_of(url)
        with db.connection(url, read_only=True) as conn:
            planned = preflight.run(conn, cutover_plan)
        assert planned.ready, [b.line() for b in planned.blockers]
        report = _execute(url, cutover_plan)
        after = tenants_of(url)
        moved, expected = _moved(before, after), must_move(world.rows)
        assert moved == expected
        for table in ORDER:
            for key, tenant in before[table].items():
                if key not in expected[table]:
                    assert after[table][key] == tenant, f"{table} {key!r} moved but is not patient-owned"
        assert {t: n for t, n in planned.planned.items() if n} == {t: len(v) for t, v in expected.items() if v}
        assert {t: n for t, n in report["moved"].items() if n} == {t: len(v) for t, v in expected.items() if v}
        bad = failing(url, report, cutover_plan, cutover_settings)
        assert not bad, "\n\n".join(bad.values())
        with pytest.raises(engine.RunFailed) as again:
            _execute(url, cutover_plan)
        assert again.value.exit_code == ExitCode.ALREADY_CUT_OVER
        assert tenants_of(url) == after
        aftercare.reverse(url, cutover_plan, ACTOR, engine.Timeouts(), report)
        assert tenants_of(url) == before


@EXAMPLE
@given(world=worlds(stragglers=True))
def test_the_sweep_moves_exactly_the_stragglers(world: World, cutover_server: ServerInfo, reference_template: str,
                                                cutover_plan: Plan, cutover_settings: Settings) -> None:
    with loaded(cutover_server.admin_url, reference_template, _name(), world) as (url, text):
        report = _execute(url, cutover_plan)
        with db.connection(url) as conn:
            late = insert_sql(conn, world.late)
            if late:
                conn.execute(late.encode())
            conn.commit()
        note(f"-- reproduce:\n{text}\n-- execute, then:\n{late}\n-- then sweep")
        before = tenants_of(url)
        swept = aftercare.sweep(url, cutover_plan, ACTOR, engine.Timeouts())
        moved, expected = _moved(before, tenants_of(url)), must_move(world.late)
        assert moved == expected
        assert (swept is None) == (not any(expected.values()))
        if swept is not None:  # as `cutover sweep --report-path` records it
            report.setdefault("sweeps", []).append(swept)
        bad = failing(url, report, cutover_plan, cutover_settings)
        # Late rows that are not stragglers (a provider event on apollo) are new rows no report knows:
        # A5 (conservation against the baseline) must flag them, and nothing else may fail.
        unswept = sum(len(v) for v in world.late.values()) - sum(len(v) for v in expected.values())
        allowed = {"A5"} if unswept else set()
        assert set(bad) <= allowed, "\n\n".join(bad.values())
        assert unswept == 0 or "A5" in bad, "A5 missed rows written after the baseline"


@EXAMPLE
@given(world=worlds(), unknown=st.text(min_size=1, max_size=12).filter(lambda s: "\x00" not in s),
       column=st.sampled_from(["event_type", "route"]))
def test_any_unclassified_value_blocks_and_changes_nothing(world: World, unknown: str, column: str,
                                                           cutover_server: ServerInfo, reference_template: str,
                                                           cutover_plan: Plan) -> None:
    table = "events" if column == "event_type" else "idempotency_keys"
    known = cutover_plan.classifications[cutover_plan.table(table).classification or ""]
    assume(unknown not in known)
    row: dict[str, Any] = ({"id": "evt-unknown", "tenant_id": SOURCE, "event_type": unknown, "payload": None,
                            "source_service": "api", "created_at": None} if table == "events" else
                           {"key": "idk-unknown", "tenant_id": SOURCE, "route": unknown, "request_hash": "x",
                            "response_status": 200, "response_body": None, "created_at": None})
    world.rows[table].append(row)
    with loaded(cutover_server.admin_url, reference_template, _name(), world) as (url, text):
        note(text)
        before = tenants_of(url)
        with db.connection(url, read_only=True) as conn:
            result = preflight.run(conn, cutover_plan)
        assert not result.ready and any(f"unclassified-{column}" in b.line() for b in result.blockers)
        with pytest.raises(engine.RunFailed) as failed:
            _execute(url, cutover_plan)
        assert failed.value.exit_code == ExitCode.BLOCKED
        assert tenants_of(url) == before


CORRUPTIONS = ("leave-behind", "drag-over", "share-to-self", "delete", "unclassify", "retarget-report")


@EXAMPLE
@given(world=worlds(), kind=st.sampled_from(CORRUPTIONS), pick=st.integers(0, 10_000))
def test_a_single_row_corruption_of_a_correct_result_is_caught(
    world: World, kind: str, pick: int, cutover_server: ServerInfo, reference_template: str,
    cutover_plan: Plan, cutover_settings: Settings
) -> None:
    expected = must_move(world.rows)
    moved_rows = [(t, k) for t in ORDER for k in sorted(expected[t])]
    kept_on_source = [(t, r[KEY[t]]) for t in ORDER for r in world.rows[t]
                      if r["tenant_id"] == SOURCE and r[KEY[t]] not in expected[t]]
    shares = [r["id"] for r in world.rows["case_shares"]]
    needs = {"leave-behind": moved_rows, "drag-over": kept_on_source, "share-to-self": shares,
             "delete": moved_rows, "unclassify": [r["id"] for r in world.rows["events"]], "retarget-report": [1]}
    assume(needs[kind])
    choice = needs[kind][pick % len(needs[kind])]
    with loaded(cutover_server.admin_url, reference_template, _name(), world) as (url, text):
        report = _execute(url, cutover_plan)
        with db.connection(url) as conn:
            if kind in ("leave-behind", "drag-over", "delete"):
                table, key = choice
                stmt = (sql.SQL("DELETE FROM {} WHERE {} = %s") if kind == "delete" else
                        sql.SQL("UPDATE {} SET tenant_id = %s WHERE {} = %s")).format(
                    sql.Identifier(table), sql.Identifier(KEY[table]))
                params = (key,) if kind == "delete" else ((SOURCE if kind == "leave-behind" else TARGET), key)
                if kind == "delete":  # children first: a deleted case takes its rows with it
                    conn.execute("SET session_replication_role = replica")
                conn.execute(stmt, params)
            elif kind == "share-to-self":
                conn.execute("UPDATE case_shares SET target_tenant_id = tenant_id WHERE id = %s", (choice,))
            elif kind == "unclassify":
                conn.execute("UPDATE events SET event_type = 'mystery.type' WHERE id = %s", (choice,))
            conn.commit()
        if kind == "retarget-report":
            report = json.loads(json.dumps(report))
            report["moved"] = {t: n + 1 for t, n in report["moved"].items()} or {"events": 1}
        note(f"-- reproduce:\n{text}\n-- execute, then corrupt: {kind} {choice!r}")
        caught = failing(url, report, cutover_plan, cutover_settings)
        assert caught, f"{kind} of {choice!r} went unnoticed by all 12 checks"


@EXAMPLE
@given(world=worlds(), pick=st.integers(0, 10_000))
def test_a_provider_row_the_move_would_strand_blocks(world: World, pick: int, cutover_server: ServerInfo,
                                                     reference_template: str, cutover_plan: Plan) -> None:
    """A quote apollo holds on a case never shared to apollo: after the move it would point at a case on
    another tenant with no share behind it (an A4 failure), so the pre-flight must refuse instead."""
    unshared = [c["id"] for c in world.rows["cases"]
                if not any(s["case_id"] == c["id"] and s["target_tenant_id"] == SOURCE
                           for s in world.rows["case_shares"])]
    assume(unshared)
    world.rows["quotes"].append({"id": "quo-stranded", "tenant_id": SOURCE, "case_id": unshared[pick % len(unshared)],
                                 "amount": "1.00", "currency": "INR", "created_at": None})
    with loaded(cutover_server.admin_url, reference_template, _name(), world) as (url, text):
        note(text)
        before = tenants_of(url)
        with db.connection(url, read_only=True) as conn:
            result = preflight.run(conn, cutover_plan)
        assert not result.ready, "a quote the move would strand did not block"
        assert any("quotes" in b.line() for b in result.blockers), [b.line() for b in result.blockers]
        with pytest.raises(engine.RunFailed):
            _execute(url, cutover_plan)
        assert tenants_of(url) == before


def test_stateful_inserts_cutover_stragglers_sweep_and_reverse(cutover_server: ServerInfo, reference_template: str,
                                                               cutover_plan: Plan, cutover_settings: Settings) -> None:
    """Inserts on both tenants, the cutover, stragglers, the sweep, reverse and the checks, interleaved;
    after every step the database matches a Python model of where each row must be."""
    from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

    plan, admin = cutover_plan, cutover_server.admin_url

    class Cutover(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.name = _name()
            self.url = db.create_database(admin, self.name, template=reference_template)
            self.model: dict[str, dict[str, str]] = {t: {} for t in ORDER}
            self.cut = False
            self.report: CutoverReport = {}
            self.pending: set[str] = set()
            self.clean = True  # nothing written since the cut but swept stragglers: every check must pass
            self.n = 0
            self.patient_events: set[str] = set()

        def _insert(self, table: str, row: dict[str, Any]) -> None:
            with db.connection(self.url) as conn:
                conn.execute(insert_sql(conn, {table: [row]}).encode())
                conn.commit()
            self.model[table][row[KEY[table]]] = row["tenant_id"]
            note(f"insert {table} {row}")

        def _id(self, prefix: str) -> str:
            self.n += 1
            return f"{prefix}-{self.n}"

        @rule()
        def patient_with_a_case(self) -> None:
            tenant = TARGET if self.cut else SOURCE  # after the cut the app writes patients to the new tenant
            pid, cid = self._id("pat"), self._id("case")
            self._insert("patients", {"id": pid, "tenant_id": tenant, "user_id": None, "created_at": None})
            self._insert("cases", {"id": cid, "tenant_id": tenant, "patient_id": pid, "status": "open",
                                   "specialty": "x", "created_at": None})
            self.clean = self.clean and not self.cut

        @rule(tenant=st.sampled_from((SOURCE, FORTIS)))
        def provider_event(self, tenant: str) -> None:
            self._insert("events", {"id": self._id("evt"), "tenant_id": tenant, "event_type": "quote.issued",
                                    "payload": None, "source_service": "api", "created_at": None})
            self.clean = self.clean and not self.cut

        @precondition(lambda self: not self.cut)
        @rule()
        def cutover(self) -> None:
            self.report = _execute(self.url, plan)
            for table, keys in self.model.items():
                for key, tenant in keys.items():
                    if tenant == SOURCE and (table in ALWAYS or table == "events" and key in self.patient_events):
                        keys[key] = TARGET
            self.cut, self.clean, self.pending = True, True, set()
            note("cutover")

        @precondition(lambda self: self.cut)
        @rule()
        def straggler(self) -> None:
            eid = self._id("evt-late")
            self.patient_events.add(eid)
            self._insert("events", {"id": eid, "tenant_id": SOURCE, "event_type": "message.sent",
                                    "payload": None, "source_service": "api", "created_at": "now"})
            self.pending.add(eid)

        @precondition(lambda self: self.cut)
        @rule()
        def sweep(self) -> None:
            swept = aftercare.sweep(self.url, plan, ACTOR, engine.Timeouts())
            assert (swept is None) == (not self.pending)
            if swept is not None:
                self.report.setdefault("sweeps", []).append(swept)
            for eid in self.pending:
                self.model["events"][eid] = TARGET
            self.pending = set()
            note("sweep")

        @precondition(lambda self: self.cut)
        @rule()
        def reverse(self) -> None:
            aftercare.reverse(self.url, plan, ACTOR, engine.Timeouts(), self.report)
            for table, keys in self.model.items():
                for key, tenant in keys.items():
                    if tenant == TARGET and (table in ALWAYS or key in self.patient_events):
                        keys[key] = SOURCE
            self.cut, self.report = False, {}
            note("reverse")

        @invariant()
        def rows_are_where_the_model_says(self) -> None:
            found = tenants_of(self.url)
            for table, keys in self.model.items():
                for key, tenant in keys.items():
                    assert found[table][key] == tenant, f"{table} {key}: {found[table][key]}, model says {tenant}"

        @invariant()
        def the_checks_agree(self) -> None:
            if not self.cut:
                return
            bad = failing(self.url, self.report, plan, cutover_settings)
            assert ("A20" in bad) == bool(self.pending), bad.get("A20", "A20 passed with stragglers pending")
            if self.clean and not self.pending:
                assert not bad, "\n\n".join(bad.values())

        def teardown(self) -> None:
            db.drop_database(admin, self.name)

    ALWAYS = ("patients", "cases")
    run_state_machine_as_test(Cutover, settings=settings(
        max_examples=max(3, settings().max_examples // 3), stateful_step_count=8, deadline=None,
        suppress_health_check=list(HealthCheck)))


# Tenant-keyed foreign keys over the reference schema, one of each kind the cutover moves rows under.
TENANT_KEYS = (
    "ALTER TABLE patients ADD UNIQUE (tenant_id, id)",
    "ALTER TABLE cases ADD UNIQUE (tenant_id, id)",
    "ALTER TABLE cases ADD CONSTRAINT cases_tenant_patient_fkey FOREIGN KEY (tenant_id, patient_id) "
    "REFERENCES patients (tenant_id, id) ON UPDATE CASCADE DEFERRABLE",
    "ALTER TABLE messages ADD CONSTRAINT messages_tenant_case_fkey FOREIGN KEY (tenant_id, case_id) "
    "REFERENCES cases (tenant_id, id) DEFERRABLE INITIALLY IMMEDIATE",
    "ALTER TABLE document_references ADD CONSTRAINT documents_tenant_patient_fkey FOREIGN KEY "
    "(tenant_id, patient_id) REFERENCES patients (tenant_id, id) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED",
)


@pytest.fixture(scope="session")
def tenant_keyed_template(cutover_server: ServerInfo, reference_template: str) -> Iterator[str]:
    """The empty reference template with tenant-keyed foreign keys (NO ACTION and CASCADE, deferrable)."""
    name = f"hypo_tk_{uuid.uuid4().hex[:6]}"
    url = db.create_database(cutover_server.admin_url, name, template=reference_template)
    with db.connection(url, autocommit=True) as conn:
        for statement in TENANT_KEYS:
            conn.execute(statement)
    yield name
    db.drop_database(cutover_server.admin_url, name)


@EXAMPLE
@given(world=worlds())
def test_under_tenant_keyed_foreign_keys_the_cutover_moves_exactly_the_same_and_reverse_undoes_it(
    world: World, cutover_server: ServerInfo, tenant_keyed_template: str, cutover_plan: Plan,
    cutover_settings: Settings
) -> None:
    """The same oracle as without the keys: deferred (and children first under CASCADE), they change
    neither what moves nor what the report, the 12 checks and the reverse say."""
    with loaded(cutover_server.admin_url, tenant_keyed_template, _name(), world) as (url, text):
        note(f"-- reproduce on the empty reference database with tests/test_row_mixes.TENANT_KEYS:\n{text}")
        before = tenants_of(url)
        with db.connection(url, read_only=True) as conn:
            planned = preflight.run(conn, cutover_plan)
        assert planned.ready, [b.line() for b in planned.blockers]
        assert len(planned.deferred) == 3
        report = _execute(url, cutover_plan)
        after = tenants_of(url)
        moved, expected = _moved(before, after), must_move(world.rows)
        assert moved == expected
        assert {t: n for t, n in report["moved"].items() if n} == {t: len(v) for t, v in expected.items() if v}
        bad = failing(url, report, cutover_plan, cutover_settings)
        assert not bad, "\n\n".join(bad.values())
        aftercare.reverse(url, cutover_plan, ACTOR, engine.Timeouts(), report)
        assert tenants_of(url) == before


# The third model (tests/third_model): the reference schema under tenant-keyed foreign keys, with a
# (tenant_id, id) key, clinical.match_requests, "Document References", a refreshed materialized view and
# an audit trigger on messages into audit."Message Changes". Late messages cannot be stragglers here
# (their tenant-keyed foreign key refuses them on the source), so the sweep never fires that trigger.
THIRD_NAMES = third_model.RENAMED
THIRD_AUDIT = third_model.AUDIT


@pytest.fixture(scope="session")
def third_plan() -> Plan:
    return load_plan(third_model.PLAN)


@pytest.fixture(scope="session")
def third_template(cutover_server: ServerInfo, third_plan: Plan,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty third-model database: schema, the three tenants, the schema head, roles, grants, RLS."""
    url = reference_database(cutover_server, third_plan, 0, 1, prefix="hypo_3",
                             model=third_model.model(tmp_path_factory.mktemp("hypo_3")))
    with db.connection(url) as conn:
        for table in reversed(ORDER):
            conn.execute(sql.SQL("DELETE FROM {}").format(table_sql(THIRD_NAMES.get(table, table))))
        conn.commit()
    name = db.database_name(url)
    yield name
    db.drop_database(cutover_server.admin_url, name)


@settings(EXAMPLE, max_examples=max(3, settings().max_examples // 3))
@given(world=worlds(stragglers=True))
def test_on_the_third_model_the_cutover_sweep_and_reverse_move_exactly_what_the_spec_says(
    world: World, cutover_server: ServerInfo, third_template: str, third_plan: Plan, cutover_settings: Settings
) -> None:
    """The reference's oracle, unchanged, on the third model: moved == oracle (the report counts each
    table under the plan's name), the 12 checks pass, the stragglers are swept, the reverse undoes it all."""
    with loaded(cutover_server.admin_url, third_template, _name(), world, THIRD_NAMES) as (url, text):
        note(f"-- reproduce on an empty third-model database (tests/third_model):\n{text}")
        before = tenants_of(url, THIRD_NAMES)
        with db.connection(url, read_only=True) as conn:
            planned = preflight.run(conn, third_plan)
        assert planned.ready, [b.line() for b in planned.blockers]
        assert len(planned.deferred) == 4
        report = _execute(url, third_plan)
        after = tenants_of(url, THIRD_NAMES)
        moved, expected = _moved(before, after), must_move(world.rows)
        assert moved == expected
        plan_name = {t: THIRD_NAMES.get(t, t) for t in ORDER}
        assert ({t: n for t, n in report["moved"].items() if n}
                == {plan_name[t]: len(v) for t, v in expected.items() if v})
        # The audit trigger on messages wrote one row per moved message, on the target (the trail starts empty).
        moved_messages = len(expected["messages"])
        assert ({t: v for t, v in report.get("triggered", {}).items() if v}
                == ({THIRD_AUDIT: {TARGET: moved_messages}} if moved_messages else {}))
        bad = failing(url, report, third_plan, cutover_settings)
        assert not bad, "\n\n".join(bad.values())
        # A late message on the source cannot point at its case, moved to the target: messages'
        # tenant-keyed foreign key refuses it (the point of such keys), so the stragglers are the rest.
        stragglers = {t: rows for t, rows in world.late.items() if t != "messages"}
        with db.connection(url) as conn:
            late = insert_sql(conn, stragglers, THIRD_NAMES)
            if late:
                conn.execute(late.encode())
            conn.commit()
        note(f"-- execute, then:\n{late}\n-- then sweep, then reverse")
        mid = tenants_of(url, THIRD_NAMES)
        swept = aftercare.sweep(url, third_plan, ACTOR, engine.Timeouts())
        assert _moved(mid, tenants_of(url, THIRD_NAMES)) == must_move(stragglers)
        if swept is not None:  # as `cutover sweep --report-path` records it
            report.setdefault("sweeps", []).append(swept)
        bad = failing(url, report, third_plan, cutover_settings)
        unswept = sum(len(v) for v in stragglers.values()) - sum(len(v) for v in must_move(stragglers).values())
        assert set(bad) <= ({"A5"} if unswept else set()), "\n\n".join(bad.values())  # see the sweep test above
        aftercare.reverse(url, third_plan, ACTOR, engine.Timeouts(), report)
        # Every row where it was before the cutover; the late rows where they were written.
        assert tenants_of(url, THIRD_NAMES) == {t: {**mid[t], **before[t]} for t in ORDER}
        # The trail keeps what the trigger wrote: the cutover's rows moved back, one more per message moved back.
        with db.connection(url, read_only=True) as conn:
            trail = dict(conn.execute(sql.SQL("SELECT tenant_id, count(*) FROM {} GROUP BY 1").format(
                table_sql(THIRD_AUDIT))).fetchall())
        assert trail == ({SOURCE: 2 * moved_messages} if moved_messages else {})
