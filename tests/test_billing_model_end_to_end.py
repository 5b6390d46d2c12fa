"""Issue 27's last sentence on the billing model: `cutover plan draft` plus the operator's ownership
decisions, and nothing else, dry-runs READY, executes, passes every applicable check, reverses to the
original content, and leaves the database as it found it, but for the cutover's own audit schema.

The decisions are the only edit of the drafted plan, listed in DECISIONS so a reader sees them all: an
edit made for the tool's sake (a view, a role, RLS policies, a column the plan assumed) would be the
failure this test exists to catch, in the database or in the plan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core.exit_codes import ExitCode
from cutover.core.options import Settings
from cutover.core.plan import load_plan
from cutover.suite.catalogue import Catalogue
from cutover.suite.under_check import DatabaseUnderCheck
from tests.billing_model import SOURCE, TARGET
from tests.support import checksum, execute_sql, failing_evidence, operator_tests, run_cutover, scalar

DRAFT = ("--tenant-table=organizations", "--tenant-column=organization_id", f"--source={SOURCE}",
         f"--target={TARGET}", "--patient-table=customers")

# The operator's decisions, as (what the draft wrote, what the operator writes instead, how many times).
# Which tables belong to the end users (the customers) the draft guessed right through customer_id; what
# the operator decides is what stays with organization A: its payment-provider accounts, and the parents
# the moved rows keep pointing at (A's billing entity, A's plans), which stay on A's side.
DECISIONS: tuple[tuple[str, str, int], ...] = (
    # payment_providers: A's own accounts with Stripe and GoCardless stay with A
    ('owner = "classified"  # REVIEW: or "column" with patient_values, or "provider"\n'
     'column = "type"\nclassification = "type"\n', 'owner = "provider"\n', 1),
    ('["customers", "payment_providers"],', '["customers"],', 1),  # so it is no longer among the moves
    # customers and invoices keep naming A's billing entity, which stays
    ('{ column = "billing_entity_id", table = "billing_entities" },',
     '{ column = "billing_entity_id", table = "billing_entities", cross_tenant = "provider" },', 2),
    # subscriptions keep naming A's plans (and the customers' overrides of them), which stay
    ('{ column = "plan_id", table = "plans" },', '{ column = "plan_id", table = "plans", cross_tenant = "provider" },',
     1),
)

# Everything in the database a tool could add or change for its own sake: schemas, relations (tables,
# views, indexes, sequences) with their RLS flags and grants, columns, constraints, policies, triggers,
# functions, roles and per-database settings. The cutover's own schema (`cutover`) is left out.
CATALOG = """
SELECT md5(string_agg(x, E'\\n' ORDER BY x)) FROM (
  SELECT 'ns ' || nspname || ' ' || coalesce(nspacl::text, '') FROM pg_namespace
    WHERE nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
  UNION ALL SELECT 'rel ' || c.oid::regclass::text || ' ' || c.relkind::text || c.relrowsecurity::text
               || c.relforcerowsecurity::text || ' ' || coalesce(c.relacl::text, '')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'cutover') AND n.nspname NOT LIKE 'pg\\_%'
  UNION ALL SELECT 'col ' || a.attrelid::regclass::text || '.' || a.attname || ' '
               || format_type(a.atttypid, a.atttypmod) || a.attnotnull::text
               || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'cutover')
      AND n.nspname NOT LIKE 'pg\\_%'
  UNION ALL SELECT 'con ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace <> 'pg_catalog'::regnamespace
  UNION ALL SELECT 'pol ' || polrelid::regclass::text || ' ' || polname FROM pg_policy
  UNION ALL SELECT 'trg ' || tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text FROM pg_trigger
  UNION ALL SELECT 'fn ' || p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  UNION ALL SELECT 'role ' || rolname || rolbypassrls::text || rolsuper::text FROM pg_roles
  UNION ALL SELECT 'set ' || coalesce(setconfig::text, '') FROM pg_db_role_setting
  UNION ALL SELECT 'db ' || coalesce(datacl::text, '') FROM pg_database WHERE datname = current_database()
) parts(x) WHERE x NOT LIKE '% cutover.%' AND x NOT LIKE 'ns cutover %'
"""


def _decided(draft: str) -> str:
    """The drafted plan with the operator's DECISIONS applied, each found exactly where the draft wrote it."""
    for old, new, times in DECISIONS:
        assert draft.count(old) == times, f"the draft no longer writes {old!r} {times} time(s)"
        draft = draft.replace(old, new)
    return draft


