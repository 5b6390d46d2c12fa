"""The plan file loads, validates, and is the only place that names a table."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core.errors import PlanError
from cutover.core.plan import DEFAULT_PLAN, PLAN_FORMAT, load_plan
from cutover.sandbox.backends import free_port
from tests.support import operator_tests, run_cutover

ROOT = Path(__file__).parent.parent


def test_default_plan_states_the_reference_model() -> None:
    plan = load_plan(DEFAULT_PLAN)
    assert (plan.source, plan.target) == ("tenant-apollo-001", "tenant-curaway-patients")
    assert plan.schema_head == "5d49162011a5"
    assert plan.table_names[:3] == ("organizations", "users", "patients")
    events = plan.table("events")
    assert "intake.started" in plan.patient_values(events)
    assert "quote.issued" not in plan.patient_values(events)
    assert plan.patient_values(plan.table("quotes")) == ()
    assert plan.table("quotes").references[0].via_share


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('[tables.quotes]\nkey = "id"\nowner = "provider"', '[tables.quotes]\nkey = "id"\nowner = "somebody"'),
         r"\[tables.quotes\].owner: 'somebody'"),
        (('classification = "route"', 'classification = "routes"'), r"classification 'routes' has no"),
        (('table = "users" }]', 'table = "people" }]'), r"references table 'people'"),
        (('"quote.issued" = "provider"', '"quote.issued" = "vendor"'), r"'vendor' is not one of"),
        (('schema_head = "5d49162011a5"\n', ''), r"missing key 'schema_head'"),
        (('[tenants]', '[tenants'), r"not valid TOML"),
    ],
)
def test_a_broken_plan_is_refused_naming_the_key(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    text = DEFAULT_PLAN.read_text()
    assert edit[0] in text
    broken = tmp_path / "plan.toml"
    broken.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(PlanError, match=message) as info:
        load_plan(broken)
    assert "\n" not in str(info.value)


def test_missing_plan_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="--plan"):
        load_plan(tmp_path / "nope.toml")


def test_no_library_module_hard_codes_a_table_name() -> None:
    plan = load_plan(DEFAULT_PLAN)
    offenders = []
    package = ROOT / "cutover"
    for module in sorted(package.rglob("*.py")):
        if module.parent.name == "model":  # the reference model's own data generator: it is the schema's twin
            continue
        code = module.read_text()
        for table in plan.all_tables:
            if re.search(rf"[\"']{table}[\"']", code):
                offenders.append(f"{module.relative_to(package)}: {table}")
    # plan.py reads the plan's own [tenants] section, whose name happens to match the table's; the draft
    # looks for the version tables frameworks create (alembic's, Rails'), the reference model's among them.
    assert offenders == ["core/plan.py: tenants", "core/plan_draft.py: alembic_version"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('[tables.quotes]\nkey = "id"', '[tables.quotes]\nkey = []'),
         r"\[tables.quotes\].key: expected a column name"),
        (('[tables.quotes]\nkey = "id"', '[tables.quotes]\nkey = ["id", "id"]'), r"names a column twice"),
        (('table = "cases", via_share = true }]', 'table = "cases", cross_tenant = "anyone" }]'),
         r"cross_tenant: 'anyone' is not one of share, provider"),
        (('table = "cases", via_share = true }]', 'table = "cases", via_share = true, cross_tenant = "provider" }]'),
         r"contradicts"),
        (('table = "cases", via_share = true }]', 'table = "cases", via_share = true, foreign_key = "no" }]'),
         r"foreign_key: expected bool"),
    ],
)
def test_a_bad_key_or_cross_tenant_declaration_is_refused(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    text = DEFAULT_PLAN.read_text()
    assert edit[0] in text
    broken = tmp_path / "plan.toml"
    broken.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(PlanError, match=message):
        load_plan(broken)


def test_keys_and_cross_tenant_references_in_their_new_forms(tmp_path: Path) -> None:
    text = DEFAULT_PLAN.read_text().replace('[tables.quotes]\nkey = "id"', '[tables.quotes]\nkey = ["case_id", "id"]')
    text = text.replace('table = "cases", via_share = true }]', 'table = "cases", cross_tenant = "provider" }]')
    path = tmp_path / "plan.toml"
    path.write_text(text)
    plan = load_plan(path)
    assert plan.table("quotes").key == ("case_id", "id")
    assert plan.table("quotes").references[0].cross_tenant == "provider"
    assert not plan.table("quotes").references[0].via_share
    case_json = plan.table("idempotency_keys").case_json
    assert case_json is not None and case_json.via_share
    assert load_plan(DEFAULT_PLAN).table("users").key == ("id",)


# -- unknown keys: a typo must stop the run, never drop a declaration ----------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('[tables.patients]\nkey = "id"\nowner = "patient"\nreferences =',
          '[tables.patients]\nkey = "id"\nowner = "patient"\nrefrences ='),
         r"plan \[tables.patients\]: unknown key 'refrences'; did you mean 'references'\?"),
        (('references = [{ column = "user_id", table = "users" }]',
          'references = [{ column = "user_id", table = "users", via_shar = true }]'),
         r"plan \[tables.patients\].references\[0\]: unknown key 'via_shar'; did you mean 'via_share'\?"),
        (('[tables.idempotency_keys]\nkey = "key"', '[tables.idempotency_keys]\nkey = "key"\nclasification = "x"'),
         r"unknown key 'clasification'; did you mean 'classification'\?"),
        (('tenant_column = "tenant_id"', 'tenant_column = "tenant_id"\ntenant_colum = "tenant_id"'),
         r"plan \[plan\]: unknown key 'tenant_colum'; did you mean 'tenant_column'\?"),
        (('[rehearsal]\n', '[rehearsal]\npatient_tabel = "patients"\n'),
         r"plan \[rehearsal\]: unknown key 'patient_tabel'; did you mean 'patient_table'\?"),
        (('marker_key = "actor"', 'marker_key = "actor"\nmarkr = "x"'),
         r"plan \[rehearsal\].straggler: unknown key 'markr'; did you mean 'marker'\?"),
        (('[static]', '[statics]\ntables = []\n[static]'),
         r"plan: unknown section \[statics\]; did you mean \[static\]\?"),
        (('app = "app_user"', 'app = "app_user"\nzzz = 1'), r"plan \[roles\]: unknown key 'zzz' \(known: app, "),
    ],
)
def test_a_key_the_format_does_not_know_is_refused_naming_the_nearest_known_key(
        tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    text = DEFAULT_PLAN.read_text()
    assert edit[0] in text
    broken = tmp_path / "plan.toml"
    broken.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(PlanError, match=message) as info:
        load_plan(broken)
    assert "\n" not in str(info.value)


def test_a_typo_stops_the_dry_run_before_any_database_is_touched(tmp_path: Path) -> None:
    """The URL names a port nothing listens on: the plan's one line, not a connection error."""
    broken = tmp_path / "plan.toml"
    broken.write_text(DEFAULT_PLAN.read_text().replace("references = [{ column = \"case_id\"",
                                                       "refrences = [{ column = \"case_id\"", 1))
    url = f"postgresql://ops@127.0.0.1:{free_port()}/prod"
    done = run_cutover(url, "dry-run", f"--plan={broken}")
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "unknown key 'refrences'; did you mean 'references'?" in line
    assert "cannot reach" not in line and done.stdout == ""


