"""What the plan declares about the schema, and what the suite then does not assume.

A check whose subject the plan's ``[features]`` declares absent is not applicable: never run, never
counted as passed, named with its reason in the verdict line, the operator log, the evidence and the
go/no-go. A manual check whose values the plan's ``[rehearsal]`` cannot supply is "not configured":
never a crash, never counted as answered, named in the verdict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core import db
from cutover.core.errors import PlanError
from cutover.core.exit_codes import ExitCode
from cutover.core.options import Settings
from cutover.core.plan import DEFAULT_PLAN, Plan, load_plan
from cutover.reference import preflight
from cutover.suite import verdicts
from cutover.suite.catalogue import SET_B, Catalogue
from cutover.suite.rehearsals import KEY_VALUES, Record, capture_key, key_facts, manual_values
from cutover.suite.summary import Summary
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import (
    REHEARSAL,
    execute_sql,
    failing_evidence,
    operator_log,
    operator_tests,
    rehearse_on,
    run_checks,
    run_cutover,
)

MANUAL = operator_tests("test_manual")
NINE_PASS = "".join(f"A{i}: {{result: pass, observation: 'seen'}}\n" for i in range(11, 20))


def _plan(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """The reference plan with each (old, new) edit made once; each must apply."""
    text = DEFAULT_PLAN.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


# -- 5. manual checks whose values the plan cannot supply -------------------------------------------------


def test_a_rehearsal_section_that_does_not_fit_makes_the_checks_needing_it_not_configured(
        pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck,
        tmp_path: Path) -> None:
    """The issue's case: ``[rehearsal] key_route_column`` names a column the key table lacks. A12's steps
    need the captured key and its route: it is not configured (not a crash, not an answer, not a pass);
    the eight others are answered as the answers file says."""
    plan = _plan(tmp_path, ('key_route_column = "route"', 'key_route_column = "http_route"'))
    (pytester.path / "answers.yaml").write_text(NINE_PASS)
    args = example(**MANUAL)
    result = pytester.runpytest_subprocess("-m", "manual", f"--db-url={cut_over_db.url}", f"--plan={plan}",
                                           "--answers=answers.yaml", "-p", "no:randomly", *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == ExitCode.INCOMPLETE, out
    assert "Traceback" not in out and "UndefinedColumn" not in out and " error" not in out.lower(), out
    assert "manual checks: 8 of 9 passed, 8 answered; 1 not configured: A12" in out, out
    verdict = next(line for line in out.splitlines() if line.startswith("REHEARSAL NOT READY"))
    assert "A12 not configured" in verdict and "A12 SKIP" not in verdict, verdict
    assert "A12 PASS" not in out
    row = next(c for c in operator_log(pytester.path)["checks"] if c["check"] == "A12")
    assert row["result"] == "not configured", row
    assert "[rehearsal] key_route_column" in row["observation"] and "http_route" in row["observation"], row


# -- 2. features the plan declares -------------------------------------------------------------------------

REFERENCE = DEFAULT_PLAN.read_text()
FEATURES_SECTION = REFERENCE[REFERENCE.index("\n[features]\n") + 1:REFERENCE.index("[tenants]\n")]
NO_RLS = ("row_level_security = true", "row_level_security = false")
NO_EVENTS = ('event_table = "events"', "event_table = false")
NO_KEYS = [('idempotency_table = "idempotency_keys"', "idempotency_table = false"),
           ('case_json = { column = "response_body", key = "case_id", table = "cases", via_share = true }\n', "")]
NO_SHARES = [('share_table = "case_shares"', "share_table = false"), ('share_target = "target_tenant_id"\n', "")]


def test_the_reference_plan_declares_every_feature_and_owes_all_21(cutover_plan: Plan) -> None:
    reference = load_plan(DEFAULT_PLAN)
    assert reference.features.absent() == {}
    catalogue = Catalogue.for_plan(reference)
    assert dict(catalogue.not_applicable) == {} and len(catalogue.counted()) == 21


def test_each_check_whose_subject_the_plan_declares_absent_is_not_applicable_with_its_reason(tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, NO_RLS, NO_EVENTS, *NO_KEYS, *NO_SHARES))
    catalogue = Catalogue.for_plan(plan)
    assert dict(catalogue.not_applicable) == {"A7": "no share table", "A8": "no classified event table",
                                              "A9": "no idempotency table", "A21": "no row-level security"}
    assert len(catalogue.counted()) == 17 and len(catalogue.counted(SET_B)) == 5
    assert catalogue.why_not_applicable("A7") == ("not applicable: the plan declares no share table "
                                                  "([features] share_table = false)")
    assert all(catalogue.get(c) is not None for c in ("A7", "A21")), "still known: --check A7 is no usage error"


@pytest.mark.parametrize(("edits", "message"), [
    ([(FEATURES_SECTION, "")],
     r"plan: missing section \[features\] \(format 3\); declare what the schema has"),
    ([('schema_versions = "alembic"', "")], r"plan \[features\]: missing key 'schema_versions'"),
    ([("row_level_security = true", "row_level_security = 1")],
     r"plan \[features\].row_level_security: expected bool, got int"),
    ([('schema_versions = "alembic"', 'schema_versions = "flyway"')], r"'flyway' is not one of alembic, rails, none"),
    ([('share_table = "case_shares"', "share_table = false")],
     r"share_table = false, but \[tables.case_shares\] is one; name it"),
    ([('share_table = "case_shares"', 'share_table = "cases"')], r"\[tables.cases\] is not the table whose share_"),
    ([('event_table = "events"', 'event_table = "patients"')], r"\[tables.patients\] is not a classified event"),
    ([("tenant_settings = true", "tenant_settings = false")],
     r"plan \[tenants\]: mirrored_settings, settings_column given but \[features\] tenant_settings = false"),
    ([('schema_versions = "alembic"', 'schema_versions = "none"')],
     r"plan \[plan\]: schema_head, version_table, version_column given but \[features\] schema_versions = \"none\""),
    ([("[tenants]\n", "[tenants]\nrow_level_security = false\n")], r"\[tenants\]: unknown key 'row_level_security'"),
])
def test_a_declaration_that_is_missing_or_contradicts_the_plan_is_refused(
        tmp_path: Path, edits: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(PlanError, match=message) as info:
        load_plan(_plan(tmp_path, *edits))
    assert "\n" not in str(info.value)


def test_a_format_2_plan_has_no_features_section_and_gets_the_reference_schemas(tmp_path: Path) -> None:
    text = DEFAULT_PLAN.read_text()
    section = text[text.index("# What the schema has"):text.index("[tenants]\n")]
    two = _plan(tmp_path, ("format = 3", "format = 2"), (section, ""))
    assert load_plan(two).features == load_plan(DEFAULT_PLAN).features
    with pytest.raises(PlanError, match=r"a format 2 plan has no \[features\].*set \[plan\] format = 3"):
        load_plan(_plan(tmp_path, ("format = 3", "format = 2")))


def _adopted(url: str) -> DatabaseUnderCheck:
    """A database the checks only read, with no cutover report (A1 and A2 need none)."""
    return DatabaseUnderCheck(url, None, None, sandbox=True)


def _preflight(url: str, plan: Plan) -> list[str]:
    with db.connection(url, read_only=True) as conn:
        return [b.line() for b in preflight.run(conn, plan, planned=False).blockers]


def test_the_pre_flight_asks_for_row_level_security_only_where_the_plan_declares_it(
        fresh_db: str, tmp_path: Path, cutover_plan: Plan) -> None:
    wrong = _preflight(fresh_db, load_plan(_plan(tmp_path, NO_RLS)))  # a schema that has RLS, declared without
    assert len(wrong) == 1 and wrong[0].startswith("rls-declared-absent: [features] row_level_security = false, "
                                                   "but 12 planned tables have row-level security"), wrong
    execute_sql(fresh_db, *(f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY" for t in cutover_plan.table_names))
    found = _preflight(fresh_db, cutover_plan)
    assert len([b for b in found if b.startswith("rls-off:")]) == len(cutover_plan.table_names), found
    assert _preflight(fresh_db, load_plan(_plan(tmp_path, NO_RLS))) == []
    blocked = run_cutover(fresh_db, "dry-run")
    assert blocked.returncode == 1 and "rls-off" in blocked.stdout + blocked.stderr, blocked.stdout
    ready = run_cutover(fresh_db, "dry-run", f"--plan={_plan(tmp_path, NO_RLS)}")
    assert ready.returncode == 0 and "READY" in ready.stdout and "rls-off" not in ready.stdout, ready.stdout


def test_a_rails_version_table_holds_the_head_among_the_applied_versions(
        fresh_db: str, tmp_path: Path, cutover_plan: Plan, cutover_settings: Settings) -> None:
    execute_sql(fresh_db, "INSERT INTO alembic_version VALUES ('20190101000000'), ('20200101000000')")
    assert [b for b in _preflight(fresh_db, cutover_plan) if b.startswith("wrong-schema-head")], "alembic: one row"
    rails = load_plan(_plan(tmp_path, ('schema_versions = "alembic"', 'schema_versions = "rails"')))
    assert _preflight(fresh_db, rails) == []
    assert "A1" not in run_checks(_adopted(fresh_db), rails, cutover_settings, only=("A1",))
    execute_sql(fresh_db, "DELETE FROM alembic_version WHERE version_num = '5d49162011a5'")
    assert [b for b in _preflight(fresh_db, rails) if b.startswith("wrong-schema-head: alembic_version holds 2 "
                                                                     "applied versions, not '5d49162011a5'")]
    failed = failing_evidence(_adopted(fresh_db), rails, cutover_settings, only=("A1",))
    assert "5d49162011a5 is not among the 2 applied versions" in failed["A1"]


BARE = [("tenant_settings = true", "tenant_settings = false"), ("tenant_flags = true", "tenant_flags = false"),
        ('mirrored_settings = ["region", "language", "currency", "digest"]\n', ""),
        ('settings_column = "settings"\n', ""), ('active_column = "is_active"\n', ""),
        ('protected_column = "is_protected"\n', "")]


def test_the_tenant_rows_flags_and_settings_are_checked_only_where_declared(
        fresh_db: str, tmp_path: Path, cutover_plan: Plan, cutover_settings: Settings) -> None:
    execute_sql(fresh_db, "UPDATE tenants SET is_active = false, settings = '{}' WHERE id = 'tenant-curaway-patients'")
    found = [b for b in _preflight(fresh_db, cutover_plan) if b.startswith("target-tenant")]
    assert any("not active" in b for b in found) and any("not mirrored" in b for b in found), found
    failed = failing_evidence(_adopted(fresh_db), cutover_plan, cutover_settings,
                              only=("A2",))
    assert "target tenant is not active" in failed["A2"] and "setting region" in failed["A2"]
    bare = load_plan(_plan(tmp_path, *BARE))
    assert _preflight(fresh_db, bare) == []
    assert failing_evidence(_adopted(fresh_db), bare, cutover_settings, only=("A2",)) == {}
    nowhere = load_plan(_plan(tmp_path, *BARE, ('target = "tenant-curaway-patients"', 'target = "tenant-nowhere"')))
    assert "tenant-nowhere does not exist" in failing_evidence(_adopted(fresh_db), nowhere, cutover_settings,
                                                              only=("A2",))["A2"]


def test_step_5a_counts_the_applicable_checks_and_names_the_others_everywhere(
        pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck,
        tmp_path: Path) -> None:
    plan = _plan(tmp_path, NO_RLS, NO_EVENTS, *NO_KEYS)
    args = example(**operator_tests("test_matrix"))
    result = pytester.runpytest_subprocess("-m", "setA and sql", f"--db-url={cut_over_db.url}", f"--plan={plan}",
                                           f"--report-path={cut_over_db.report_path}", "-p", "no:randomly", *args)
    out = result.stdout.str()
    assert result.ret == ExitCode.OK, out
    said = ("(not applicable, as the plan declares: A8 no classified event table, A9 no idempotency table, "
            "A21 no row-level security)")
    verdict = next(line for line in out.splitlines() if line.startswith("ALL 9 CHECKS PASSED (step 5a)"))
    assert verdict.endswith(said), verdict
    assert "A21  N/A   RLS posture" in out and "([features] row_level_security = false)" in out
    assert "A21 PASS" not in out and "A8   PASS" not in out
    log = operator_log(pytester.path)
    assert log["verdict"] == verdict
    rows = {c["check"]: c for c in log["checks"]}
    assert {c for c, r in rows.items() if r["result"] == "not applicable"} == {"A8", "A9", "A21"}
    assert rows["A21"]["observation"].startswith("not applicable: the plan declares no row-level security")
    body = json.loads((pytester.path / "artifacts" / "latest" / "evidence.json").read_text())
    facts = body.get("facts", body)
    assert set(facts["not_applicable"]) == {"A8", "A9", "A21"} and facts["required"] == 18, facts
    md = (pytester.path / "artifacts" / "latest" / "operator-log.md").read_text()
    assert "| A21 | sql | N/A |" in md


SQL = [f"A{i}" for i in range(1, 11)] + ["A20", "A21"]
MANUAL_IDS = [f"A{i}" for i in range(11, 20)]
NA = {"A7": "no share table", "A21": "no row-level security"}


def test_a_verdict_counts_the_applicable_checks_and_names_the_others_ready_or_not() -> None:
    expected = [c for c in [*SQL, *MANUAL_IDS] if c not in NA]
    passed = dict.fromkeys(expected, "passed")
    ready = verdicts.decide(verdicts.REHEARSAL, expected, passed, {}, MANUAL_IDS, not_applicable=NA)
    assert (ready.line, ready.exit_code) == (
        "REHEARSAL READY: 19 of 19 applicable checks passed (not applicable, as the plan declares: "
        "A7 no share table, A21 no row-level security)", ExitCode.OK)
    failed = verdicts.decide(verdicts.REHEARSAL, expected, {**passed, "A3": "failed"}, {}, MANUAL_IDS,
                             not_applicable=NA)
    assert failed.line == ("REHEARSAL NOT READY: A3 FAIL (not applicable, as the plan declares: A7 no share table, "
                           "A21 no row-level security)") and failed.exit_code == ExitCode.FAILED
    every = verdicts.decide(verdicts.REHEARSAL, [*SQL, *MANUAL_IDS], passed, {}, MANUAL_IDS)
    assert every.line == "REHEARSAL NOT READY: 2 not run", "a check not run is never passed by being left out"
    set_b = [c for c in ("A1", "A2", "A3", "A4", "A6", "A7", "A8", "A9") if c not in NA]
    assert verdicts.decide(verdicts.SET_B, set_b, dict.fromkeys(set_b, "passed"), {}, [],
                           not_applicable={"A7": NA["A7"]}).line \
        == "SET B PASSED: 7 of 7 (not applicable, as the plan declares: A7 no share table)"


def test_not_configured_is_named_in_the_verdict_and_never_an_answer_or_a_pass() -> None:
    expected = [*SQL, *MANUAL_IDS]
    outcomes = {**dict.fromkeys(expected, "passed"), "A12": "skipped"}
    found = verdicts.decide(verdicts.REHEARSAL, expected, outcomes, {"A12": "not configured: its steps need {route}"},
                            MANUAL_IDS)
    assert (found.line, found.exit_code) == ("REHEARSAL NOT READY: A12 not configured", ExitCode.INCOMPLETE)


def test_a_rehearsal_section_that_does_not_fit_leaves_no_key_captured_and_says_why(
        fresh_db: str, tmp_path: Path) -> None:
    """The rehearsal's capture of A12's key before the cutover, and the assists' facts, on the same misfit."""
    plan = load_plan(_plan(tmp_path, ('key_route_column = "route"', 'key_route_column = "http_route"')))
    record = Record()
    assert capture_key(fresh_db, plan, record) == {}
    assert record.capture_gap.startswith("[rehearsal] key_route_column: column idempotency_keys.http_route does "
                                         "not exist"), record.capture_gap
    gaps: dict[str, str] = {}
    values = manual_values(fresh_db, plan, record, gaps)
    assert "idempotency_key" not in values and "case_id" not in gaps and set(gaps) == set(KEY_VALUES)
    wrong = load_plan(_plan(tmp_path, ('key_response_column = "response_body"', 'key_response_column = "body"')))
    facts = key_facts(fresh_db, wrong, "k-1", None, None, None)
    assert facts["cached"] is None  # not a crash: A12's assist then says it has nothing to compare
    fine = capture_key(fresh_db, load_plan(DEFAULT_PLAN), Record())
    assert fine["idempotency_key"] and fine["route"], "a [rehearsal] that fits still captures the key"


