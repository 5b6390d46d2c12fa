"""Any table name (issue 23, point 6): names that need quoting, written into a plan and read back.

``"Case Notes"`` (a space and capitals), a name holding a quote and a newline (which, written bare,
would start a TOML section of its own), and a non-ASCII name: ``plan draft`` writes a plan that loads
with each name exactly, and the unplanned-table blocker's fix is a section header that parses to it.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from cutover.core.errors import SetupError
from cutover.core.options import Settings
from cutover.core.plan import DEFAULT_PLAN, Plan, load_plan, toml_key, toml_string
from cutover.sandbox import snapshot
from cutover.sandbox.pgbin import ClientTools
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import checksum, execute_sql, failing_evidence, run_cutover, scalar

SRC, TGT = "tenant-apollo-001", "tenant-curaway-patients"
ODD_NAMES = ("Case Notes", 'note"s\n[plan]\nname = "x"', "Behandlungsnotizen_ä")


def _create(url: str, name: str) -> None:
    """A patient table of that name: keyed by id, on a case, carrying the tenant column."""
    execute_sql(url, sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants (id), "
                             "case_id text NOT NULL REFERENCES cases (id), body text)").format(sql.Identifier(name)))


@pytest.fixture
def odd_db(fresh_db: str) -> str:
    for name in ODD_NAMES:
        _create(fresh_db, name)
    return fresh_db


def _checked_and_executed(url: str, plan_path: Path, path: Path, unplanned_mark: str) -> tuple[Path, Any]:
    """``plan check`` names none of the new tables as unplanned (``unplanned_mark`` is absent from its
    output), the dry run is READY and execute commits; the report's path and content."""
    check = run_cutover(url, "plan", "check", f"--db-url={url}", f"--plan={plan_path}")
    assert check.returncode in (0, 1) and unplanned_mark not in check.stdout, check.stdout + check.stderr  # the
    # reference plan leaves three foreign keys undeclared; the new tables are planned as the database has them
    dry = run_cutover(url, "dry-run", f"--plan={plan_path}")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    done = run_cutover(url, "execute", "--operator-confirmed", f"--plan={plan_path}", f"--report-path={path}")
    assert done.returncode == 0, done.stdout + done.stderr
    return path, json.loads(path.read_text())


def test_plan_draft_writes_a_plan_that_loads_with_any_table_name(odd_db: str, tmp_path: Path) -> None:
    out = tmp_path / "draft.toml"
    done = run_cutover(odd_db, "plan", "draft", f"--db-url={odd_db}", f"--out={out}")
    assert done.returncode == 0, done.stderr
    draft = load_plan(out)
    for name in ODD_NAMES:
        rule = draft.table(name)
        assert rule.key == ("id",) and rule.owner == "patient", name
        assert [(r.column, r.table) for r in rule.references] == [("case_id", "cases")]
    assert draft.name == "drafted-cutover"  # the newline in a name started no section of its own


