"""The plan file loads, validates, and is the only place that names a table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cutover.core.errors import PlanError
from cutover.core.plan import DEFAULT_PLAN, load_plan

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
    # plan.py reads the plan's own [tenants] section, whose name happens to match the table's.
    assert offenders == ["core/plan.py: tenants"]


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