def test_the_draft_and_the_ownership_decisions_cut_over_and_back_leaving_nothing_but_the_audit_trail(
        billing_db: str, tmp_path: Path, cutover_settings: Settings, pytester: pytest.Pytester,
        example: Callable[..., list[str]]) -> None:
    drafted = tmp_path / "draft.toml"
    done = run_cutover(billing_db, "plan", "draft", f"--db-url={billing_db}", *DRAFT, f"--out={drafted}")
    assert done.returncode == 0, done.stdout + done.stderr
    path = tmp_path / "plan.toml"
    path.write_text(_decided(drafted.read_text()))
    plan = load_plan(path)
    catalog = scalar(billing_db, CATALOG)
    before = checksum(billing_db, plan)

    dry = run_cutover(billing_db, "dry-run", f"--plan={path}")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.splitlines()[-1].startswith("READY"), dry.stdout
    assert scalar(billing_db, CATALOG) == catalog, "the dry run changed the database"

    report_path = tmp_path / "report.json"
    done = run_cutover(billing_db, "execute", "--operator-confirmed", f"--plan={path}", f"--report-path={report_path}")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    for table in ("customers", "subscriptions", "invoices", "fees", "wallets", "wallet_transactions", "usage_events"):
        assert report["moved"][table] > 0, table
    assert scalar(billing_db, "SELECT count(*) FROM customers WHERE organization_id = %s", (SOURCE,)) == 0
    assert scalar(billing_db, "SELECT count(*) FROM billing_entities WHERE organization_id = %s", (SOURCE,)) == 1
    assert scalar(billing_db, "SELECT count(*) FROM cutover.audit_events") > 0  # the trail of its own, as drafted

    # every applicable check passes; the ones the drafted plan declares without a subject are named
    target = DatabaseUnderCheck(billing_db, report, report_path, sandbox=True)
    assert failing_evidence(target, plan, cutover_settings) == {}
    not_applicable = Catalogue.for_plan(plan).not_applicable
    assert set(not_applicable) == {"A7", "A8", "A9", "A21"}, dict(not_applicable)
    args = example(**operator_tests("test_matrix"))
    set_b = pytester.runpytest_subprocess("-m", "setB", f"--db-url={billing_db}", f"--plan={path}",
                                          f"--report-path={report_path}", "-p", "no:randomly", *args)
    out = set_b.stdout.str()
    assert set_b.ret == ExitCode.OK, out
    assert "SET B PASSED" in out and "(not applicable, as the plan declares: A7 " in out, out

    back = run_cutover(billing_db, "reverse", "--operator-confirmed", f"--plan={path}", f"--report-path={report_path}")
    assert back.returncode == 0, back.stdout + back.stderr
    assert checksum(billing_db, plan) == before
    assert scalar(billing_db, CATALOG) == catalog, "the cutover changed the database beyond its own audit schema"


@pytest.mark.parametrize("change", [
    "ALTER TABLE customers ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY tenant ON customers USING (organization_id IS NOT NULL)",
    "CREATE VIEW tenant_settings AS SELECT id FROM organizations",
    "ALTER TABLE organizations ADD COLUMN is_active boolean",
    "GRANT SELECT ON customers TO PUBLIC",
    "CREATE FUNCTION tenant_of(uuid) RETURNS uuid LANGUAGE sql AS 'SELECT $1'",
])
def test_the_catalog_fingerprint_sees_what_a_tool_would_add(billing_db: str, change: str) -> None:
    """The fingerprint the end-to-end test compares is blind to nothing a plan's assumptions used to
    demand of production, and to nothing but the cutover's own schema."""
    before = scalar(billing_db, CATALOG)
    execute_sql(billing_db, "CREATE SCHEMA cutover", "CREATE TABLE cutover.audit_events (id uuid PRIMARY KEY, "
                "payload jsonb)")
    assert scalar(billing_db, CATALOG) == before
    execute_sql(billing_db, change)
    assert scalar(billing_db, CATALOG) != before