def test_the_unplanned_table_fix_is_a_section_that_names_the_table(odd_db: str) -> None:
    dry = run_cutover(odd_db, "dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    lines = [ln for ln in dry.stdout.splitlines() if "unplanned-table:" in ln]
    assert len(lines) == len(ODD_NAMES), dry.stdout  # one line each: no name breaks its line
    fixed = set()
    for line in lines:
        header = re.search(r"add (\[tables\..*\]) \(key, owner", line)
        assert header is not None, line
        parsed = tomllib.loads(f"{header.group(1)}\nkey = \"id\"\n")
        fixed |= set(parsed["tables"])
    assert fixed == set(ODD_NAMES)


@pytest.mark.parametrize("name", ["cases", "Case Notes", 'a"b', "a\\b", "x\ny", "tab\there", "del\x7f", "ä", "😀",
                                  "a.b", ""])
def test_toml_key_reads_back_as_the_name(name: str) -> None:
    assert tomllib.loads(f"[tables.{toml_key(name)}]\nk = 1\n")["tables"] == {name: {"k": 1}}


# -- snapshot validation: the plan's tables found in plain dumps and custom archives --------------------

SNAPSHOT_NAMES = ("Case Notes", 'note"s\n[plan]', "Behandlungsnotizen_ä", "reminders")


@pytest.fixture
def odd_dumps(empty_db: str, tmp_path: Path) -> dict[str, Path]:
    """A plain gzip'd dump and a custom archive of tables pg_dump must quote, one in schema ``app``."""
    execute_sql(empty_db, "CREATE SCHEMA app", "CREATE TABLE app.reminders (id bigint PRIMARY KEY)",
                *[sql.SQL("CREATE TABLE {} (id text PRIMARY KEY)").format(sql.Identifier(name))
                  for name in SNAPSHOT_NAMES[:3]])
    tools = ClientTools()
    plain, custom = tmp_path / "odd.sql.gz", tmp_path / "odd.dump"
    argv, env = tools.command("pg_dump", empty_db, "--no-owner", "--no-privileges")
    done = subprocess.run(argv, env=env, capture_output=True, check=True)
    plain.write_bytes(gzip.compress(done.stdout))
    argv, env = tools.command("pg_dump", empty_db, "--no-owner", "--no-privileges", "-Fc", "-f", str(custom))
    subprocess.run(argv, env=env, capture_output=True, check=True)
    return {"plain": plain, "custom": custom}


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_snapshot_validation_finds_quoted_non_ascii_and_non_public_tables(odd_dumps: dict[str, Path], fmt: str,
                                                                          cutover_plan: Plan) -> None:
    plan = dataclasses.replace(cutover_plan, static_tables=SNAPSHOT_NAMES, tables=())
    assert snapshot.validate(odd_dumps[fmt], plan) == ("custom" if fmt == "custom" else "plain-gz")
    wrong = dataclasses.replace(plan, static_tables=(*SNAPSHOT_NAMES, "Case notes"))
    with pytest.raises(SetupError, match=r'missing tables: "Case notes"\)'):
        snapshot.validate(odd_dumps[fmt], wrong)
    qualified = dataclasses.replace(plan, static_tables=("app.reminders", "public.Case Notes"))
    assert snapshot.validate(odd_dumps[fmt], qualified)
    elsewhere = dataclasses.replace(plan, static_tables=("public.reminders",))
    with pytest.raises(SetupError, match=r'missing tables: "public.reminders"\)'):
        snapshot.validate(odd_dumps[fmt], elsewhere)


# -- a planned table whose name needs quoting, through every command ---------------------------------------

QUOTED = 'Case "Notes"'


@pytest.fixture
def quoted_plan(tmp_path: Path) -> Path:
    """The reference plan with a patient table whose name holds a space, capitals and quotes."""
    text = DEFAULT_PLAN.read_text()
    step = '["messages", "document_references", "match_requests"],'
    assert step in text
    text = text.replace(step, step[:-2] + f", {toml_string(QUOTED)}],", 1)
    text += (f"\n[tables.{toml_key(QUOTED)}]\nkey = \"id\"\nowner = \"patient\"\n"
             "references = [{ column = \"case_id\", table = \"cases\" }]\n")
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_a_table_name_that_needs_quoting_works_in_every_command(fresh_db: str, quoted_plan: Path, tmp_path: Path,
                                                                cutover_settings: Settings) -> None:
    _create(fresh_db, QUOTED)
    plan = load_plan(quoted_plan)
    table = sql.Identifier(QUOTED)
    execute_sql(fresh_db, *(sql.SQL(statement).format(table) for statement in (
        "ALTER TABLE {} ENABLE ROW LEVEL SECURITY", "ALTER TABLE {} FORCE ROW LEVEL SECURITY",
        "CREATE POLICY tenant_isolation ON {} USING (tenant_id = current_setting('app.tenant_id', true))")),
        sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(", ").join(map(sql.SQL, plan.app_privileges)), table,
                                               sql.Identifier(plan.app_role)))
    execute_sql(fresh_db, sql.SQL("INSERT INTO {} (id, tenant_id, case_id, body) SELECT 'n-' || id, tenant_id, id, "
                                  "'note' FROM cases").format(sql.Identifier(QUOTED)))
    before = checksum(fresh_db, plan)
    path, report = _checked_and_executed(fresh_db, quoted_plan, tmp_path / "r.json", "Notes")
    assert report["moved"][QUOTED] == scalar(fresh_db, "SELECT count(*) FROM cases WHERE tenant_id = %s", (TGT,)) > 0
    target = DatabaseUnderCheck(fresh_db, report, path, sandbox=True)
    assert failing_evidence(target, plan, cutover_settings) == {}
    execute_sql(fresh_db, sql.SQL("INSERT INTO {} (id, tenant_id, case_id, body) SELECT 'late', {}, id, 'late' "
                                  "FROM cases WHERE tenant_id = {} LIMIT 1").format(
        sql.Identifier(QUOTED), sql.Literal(SRC), sql.Literal(TGT)))
    rebuilt = tmp_path / "rebuilt.json"
    assert run_cutover(fresh_db, "report", "--rebuild", f"--plan={quoted_plan}",
                       f"--report-path={rebuilt}").returncode == 0
    assert json.loads(rebuilt.read_text())["allow_list"][QUOTED]
    swept = run_cutover(fresh_db, "sweep", f"--plan={quoted_plan}", f"--report-path={path}")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert failing_evidence(target, plan, cutover_settings, json.loads(path.read_text())) == {}
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", f"--plan={quoted_plan}", f"--report-path={path}")
    assert back.returncode == 0, back.stdout + back.stderr
    execute_sql(fresh_db, sql.SQL("DELETE FROM {} WHERE id = 'late'").format(sql.Identifier(QUOTED)))
    assert checksum(fresh_db, plan) == before