def test_a_rehearsal_of_a_plan_without_row_level_security_is_ready_over_its_applicable_checks(
        pytester: pytest.Pytester, example: Callable[..., list[str]], tmp_path: Path, fresh_db: str) -> None:
    """The whole flow on a dev branch without RLS (dry run, execute, the checks, A20-active, content, the
    rollback rehearsed on a clone) under a plan that declares none: READY 20 of 20 with A21 named."""
    plan = _plan(tmp_path, NO_RLS)
    execute_sql(fresh_db, *(f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY" for t in load_plan(plan).table_names))
    (pytester.path / "answers.yaml").write_text(NINE_PASS)
    args = example(**REHEARSAL)
    result = pytester.runpytest_subprocess("-m", "setA", f"--plan={plan}", "--answers=answers.yaml",
                                           *rehearse_on(fresh_db), "--rehearse-rollback", "-p", "no:randomly", *args)
    out = result.stdout.str()
    assert result.ret == ExitCode.OK, out
    assert ("REHEARSAL READY: 20 of 20 applicable checks passed (not applicable, as the plan declares: A21 no "
            "row-level security); rollback rehearsed in ") in out, out
    assert "ALL 11 CHECKS PASSED" in out and "A21  N/A" in out and "A20-active PASS" in out
    log = operator_log(pytester.path)
    assert log["rehearsal"]["dry_run"] == "READY" and log["not_applicable"] == {
        "A21": "not applicable: the plan declares no row-level security ([features] row_level_security = false)"}


def test_a_runbook_manual_check_the_plan_leaves_out_is_named_never_dropped(tmp_path: Path) -> None:
    text = DEFAULT_PLAN.read_text()
    section = text[text.index("[manual.A16]"):text.index("[manual.A17]")]
    catalogue = Catalogue.for_plan(load_plan(_plan(tmp_path, (section, ""))))
    assert dict(catalogue.not_applicable) == {"A16": "no [manual.A16] section"}
    assert len(catalogue.counted()) == 20 and "A16" not in {c.id for c in catalogue.counted()}
    assert catalogue.why_not_applicable("A16") == "not applicable: the plan has no [manual.A16] section"
    expected = tuple(c.id for c in catalogue.counted())
    summary = Summary(catalogue, verdicts.REHEARSAL, expected, (), dict(catalogue.not_applicable))
    summary.outcomes = dict.fromkeys(expected, "passed")
    lines = [text for text, _ in summary.lines()]
    assert "manual checks: 8 of 8 passed, 8 answered" in lines, lines
    assert any(line.startswith("A16  N/A") and "no [manual.A16] section" in line for line in lines), lines
    assert summary.verdict().line == ("REHEARSAL READY: 20 of 20 applicable checks passed (not applicable, as the "
                                      "plan declares: A16 no [manual.A16] section)")


def test_plan_draft_declares_the_features_it_finds(fresh_db: str, tmp_path: Path, cutover_plan: Plan) -> None:
    out = tmp_path / "draft.toml"
    done = run_cutover(fresh_db, "plan", "draft", f"--db-url={fresh_db}", f"--out={out}")
    assert done.returncode == 0, done.stderr
    found = load_plan(out).features
    assert (found.row_level_security, found.tenant_settings, found.tenant_flags, found.share_table,
            found.event_table, found.schema_versions) == (True, True, True, "case_shares", "events", "alembic")
    execute_sql(fresh_db, *(f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY" for t in cutover_plan.table_names),
                "INSERT INTO alembic_version VALUES ('20190101000000')",
                "ALTER TABLE tenants DROP COLUMN is_active")
    again = tmp_path / "again.toml"
    assert run_cutover(fresh_db, "plan", "draft", f"--db-url={fresh_db}", f"--out={again}").returncode == 0
    plan = load_plan(again)
    assert (plan.features.row_level_security, plan.features.tenant_flags, plan.features.schema_versions) == (
        False, False, "rails")
    assert plan.schema_head == "5d49162011a5", "a Rails-style table's head is its newest version"


def test_set_b_on_a_plan_without_a_classified_event_table_passes_its_7_and_names_a8(
        pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck,
        tmp_path: Path) -> None:
    plan = _plan(tmp_path, NO_EVENTS)
    args = example(**operator_tests("test_matrix"))
    result = pytester.runpytest_subprocess("-m", "setB", f"--db-url={cut_over_db.url}", f"--plan={plan}",
                                           "-p", "no:randomly", *args)
    out = result.stdout.str()
    assert result.ret == ExitCode.OK, out
    assert "SET B PASSED: 7 of 7 (not applicable, as the plan declares: A8 no classified event table)" in out
    assert "A8   N/A" in out and "A21" not in out, "A21 is not Set B's: nothing to say about it here"
    assert "none: Set B passed, the cutover stands" in out, out  # the window timeline counts the applicable 7