# -- formats: a plan written for an earlier release loads with documented defaults ------------------------------


def _format_2(text: str) -> str:
    """The reference plan as format 2 wrote it: no [features] section (and its comment)."""
    start, end = text.index("# What the schema has"), text.index("[tenants]\n")
    assert "[features]" in text[start:end] and "format = 3\n" in text
    return (text[:start] + text[end:]).replace("format = 3\n", "format = 2\n", 1)


def _format_1(text: str) -> str:
    """The reference plan as the release before format numbers wrote it: no format, no allow-list parts."""
    text = _format_2(text)
    for line in ('format = 2\n', 'allow_list_part = "cutover.allow_list_part"\n',
                 '"cutover.allow_list_part" = "system"\n'):
        assert line in text
        text = text.replace(line, "", 1)
    return text


def test_the_reference_plan_is_of_the_current_format() -> None:
    assert load_plan(DEFAULT_PLAN).format == PLAN_FORMAT


def test_a_plan_of_format_1_loads_with_the_defaults_of_keys_added_since(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(_format_1(DEFAULT_PLAN.read_text()))
    plan = load_plan(path)
    current = load_plan(DEFAULT_PLAN)
    assert plan.format == 1
    assert plan.audit == current.audit
    assert plan.classifications["event_type"]["cutover.allow_list_part"] == "system"
    assert plan.classifications == current.classifications
    assert plan.features == current.features  # the reference schema's: everything present, as before


def test_a_plan_of_the_current_format_must_say_everything(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(DEFAULT_PLAN.read_text().replace('allow_list_part = "cutover.allow_list_part"\n', "", 1))
    with pytest.raises(PlanError, match=r"plan \[audit\]: missing key 'allow_list_part'"):
        load_plan(path)


@pytest.mark.parametrize(("value", "message"), [
    ("99", r"plan \[plan\].format: 99 is newer than this release reads \(formats 1 to 3\); upgrade the suite"),
    ("0", r"plan \[plan\].format: 0 is not a plan format \(formats 1 to 3\)"),
    ('"3"', r"plan \[plan\].format: expected int, got str"),
])
def test_a_format_this_release_does_not_read_is_refused(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(DEFAULT_PLAN.read_text().replace("format = 3", f"format = {value}", 1))
    with pytest.raises(PlanError, match=message):
        load_plan(path)


def test_plan_upgrade_shows_the_diff_and_writes_only_with_write(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    old = _format_1(DEFAULT_PLAN.read_text())
    path.write_text(old)
    shown = run_cutover("postgresql://unused@127.0.0.1:1/none", "plan", "upgrade", f"--plan={path}")
    assert shown.returncode == 0, shown.stderr
    added = [ln for ln in shown.stdout.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert added == ["+format = 3", '+allow_list_part = "cutover.allow_list_part"',
                     '+"cutover.allow_list_part" = "system"', "+", "+# What the schema has (docs/plan.md, [features]); "
                     "added by `cutover plan upgrade`.", "+[features]", "+row_level_security = true",
                     "+tenant_settings = true", "+tenant_flags = true", '+share_table = "case_shares"',
                     '+event_table = "events"', '+idempotency_table = "idempotency_keys"',
                     '+schema_versions = "alembic"'], shown.stdout
    assert not [ln for ln in shown.stdout.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    assert path.read_text() == old, "without --write nothing is written"
    assert "--write" in shown.stderr
    written = run_cutover("postgresql://unused@127.0.0.1:1/none", "plan", "upgrade", f"--plan={path}", "--write")
    assert written.returncode == 0, written.stderr
    upgraded = load_plan(path)
    current = load_plan(DEFAULT_PLAN)
    assert upgraded.format == PLAN_FORMAT
    assert (upgraded.audit, upgraded.classifications, upgraded.features) == (current.audit, current.classifications,
                                                                             current.features)
    assert "# The cutover's own audit trail" in path.read_text(), "comments are kept"
    again = run_cutover("postgresql://unused@127.0.0.1:1/none", "plan", "upgrade", f"--plan={path}", "--write")
    assert again.returncode == 0 and "already format 3" in again.stderr and again.stdout == ""


def test_plan_upgrade_refuses_a_plan_that_does_not_load(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    text = _format_1(DEFAULT_PLAN.read_text()).replace('owner = "provider"', 'ownr = "provider"', 1)
    path.write_text(text)
    done = run_cutover("postgresql://unused@127.0.0.1:1/none", "plan", "upgrade", f"--plan={path}", "--write")
    assert done.returncode == 4, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "unknown key 'ownr'; did you mean 'owner'?" in line
    assert path.read_text() == text


def test_a_typo_stops_set_b_before_any_database_is_touched(
        pytester: pytest.Pytester, example: Callable[..., list[str]], tmp_path: Path) -> None:
    broken = tmp_path / "plan.toml"
    broken.write_text(DEFAULT_PLAN.read_text().replace('[tables.quotes]\nkey = "id"', '[tables.quotes]\nkye = "id"', 1))
    args = example(**operator_tests("test_matrix"))
    done = pytester.runpytest_subprocess("-m", "setB", f"--db-url=postgresql://ops@127.0.0.1:{free_port()}/prod",
                                         f"--plan={broken}", *args)
    out = done.stdout.str() + done.stderr.str()
    assert done.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "plan [tables.quotes]: unknown key 'kye'; did you mean 'key'?" in out
    assert "cannot reach" not in out and "PASSED" not in out