# -- tables outside public: the schema first in the search path ---------------------------------------------

def test_tables_outside_public_are_cut_over_with_their_schema_in_the_search_path(
        fresh_db: str, tmp_path: Path, cutover_settings: Settings, cutover_plan: Plan) -> None:
    """The application's tables in schema ``app``: without it in the search path the dry run says where
    they are and how to point the cutover at them; with it every command works on them."""
    execute_sql(fresh_db, "ALTER SCHEMA public RENAME TO app", "CREATE SCHEMA public")
    blocked = run_cutover(fresh_db, "dry-run")
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    line = next(ln for ln in blocked.stdout.splitlines() if "missing-tables" in ln)
    assert "schema app" in line and "search_path" in line, line
    url = fresh_db + ("&" if "?" in fresh_db else "?") + "options=-csearch_path%3Dapp"
    before = checksum(url, cutover_plan)
    assert run_cutover(url, "dry-run").returncode == 0
    path = tmp_path / "r.json"
    done = run_cutover(url, "execute", "--operator-confirmed", f"--report-path={path}")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(path.read_text())
    assert failing_evidence(DatabaseUnderCheck(url, report, path, sandbox=True), cutover_plan, cutover_settings) == {}
    back = run_cutover(url, "reverse", "--operator-confirmed", f"--report-path={path}")
    assert back.returncode == 0, back.stdout + back.stderr
    assert checksum(url, cutover_plan) == before


# -- tables in another schema, named with it in the plan: app.case_notes ---------------------------------

APP_TABLES = ("app.case_notes", "app.v1.notes")  # the second: table "v1.notes", a dot in its own name


