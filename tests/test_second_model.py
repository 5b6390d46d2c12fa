"""The whole flow on the second model: a schema unlike the reference one, adapted by its plan alone.

Bigint identity and uuid keys, a composite key (case_tags), a monthly-partitioned events table keyed
(id, created_at), updated_at triggers, soft-delete columns, a provider-owned table on forwarded
cases (provider_notes) and a patient table pointing at a provider's profile on another tenant
(appointments). Each of the four failures issue 13 reported is shown by a test here.
"""

# Faults and late writes are fixed SQL over constant tenant ids, as an operator would type them.
# ruff: noqa: S608

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cutover.core import db
from cutover.core.options import Settings
from cutover.core.plan import Plan, load_plan
from cutover.sandbox import snapshot
from cutover.sandbox.backends import ServerInfo
from cutover.suite.under_check import DatabaseUnderCheck
from tests.second_model import MODEL, PLAN
from tests.support import execute_sql, failing_evidence, operator_tests, rehearse_on, run_cutover, scalar

SRC, TGT, FORTIS = "'tenant-apollo-001'", "'tenant-curaway-patients'", "'tenant-fortis-002'"


@pytest.fixture(scope="session")
def second_plan() -> Plan:
    return load_plan(PLAN)


@pytest.fixture(scope="session")
def second_snapshot(cutover_server: ServerInfo, second_plan: Plan,
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The second model's pre-cutover snapshot, made as the runbook makes one (pg_dump | gzip)."""
    out = tmp_path_factory.mktemp("second") / "second.sql.gz"
    snapshot.make(out, second_plan, cutover_server.admin_url, scale=1, seed=7, model=MODEL)
    return out


@pytest.fixture(scope="session")
def second_template(cutover_server: ServerInfo, second_plan: Plan, second_snapshot: Path) -> Iterator[str]:
    """The snapshot restored once (into a database used only as a template)."""
    name = f"second_tpl_{uuid.uuid4().hex[:6]}"
    url = db.create_database(cutover_server.admin_url, name)
    snapshot.restore(second_snapshot, url, second_plan)
    yield url
    db.drop_database(cutover_server.admin_url, name)


def _clone(server: ServerInfo, template_url: str) -> str:
    return db.create_database(server.admin_url, f"second_{uuid.uuid4().hex[:8]}",
                              template=db.database_name(template_url))


@pytest.fixture
def second_db(cutover_server: ServerInfo, second_template: str) -> Iterator[str]:
    """A private, restored, not yet cut-over copy of the second model."""
    url = _clone(cutover_server, second_template)
    yield url
    db.drop_database(cutover_server.admin_url, db.database_name(url))


@pytest.fixture(scope="session")
def second_cut_template(cutover_server: ServerInfo, second_template: str,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    url = _clone(cutover_server, second_template)
    report = tmp_path_factory.mktemp("second_cut") / "report.json"
    done = run_cutover(url, "execute", "--operator-confirmed", f"--plan={PLAN}", f"--report-path={report}")
    assert done.returncode == 0, done.stderr
    yield url, json.loads(report.read_text())
    db.drop_database(cutover_server.admin_url, db.database_name(url))


@pytest.fixture
def second_cut(cutover_server: ServerInfo, second_cut_template: tuple[str, dict[str, Any]],
               tmp_path: Path) -> Iterator[tuple[DatabaseUnderCheck, Path]]:
    """A private copy of the cut-over second model, with its report on disk."""
    url = _clone(cutover_server, second_cut_template[0])
    path = tmp_path / "report.json"
    path.write_text(json.dumps(second_cut_template[1]))
    yield DatabaseUnderCheck(url, json.loads(path.read_text()), path, sandbox=True), path
    db.drop_database(cutover_server.admin_url, db.database_name(url))


def _checksum(url: str, plan: Plan) -> dict[str, str]:
    """Every row of every table, minus updated_at (the triggers stamp each move) and the cutover's events."""
    out = {}
    with db.connection(url, read_only=True) as conn:
        for table in plan.all_tables:
            where = "TRUE" if table != plan.audit.table else "source_service <> 'cutover'"
            row = conn.execute(f"SELECT md5(coalesce(string_agg((to_jsonb(t) - 'updated_at')::text, E'\\n' "
                               f"ORDER BY (to_jsonb(t) - 'updated_at')::text), '')) FROM {table} t "
                               f"WHERE {where}").fetchone()
            assert row is not None
            out[table] = str(row[0])
    return out


def _late_writes(url: str) -> None:
    """Patient rows that land on the source after the commit: one per key type."""
    execute_sql(
        url,
        f"INSERT INTO accounts (tenant_id, kind, email) VALUES ({SRC}, 'patient', 'late@example.test')",  # bigint
        f"INSERT INTO cases (tenant_id, patient_profile_id, status) SELECT {SRC}, id, 'open' "  # uuid
        f"FROM patient_profiles ORDER BY id LIMIT 1",
        f"INSERT INTO case_tags (case_id, tag, tenant_id) SELECT id, 'late', {SRC} FROM cases "  # composite
        f"ORDER BY id LIMIT 1",
        f"INSERT INTO events (tenant_id, event_type, source_service) VALUES ({SRC}, 'case.created', 'api')",
    )


# -- the flow ---------------------------------------------------------------------------------------

def test_dry_run_is_ready_and_the_execute_commits_typed_keys(second_db: str, tmp_path: Path) -> None:
    dry = run_cutover(second_db, "dry-run", f"--plan={PLAN}")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "READY" in dry.stdout
    report_path = tmp_path / "r.json"
    done = run_cutover(second_db, "execute", "--operator-confirmed", f"--plan={PLAN}", f"--report-path={report_path}")
    assert done.returncode == 0, done.stderr
    allow = json.loads(report_path.read_text())["allow_list"]
    assert all(isinstance(k, int) for k in allow["accounts"]) and allow["accounts"]
    assert all(isinstance(k, str) and len(k) == 36 for k in allow["cases"])
    assert all(isinstance(k, list) and len(k) == 2 for k in allow["case_tags"])
    tags = [tuple(k) for k in allow["case_tags"]]
    assert len(tags) == len(set(tags)) == scalar(second_db, f"SELECT count(*) FROM case_tags WHERE tenant_id = {TGT}")


def test_all_twelve_checks_pass_after_the_cutover(second_cut: tuple[DatabaseUnderCheck, Path], second_plan: Plan,
                                                  cutover_settings: Settings) -> None:
    """Issue 13, failure 1: a composite key made A10 fail on every correct cutover."""
    target, _ = second_cut
    assert failing_evidence(target, second_plan, cutover_settings) == {}


def test_the_report_rebuilt_from_the_database_passes_a10(second_cut: tuple[DatabaseUnderCheck, Path], second_plan: Plan,
                                                         cutover_settings: Settings, tmp_path: Path) -> None:
    target, _ = second_cut
    rebuilt = tmp_path / "rebuilt.json"
    done = run_cutover(target.url, "report", "--rebuild", f"--plan={PLAN}", f"--report-path={rebuilt}")
    assert done.returncode == 0, done.stderr
    report = json.loads(rebuilt.read_text())
    assert report["allow_list"]["case_tags"] == target.report["allow_list"]["case_tags"]  # type: ignore[index]
    assert failing_evidence(target, second_plan, cutover_settings, report) == {}


def test_sweep_moves_late_writes_of_every_key_type(second_cut: tuple[DatabaseUnderCheck, Path], second_plan: Plan,
                                                   cutover_settings: Settings) -> None:
    """Issue 13, failure 2: a non-text key made the sweep roll back (operator does not exist: uuid = text)."""
    target, path = second_cut
    _late_writes(target.url)
    assert set(failing_evidence(target, second_plan, cutover_settings)) >= {"A3", "A20"}
    done = run_cutover(target.url, "sweep", f"--plan={PLAN}", f"--report-path={path}")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(path.read_text())
    ids = report["sweeps"][0]["ids"]
    assert set(ids) == {"accounts", "cases", "case_tags", "events"}
    assert isinstance(ids["accounts"][0], int) and isinstance(ids["case_tags"][0], list)
    assert failing_evidence(target, second_plan, cutover_settings, report) == {}


def test_reverse_restores_the_pre_cutover_checksum(second_db: str, second_plan: Plan, tmp_path: Path) -> None:
    """Issue 13, failure 2: rollback option 2 could not run on a uuid or bigint key."""
    before = _checksum(second_db, second_plan)
    path = tmp_path / "r.json"
    assert run_cutover(second_db, "execute", "--operator-confirmed", f"--plan={PLAN}",
                       f"--report-path={path}").returncode == 0
    assert _checksum(second_db, second_plan) != before
    dry = run_cutover(second_db, "reverse", "--dry-run", f"--plan={PLAN}", f"--report-path={path}")
    assert dry.returncode == 0, dry.stderr
    done = run_cutover(second_db, "reverse", "--operator-confirmed", f"--plan={PLAN}", f"--report-path={path}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _checksum(second_db, second_plan) == before


# -- the plan against the catalog ---------------------------------------------------------------------

def test_an_unplanned_tenant_scoped_table_blocks_the_dry_run(second_db: str) -> None:
    """Issue 13, failure 4: a table missing from the plan went unnoticed (READY, rows left behind)."""
    execute_sql(second_db,
                "CREATE TABLE reminders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                "tenant_id text NOT NULL REFERENCES tenants (id), case_id uuid REFERENCES cases (id))",
                f"INSERT INTO reminders (tenant_id, case_id) SELECT {SRC}, id FROM cases")
    dry = run_cutover(second_db, "dry-run", f"--plan={PLAN}")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "BLOCKED" in dry.stdout
    line = next(ln for ln in dry.stdout.splitlines() if "unplanned" in ln)
    assert "reminders" in line and "[tables.reminders]" in line and "events_2026_01" not in dry.stdout


def test_an_unplanned_table_on_the_target_fails_a1(second_cut: tuple[DatabaseUnderCheck, Path], second_plan: Plan,
                                                   cutover_settings: Settings) -> None:
    target, _ = second_cut
    execute_sql(target.url, "CREATE TABLE reminders (id bigint PRIMARY KEY, tenant_id text NOT NULL)",
                f"INSERT INTO reminders VALUES (1, {SRC}), (2, {SRC})")
    failed = failing_evidence(target, second_plan, cutover_settings)
    assert set(failed) == {"A1"}
    assert "reminders" in failed["A1"] and "2 rows" in failed["A1"]


@pytest.mark.parametrize(("edit", "message"), [
    (('key = ["case_id", "tag"]', 'key = ["case_id"]'), r"\[tables\.case_tags\]\.key.*not unique"),
    (('column = "account_id"', 'column = "acount_id"'), r"\[tables\.patient_profiles\].*acount_id.*does not exist"),
    (('[tables.provider_notes]\nkey = "id"', '[tables.provider_notez]\nkey = "id"'), r"provider_notez.*does not exist"),
])
def test_a_plan_that_disagrees_with_the_catalog_blocks(second_db: str, tmp_path: Path, edit: tuple[str, str],
                                                       message: str) -> None:
    text = PLAN.read_text()
    assert edit[0] in text
    plan = tmp_path / "plan.toml"
    plan.write_text(text.replace(edit[0], edit[1], 1))
    dry = run_cutover(second_db, "dry-run", f"--plan={plan}")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert any(__import__("re").search(message, ln) for ln in dry.stdout.splitlines()), dry.stdout


# -- declared cross-tenant references ------------------------------------------------------------------

def test_a_provider_profile_reference_needs_its_declaration(second_db: str, tmp_path: Path) -> None:
    """Issue 13, failure 3: a non-case cross-tenant reference could not be declared (via_share blocked it)."""
    text = PLAN.read_text()
    as_share = tmp_path / "share.toml"
    as_share.write_text(text.replace('table = "provider_profiles", cross_tenant = "provider"',
                                     'table = "provider_profiles", via_share = true'))
    assert run_cutover(second_db, "dry-run", f"--plan={as_share}").returncode == 1
    undeclared = tmp_path / "none.toml"
    undeclared.write_text(text.replace(', cross_tenant = "provider" }', " }"))
    blocked = run_cutover(second_db, "dry-run", f"--plan={undeclared}")
    assert blocked.returncode == 1 and "appointments.provider_profile_id" in blocked.stdout
    assert run_cutover(second_db, "dry-run", f"--plan={PLAN}").returncode == 0


def test_a_profile_on_the_patient_tenant_is_not_excused(second_db: str) -> None:
    """"provider" allows any tenant but the patient tenant, no more: a provider's appointment pointing at
    a profile on the patient tenant is an orphan."""
    execute_sql(second_db, f"INSERT INTO provider_profiles (tenant_id, display_name) VALUES ({TGT}, 'wrong')",
                f"UPDATE appointments SET provider_profile_id = (SELECT max(id) FROM provider_profiles), "
                f"tenant_id = {FORTIS} WHERE id = (SELECT id FROM appointments ORDER BY id LIMIT 1)")
    dry = run_cutover(second_db, "dry-run", f"--plan={PLAN}")
    assert dry.returncode == 1 and "appointments.provider_profile_id" in dry.stdout


# -- faults on the new tables, each caught by the right checks -----------------------------------------

FAULTS = {
    "case-tag-left-on-source": (f"UPDATE case_tags SET tenant_id = {SRC} WHERE (case_id, tag) = "
                                f"(SELECT case_id, tag FROM case_tags ORDER BY 1, 2 LIMIT 1)",
                                {"A3", "A4", "A5", "A10", "A20", "A21"}),
    "provider-note-on-target": (f"UPDATE provider_notes SET tenant_id = {TGT} WHERE id = 1", {"A5", "A6"}),
    "appointment-profile-on-target": (f"UPDATE provider_profiles SET tenant_id = {TGT} WHERE id = "
                                      f"(SELECT provider_profile_id FROM appointments ORDER BY id LIMIT 1)",
                                      {"A5", "A6"}),
    "appointment-on-a-provider-tenant": (f"UPDATE appointments SET tenant_id = {FORTIS} WHERE id = "
                                         f"(SELECT id FROM appointments ORDER BY id LIMIT 1)", {"A4", "A5", "A10"}),
    "event-left-on-source": (f"UPDATE events SET tenant_id = {SRC} WHERE (id, created_at) = (SELECT id, created_at "
                             f"FROM events WHERE tenant_id = {TGT} AND event_type = 'case.created' LIMIT 1)",
                             {"A3", "A5", "A8", "A10", "A20", "A21"}),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_on_a_new_table_is_caught_by_the_right_checks(second_cut: tuple[DatabaseUnderCheck, Path],
                                                              second_plan: Plan,
                                                              cutover_settings: Settings, fault: str) -> None:
    target, _ = second_cut
    statement, expected = FAULTS[fault]
    execute_sql(target.url, statement)
    assert set(failing_evidence(target, second_plan, cutover_settings)) == expected


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(tags=st.lists(st.text(min_size=1, max_size=12).filter(lambda s: "\x00" not in s), min_size=1, max_size=6,
                     unique=True))
def test_late_composite_keys_of_any_text_are_swept_and_a10_exact(
        cutover_server: ServerInfo, second_cut_template: tuple[str, dict[str, Any]], second_plan: Plan,
        cutover_settings: Settings, tmp_path_factory: pytest.TempPathFactory, tags: list[str]) -> None:
    """Whatever a composite key's text holds (quotes, commas, backslashes, newlines), the sweep moves it
    and A10 finds the target exactly as the report says."""
    url = _clone(cutover_server, second_cut_template[0])
    try:
        path = tmp_path_factory.mktemp("prop") / "r.json"
        path.write_text(json.dumps(second_cut_template[1]))
        with db.connection(url, autocommit=True) as conn:
            case = scalar(url, "SELECT id FROM cases ORDER BY id LIMIT 1")
            for tag in tags:
                conn.execute("INSERT INTO case_tags (case_id, tag, tenant_id) VALUES (%s, %s, %s) "
                             "ON CONFLICT DO NOTHING", (case, tag, SRC.strip("'")))
        done = run_cutover(url, "sweep", f"--plan={PLAN}", f"--report-path={path}")
        assert done.returncode == 0, done.stderr
        report = json.loads(path.read_text())
        target = DatabaseUnderCheck(url, report, path, sandbox=True)
        assert failing_evidence(target, second_plan, cutover_settings) == {}
    finally:
        db.drop_database(cutover_server.admin_url, db.database_name(url))


# -- plan draft and plan check -------------------------------------------------------------------------

def test_plan_draft_finds_every_table_key_and_reference(second_db: str, second_plan: Plan, tmp_path: Path) -> None:
    out = tmp_path / "draft.toml"
    done = run_cutover(second_db, "plan", "draft", f"--db-url={second_db}", f"--out={out}")
    assert done.returncode == 0, done.stderr
    draft = load_plan(out)  # a draft is a loadable plan, with its open questions marked
    text = out.read_text()
    assert "# REVIEW" in text and "events_2026_01" not in text
    assert set(draft.table_names) == set(second_plan.table_names)
    for rule in second_plan.tables:
        assert draft.table(rule.name).key == rule.key, rule.name
        assert {(r.column, r.table) for r in draft.table(rule.name).references} == \
            {(r.column, r.table) for r in rule.references}, rule.name
    assert draft.table("case_tags").key == ("case_id", "tag")
    assert draft.table("events").key == ("id", "created_at")
    assert draft.table("cases").owner == "patient" and draft.table("documents").owner == "patient"
    assert {"intake.started", "case.created", "tenant.settings_updated"} <= set(draft.classifications["event_type"])
    assert "note.added" not in draft.classifications["event_type"]  # only on a provider tenant, not the source
    assert "POST /v2/cases" in draft.classifications["route"]
    assert 'cross_tenant = \\"provider\\"' in text or 'cross_tenant = "provider"' in text


def test_plan_check_agrees_with_the_reviewed_plan_and_lists_differences(second_db: str, tmp_path: Path) -> None:
    agree = run_cutover(second_db, "plan", "check", f"--db-url={second_db}", f"--plan={PLAN}")
    assert agree.returncode == 0, agree.stdout + agree.stderr
    assert "agree" in agree.stdout
    execute_sql(second_db, "CREATE TABLE reminders (id bigint PRIMARY KEY, tenant_id text NOT NULL)",
                "ALTER TABLE case_tags DROP CONSTRAINT case_tags_pkey",
                f"INSERT INTO events (tenant_id, event_type, source_service) VALUES ({SRC}, 'case.archived', 'api')")
    differ = run_cutover(second_db, "plan", "check", f"--db-url={second_db}", f"--plan={PLAN}")
    assert differ.returncode == 1, differ.stdout + differ.stderr
    codes = [ln.split(":")[0] for ln in differ.stdout.splitlines()[:-1]]
    assert sorted(codes) == ["key-not-unique", "unclassified", "unplanned-table"], differ.stdout
    assert "case.archived" in differ.stdout and "[tables.reminders]" in differ.stdout


def test_a_reference_declared_without_a_foreign_key_is_checked_like_one(second_db: str, tmp_path: Path) -> None:
    """documents.patient_profile_id without its foreign key (as a Rails schema has it): plan check asks
    for the key until the plan says foreign_key = false; then it agrees, the dry run is READY, and a
    document naming a profile that does not exist (which no constraint stops now) blocks it as an orphan."""
    execute_sql(second_db, "ALTER TABLE documents DROP CONSTRAINT documents_patient_profile_id_fkey")
    asked = run_cutover(second_db, "plan", "check", f"--db-url={second_db}", f"--plan={PLAN}")
    assert asked.returncode == 1 and "reference-without-fk" in asked.stdout, asked.stdout
    assert "foreign_key = false" in asked.stdout, asked.stdout
    declared = tmp_path / "plan.toml"
    old = '{ column = "case_id", table = "cases" }, { column = "patient_profile_id", table = "patient_profiles" }'
    assert PLAN.read_text().count(old) == 1
    declared.write_text(PLAN.read_text().replace(old, old[:-2] + ", foreign_key = false }"))
    agree = run_cutover(second_db, "plan", "check", f"--db-url={second_db}", f"--plan={declared}")
    assert agree.returncode == 0, agree.stdout
    assert run_cutover(second_db, "dry-run", f"--plan={declared}").returncode == 0
    execute_sql(second_db, f"INSERT INTO documents (tenant_id, case_id, patient_profile_id, storage_key) SELECT "
                           f"{SRC}, id, '00000000-0000-4000-8000-000000000000', 's3://orphan' FROM cases LIMIT 1")
    dry = run_cutover(second_db, "dry-run", f"--plan={declared}")
    assert dry.returncode == 1, dry.stdout
    assert "BLOCKER orphans: 1 documents rows" in dry.stdout, dry.stdout
    assert "documents.patient_profile_id" in dry.stdout, dry.stdout


def test_a_partitioned_tables_single_column_key_names_its_exact_replacement(second_db: str, tmp_path: Path) -> None:
    """``key = "id"`` on the partitioned events table, as plans had it before keys could be lists: the
    dry run and plan check say the replacement to paste, the partitioned primary key."""
    old = tmp_path / "plan.toml"
    text = PLAN.read_text()
    assert '[tables.events]\nkey = ["id", "created_at"]' in text
    old.write_text(text.replace('[tables.events]\nkey = ["id", "created_at"]', '[tables.events]\nkey = "id"', 1))
    fix = '[tables.events].key: (id) is not unique in events'
    replacement = 'set key = ["id", "created_at"]'
    check = run_cutover(second_db, "plan", "check", f"--db-url={second_db}", f"--plan={old}")
    assert check.returncode == 1 and fix in check.stdout and replacement in check.stdout, check.stdout
    dry = run_cutover(second_db, "dry-run", f"--plan={old}")
    assert dry.returncode == 1 and fix in dry.stdout and replacement in dry.stdout, dry.stdout


def test_plan_commands_refuse_bad_input_in_one_line(second_db: str, empty_db: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(PLAN.read_text().replace("[tenants]", "[tenants", 1))
    done = run_cutover(second_db, "plan", "check", f"--db-url={second_db}", f"--plan={bad}")
    assert done.returncode == 4 and len(done.stderr.strip().splitlines()) == 1 and "--plan" in done.stderr
    out = tmp_path / "draft.toml"
    done = run_cutover(empty_db, "plan", "draft", f"--db-url={empty_db}", f"--out={out}")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "--tenant-table" in done.stderr
    assert not out.exists()


# -- through the plugin, as an operator runs it --------------------------------------------------------

def test_the_rehearsal_is_ready_commits_and_passes_set_a_and_a20_active(pytester: pytest.Pytester, example: Any,
                                                                        second_db: str) -> None:
    """The rehearsal on the restored second model with its plan, as `-m setA --rehearse=DBNAME` runs it:
    dry run READY, execute committed, the 12 checks passed, and A20-active (its straggler written into
    the partitioned events table, keyed (bigint identity, created_at)) swept and cleaned up."""
    args = example(**operator_tests("test_matrix", "test_sweep_active"))
    result = pytester.runpytest("-m", "setA", f"--plan={PLAN}", *rehearse_on(second_db),
                                "-p", "no:randomly", "-rA", *args)
    out = result.stdout.str()
    assert "READY" in out and "committed" in out.lower(), out
    assert result.parseoutcomes().get("failed", 0) == 0, out
    assert "ALL 12 CHECKS PASSED" in out, out
    # No manual check is part of this example project: the verdict says so, and the exit code is not 0.
    assert "REHEARSAL NOT READY: A5-content not run, rollback not run, 9 unanswered" in out and result.ret == 6, out
    assert any(ln.startswith("PASSED") and "A20active_" in ln for ln in out.splitlines()), out
    assert scalar(second_db, "SELECT count(*) FROM events WHERE payload->>'actor' = "
                             "'rehearsal:synthetic-straggler'") == 0
    assert scalar(second_db, f"SELECT count(*) FROM events WHERE tenant_id = {SRC} AND event_type = "
                             f"'intake.started'") == 0