@pytest.fixture
def schema_plan(tmp_path: Path) -> Path:
    """The reference plan with two patient tables in schema ``app`` beside public's, one pointing at the
    other, and a materialized view of ``app`` refreshed by the cutover."""
    text = DEFAULT_PLAN.read_text()
    step = '["idempotency_keys"],'
    assert step in text
    text = text.replace(step, step + f"\n    [{toml_string(APP_TABLES[0])}],\n    [{toml_string(APP_TABLES[1])}],", 1)
    text += (f"\n[tables.{toml_key(APP_TABLES[0])}]\nkey = \"id\"\nowner = \"patient\"\n"
             "references = [{ column = \"case_id\", table = \"cases\" }]\n"
             f"\n[tables.{toml_key(APP_TABLES[1])}]\nkey = \"id\"\nowner = \"patient\"\n"
             f"references = [{{ column = \"note_id\", table = {toml_string(APP_TABLES[0])} }}]\n"
             "\n[refresh]\nmaterialized_views = [\"app.note_counts\"]\n")
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def _app_schema(url: str, plan: Plan) -> None:
    """Schema ``app`` with the two patient tables (RLS forced, a policy, the app role's grants) and a
    materialized view counting notes per tenant, every public case with a note on its tenant."""
    role = sql.Identifier(plan.app_role)
    execute_sql(url, "CREATE SCHEMA app", sql.SQL("GRANT USAGE ON SCHEMA app TO {}").format(role),
                "CREATE TABLE app.case_notes (id text PRIMARY KEY, tenant_id text NOT NULL REFERENCES public.tenants "
                "(id), case_id text NOT NULL REFERENCES public.cases (id), body text)",
                'CREATE TABLE app."v1.notes" (id text PRIMARY KEY, tenant_id text NOT NULL REFERENCES public.tenants '
                "(id), note_id text NOT NULL REFERENCES app.case_notes (id))",
                "CREATE MATERIALIZED VIEW app.note_counts AS SELECT tenant_id, count(*) AS notes FROM app.case_notes "
                "GROUP BY tenant_id")
    for table in (sql.SQL("app.case_notes"), sql.SQL('app."v1.notes"')):
        execute_sql(url, *(sql.SQL(statement).format(table) for statement in (
            "ALTER TABLE {} ENABLE ROW LEVEL SECURITY", "ALTER TABLE {} FORCE ROW LEVEL SECURITY",
            "CREATE POLICY tenant_isolation ON {} USING (tenant_id = current_setting('app.tenant_id', true))")),
            sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(", ").join(map(sql.SQL, plan.app_privileges)), table,
                                                   role))
    execute_sql(url, "INSERT INTO app.case_notes (id, tenant_id, case_id, body) SELECT 'n-' || id, tenant_id, id, "
                     "'note' FROM public.cases",
                'INSERT INTO app."v1.notes" (id, tenant_id, note_id) SELECT \'v-\' || id, tenant_id, id '
                "FROM app.case_notes", "REFRESH MATERIALIZED VIEW app.note_counts")


def test_a_plan_names_tables_of_another_schema_with_it_in_every_command(
        fresh_db: str, schema_plan: Path, tmp_path: Path, cutover_settings: Settings) -> None:
    """``app.case_notes`` in the plan is table case_notes of schema app, whatever the search path; a
    dot after the schema is the table's own (``app.v1.notes``). Plan check, the dry run, execute (and
    its refresh of ``app.note_counts``), the 12 checks, the rebuilt report, the sweep and the reverse."""
    plan = load_plan(schema_plan)
    _app_schema(fresh_db, plan)
    before = checksum(fresh_db, plan)
    path, report = _checked_and_executed(fresh_db, schema_plan, tmp_path / "r.json", "app.")
    cases = scalar(fresh_db, "SELECT count(*) FROM cases WHERE tenant_id = %s", (TGT,))
    assert report["moved"]["app.case_notes"] == report["moved"]["app.v1.notes"] == cases > 0
    assert scalar(fresh_db, "SELECT notes FROM app.note_counts WHERE tenant_id = %s", (TGT,)) == cases  # refreshed
    target = DatabaseUnderCheck(fresh_db, report, path, sandbox=True)
    assert failing_evidence(target, plan, cutover_settings) == {}
    execute_sql(fresh_db, sql.SQL("INSERT INTO app.case_notes (id, tenant_id, case_id, body) SELECT 'late', {}, id, "
                                  "'late' FROM cases WHERE tenant_id = {} LIMIT 1").format(sql.Literal(SRC),
                                                                                          sql.Literal(TGT)))
    rebuilt = tmp_path / "rebuilt.json"
    assert run_cutover(fresh_db, "report", "--rebuild", f"--plan={schema_plan}",
                       f"--report-path={rebuilt}").returncode == 0
    assert json.loads(rebuilt.read_text())["allow_list"]["app.v1.notes"]
    swept = run_cutover(fresh_db, "sweep", f"--plan={schema_plan}", f"--report-path={path}")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert failing_evidence(target, plan, cutover_settings, json.loads(path.read_text())) == {}
    preview = run_cutover(fresh_db, "reverse", "--dry-run", f"--plan={schema_plan}", f"--report-path={path}")
    assert preview.returncode == 0 and "app.v1.notes" in preview.stdout, preview.stdout + preview.stderr
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", f"--plan={schema_plan}", f"--report-path={path}")
    assert back.returncode == 0, back.stdout + back.stderr
    execute_sql(fresh_db, "DELETE FROM app.case_notes WHERE id = 'late'")
    assert checksum(fresh_db, plan) == before


def test_plan_draft_writes_tables_outside_the_search_paths_schema_with_their_schema(
        fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    _app_schema(fresh_db, cutover_plan)
    out = tmp_path / "draft.toml"
    done = run_cutover(fresh_db, "plan", "draft", f"--db-url={fresh_db}", f"--out={out}")
    assert done.returncode == 0, done.stderr
    assert '[tables."app.case_notes"]' in out.read_text()
    draft = load_plan(out)
    assert [(r.column, r.table) for r in draft.table("app.v1.notes").references] == [("note_id", "app.case_notes")]
    assert [(r.column, r.table) for r in draft.table("app.case_notes").references] == [("case_id", "cases")]
    assert draft.table("app.case_notes").owner == "patient" and "cases" in draft.table_names
    assert draft.refresh_views == ("app.note_counts",)


def test_an_unplanned_table_in_a_schema_the_plan_names_is_a_blocker_naming_it_with_its_schema(
        fresh_db: str, schema_plan: Path) -> None:
    """The catalog reads every schema the plan names: a tenant-scoped table there that the plan leaves
    out would be neither moved nor checked."""
    plan = load_plan(schema_plan)
    _app_schema(fresh_db, plan)
    execute_sql(fresh_db, "CREATE TABLE app.cases (id text PRIMARY KEY, tenant_id text NOT NULL)")
    dry = run_cutover(fresh_db, "dry-run", f"--plan={schema_plan}")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    lines = [ln for ln in dry.stdout.splitlines() if "unplanned-table:" in ln]
    assert len(lines) == 1 and '[tables."app.cases"]' in lines[0], dry.stdout
    check = run_cutover(fresh_db, "plan", "check", f"--db-url={fresh_db}", f"--plan={schema_plan}")
    assert check.returncode == 1 and '[tables."app.cases"]' in check.stdout, check.stdout + check.stderr


def test_plan_draft_finds_the_patient_root_in_another_schema(fresh_db: str, tmp_path: Path) -> None:
    """``app.patients`` is the patient root as ``patients`` was: every chain of foreign keys to it is drafted
    as patient-owned, not left to the provider."""
    execute_sql(fresh_db, "CREATE SCHEMA app", "ALTER TABLE patients SET SCHEMA app")
    out = tmp_path / "draft.toml"
    done = run_cutover(fresh_db, "plan", "draft", f"--db-url={fresh_db}", f"--out={out}")
    assert done.returncode == 0, done.stderr
    draft = load_plan(out)
    assert draft.table("app.patients").owner == "patient" and draft.rehearsal.patient_table == "app.patients"
    assert draft.table("cases").owner == "patient"
    assert [(r.column, r.table) for r in draft.table("cases").references if r.column == "patient_id"] == [
        ("patient_id", "app.patients")]


def test_a_dotted_table_name_from_an_earlier_plan_is_missing_with_the_name_that_fixes_it(
        fresh_db: str, tmp_path: Path) -> None:
    """A table whose own name holds a dot (``v1.events`` in public), named so by an earlier plan, now
    reads as schema v1: the blocker says so and gives the name to write, ``"public.v1.events"``."""
    execute_sql(fresh_db, 'CREATE TABLE "v1.events" (id text PRIMARY KEY)')
    plan = tmp_path / "plan.toml"
    plan.write_text(DEFAULT_PLAN.read_text().replace('tables = ["tenants", "alembic_version"]',
                                                     'tables = ["tenants", "alembic_version", "v1.events"]', 1))
    dry = run_cutover(fresh_db, "dry-run", f"--plan={plan}")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    (line,) = [ln for ln in dry.stdout.splitlines() if "missing-table" in ln]
    assert 'schema v1 has no table events' in line and 'name it "public.v1.events"' in line, line
    fixed = plan.read_text().replace('"v1.events"]', '"public.v1.events"]')
    plan.write_text(fixed)
    assert run_cutover(fresh_db, "dry-run", f"--plan={plan}").returncode == 0


NOTE_AUDIT = (
    "CREATE TABLE app.note_audit (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "tenant_id text NOT NULL REFERENCES public.tenants (id), note_id text NOT NULL)",
    "ALTER TABLE app.note_audit ENABLE ROW LEVEL SECURITY", "ALTER TABLE app.note_audit FORCE ROW LEVEL SECURITY",
    "CREATE POLICY tenant_isolation ON app.note_audit USING (tenant_id = current_setting('app.tenant_id', true))",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON app.note_audit TO app_user",
    """CREATE FUNCTION app.case_notes_audit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO app.note_audit (tenant_id, note_id) VALUES (NEW.tenant_id, NEW.id);
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER case_notes_audit AFTER UPDATE ON app.case_notes FOR EACH ROW EXECUTE FUNCTION "
    "app.case_notes_audit()",
)


def test_a_trigger_on_an_app_table_writing_another_app_table_is_found_and_declared_by_its_schema(
        fresh_db: str, schema_plan: Path, tmp_path: Path) -> None:
    """The trigger on app.case_notes that writes app.note_audit: undeclared, a blocker naming both; declared
    (``written_by = ["app.case_notes.case_notes_audit"]``), the cutover expects its rows and commits."""
    _app_schema(fresh_db, load_plan(schema_plan))
    execute_sql(fresh_db, *NOTE_AUDIT)
    text = schema_plan.read_text().replace(f"    [{toml_string(APP_TABLES[1])}],",
                                           f"    [{toml_string(APP_TABLES[1])}],\n    [\"app.note_audit\"],", 1)
    undeclared = tmp_path / "undeclared.toml"
    undeclared.write_text(text + '\n[tables."app.note_audit"]\nkey = "id"\nowner = "patient"\n')
    dry = run_cutover(fresh_db, "dry-run", f"--plan={undeclared}")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    (line,) = [ln for ln in dry.stdout.splitlines() if "undeclared-trigger-writes" in ln]
    assert "case_notes_audit" in line and "app.note_audit" in line, line
    declared = tmp_path / "declared.toml"
    declared.write_text(undeclared.read_text() + 'written_by = ["app.case_notes.case_notes_audit"]\n')
    assert run_cutover(fresh_db, "dry-run", f"--plan={declared}").returncode == 0
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--plan={declared}",
                       f"--report-path={tmp_path / 'r.json'}")
    assert done.returncode == 0, done.stdout + done.stderr
    cases = scalar(fresh_db, "SELECT count(*) FROM cases WHERE tenant_id = %s", (TGT,))
    assert scalar(fresh_db, "SELECT count(*) FROM app.note_audit WHERE tenant_id = %s", (TGT,)) == cases > 0
