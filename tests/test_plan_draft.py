"""`cutover plan draft` and `cutover plan check` on a schema that is not ours (issue 27, point 6).

The billing model (tests/billing_model) is what a new user brings: tenants are organizations keyed by
uuid, versions are Rails' schema_migrations, customer_id columns have no foreign key, tables point at
themselves. The draft must either stop in one line naming the flag to give, or write a plan whose
open questions are marked; `plan check` must be able to agree with a plan that declares what the
database cannot show (a reference with no foreign key, a foreign key that is not tenant-bound).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from cutover.core.plan import DEFAULT_PLAN, OWN_AUDIT_TABLE, load_plan
from tests.billing_model import SOURCE, TARGET, generator
from tests.support import execute_sql, run_cutover

TENANCY = ("--tenant-table=organizations", "--tenant-column=organization_id", f"--source={SOURCE}",
           f"--target={TARGET}")
ORGS = (*TENANCY, "--patient-table=customers")


def _one_line_error(done: subprocess.CompletedProcess[str], out: Path, *needles: str) -> str:
    """The command failed as an operator error: exit 2, one line on stderr naming each needle, no file."""
    assert done.returncode == 2, done.stdout + done.stderr
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()
    return err


# -- the reference plan and plan check ----------------------------------------------------------------

def test_plan_check_agrees_with_the_reference_plan_on_its_own_database(fresh_db: str) -> None:
    """The three foreign keys the reference plan left undeclared (a message's sender, a share's author,
    a user's organization) are declared, two of them as not tenant-bound, and plan check agrees."""
    done = run_cutover(fresh_db, "plan", "check", f"--db-url={fresh_db}", f"--plan={DEFAULT_PLAN}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agree" in done.stdout
    plan = load_plan(DEFAULT_PLAN)
    refs = {(t.name, r.column): r for t in plan.tables for r in t.references}
    assert refs[("messages", "sender_user_id")].cross_tenant == "provider"
    assert refs[("case_shares", "shared_by_user_id")].cross_tenant == "provider"
    assert refs[("users", "organization_id")].cross_tenant is None


# -- one-line errors that name the flag ------------------------------------------------------------------

def test_a_tenants_table_without_the_tenant_column_names_the_column_to_pass(billing_db: str, tmp_path: Path) -> None:
    out = tmp_path / "draft.toml"
    done = run_cutover(billing_db, "plan", "draft", f"--db-url={billing_db}", "--tenant-table=organizations",
                       f"--out={out}")
    _one_line_error(done, out, "tenant_id", "--tenant-column organization_id")


def test_uuid_tenants_without_source_and_target_name_the_flags(billing_db: str, tmp_path: Path) -> None:
    out = tmp_path / "draft.toml"
    base = ("plan", "draft", f"--db-url={billing_db}", "--tenant-table=organizations",
            "--tenant-column=organization_id", f"--out={out}")
    err = _one_line_error(run_cutover(billing_db, *base), out, "--source", "uuid")
    assert "invalid input syntax" not in err
    _one_line_error(run_cutover(billing_db, *base, f"--source={SOURCE}"), out, "--target")
    missing = "dddddddd-dddd-4ddd-8ddd-dddddddddddd"
    _one_line_error(run_cutover(billing_db, *base, f"--source={missing}", f"--target={TARGET}"), out,
                    "--source", missing, "organizations")
    _one_line_error(run_cutover(billing_db, *base, f"--source={SOURCE}", f"--target={SOURCE}"), out,
                    "--source", "--target")


def test_no_table_named_like_a_patient_root_names_the_flag(billing_db: str, tmp_path: Path) -> None:
    out = tmp_path / "draft.toml"
    done = run_cutover(billing_db, "plan", "draft", f"--db-url={billing_db}", *TENANCY, f"--out={out}")
    _one_line_error(done, out, "--patient-table", "customers")


def test_the_version_table_is_found_or_named_by_flag(billing_db: str, tmp_path: Path) -> None:
    out = tmp_path / "draft.toml"
    base = ("plan", "draft", f"--db-url={billing_db}", *ORGS, f"--out={out}")
    _one_line_error(run_cutover(billing_db, *base, "--version-table=alembic_version"), out,
                    "--version-table", "alembic_version")
    _one_line_error(run_cutover(billing_db, *base, "--version-table=ar_internal_metadata"), out, "--version-column",
                    "key, value")
    _one_line_error(run_cutover(billing_db, *base, "--version-table=schema_migrations", "--version-column=ver"), out,
                    "--version-column", "version")
    done = run_cutover(billing_db, *base)  # Rails' table, found without a flag
    assert done.returncode == 0, done.stderr
    plan = load_plan(out)
    assert (plan.version_table, plan.version_column) == ("schema_migrations", "version")
    assert plan.schema_head == generator.SCHEMA_HEAD  # the newest of the applied versions
    assert f"holds {generator.N_MIGRATIONS} versions" in out.read_text()


def test_no_version_table_found_is_left_to_the_review_naming_both_flags(billing_db: str, tmp_path: Path) -> None:
    """A schema may keep no version at all: the draft is written, the version marked REVIEW with the
    flags that name one, and plan check names the plan key until the reviewer settles it."""
    execute_sql(billing_db, "DROP TABLE schema_migrations")
    out = tmp_path / "draft.toml"
    done = run_cutover(billing_db, "plan", "draft", f"--db-url={billing_db}", *ORGS, f"--out={out}")
    assert done.returncode == 0, done.stderr
    head = next(ln for ln in out.read_text().splitlines() if ln.startswith("schema_head"))
    assert "no version table found" in head and "--version-table" in head and "--version-column" in head, head
    check = run_cutover(billing_db, "plan", "check", f"--db-url={billing_db}", f"--plan={out}")
    assert check.returncode == 1 and "missing-table: [plan].version_table" in check.stdout, check.stdout


# -- what the draft writes -------------------------------------------------------------------------------

def test_the_draft_declares_self_references_and_references_without_a_foreign_key(billing_db: str,
                                                                                  tmp_path: Path) -> None:
    out = tmp_path / "draft.toml"
    done = run_cutover(billing_db, "plan", "draft", f"--db-url={billing_db}", *ORGS, f"--out={out}")
    assert done.returncode == 0, done.stderr
    plan = load_plan(out)
    text = out.read_text()

    def refs(table: str) -> dict[tuple[str, str], bool]:
        return {(r.column, r.table): r.foreign_key for r in plan.table(table).references}

    assert refs("plans") == {("parent_id", "plans"): True}
    assert refs("invoices") == {("customer_id", "customers"): False, ("billing_entity_id", "billing_entities"): True,
                                ("parent_invoice_id", "invoices"): True}
    assert refs("subscriptions")[("customer_id", "customers")] is False
    assert refs("subscriptions")[("previous_subscription_id", "subscriptions")] is True
    assert refs("usage_events") == {("customer_id", "customers"): False, ("subscription_id", "subscriptions"): False}
    assert refs("wallets") == {("customer_id", "customers"): True}
    for line in text.splitlines():
        if "foreign_key = false" in line:
            assert "# REVIEW: no foreign key" in line, line
    # ownership guessed through the reference the database has no foreign key for
    for table in ("customers", "subscriptions", "invoices", "fees", "credit_notes", "usage_events", "wallets",
                  "wallet_transactions"):
        assert plan.table(table).owner == "patient", table
    assert "invoices.customer_id (no foreign key) -> customers" in text
    for table in ("plans", "billing_entities", "api_keys", "memberships"):
        assert plan.table(table).owner != "patient", table


def test_plan_check_agrees_with_a_reference_declared_without_a_foreign_key(billing_db: str, tmp_path: Path) -> None:
    """A drafted reference with ``foreign_key = false`` is accepted; the same reference without the
    declaration is reported (a typo in a column name must not pass as a deliberate link)."""
    out = tmp_path / "draft.toml"
    assert run_cutover(billing_db, "plan", "draft", f"--db-url={billing_db}", *ORGS, f"--out={out}").returncode == 0
    plan = load_plan(out)
    check = run_cutover(billing_db, "plan", "check", f"--db-url={billing_db}", f"--plan={out}")
    found = [ln.split(":")[0] for ln in check.stdout.splitlines()[:-1]]
    assert "reference-without-fk" not in found and "undeclared-reference" not in found, check.stdout
    undeclared = tmp_path / "undeclared.toml"
    undeclared.write_text(out.read_text().replace(", foreign_key = false", ""))
    check = run_cutover(billing_db, "plan", "check", f"--db-url={billing_db}", f"--plan={undeclared}")
    assert check.returncode == 1
    without = [ln for ln in check.stdout.splitlines() if ln.startswith("reference-without-fk")]
    assert len(without) == sum(1 for t in plan.tables for r in t.references if not r.foreign_key), check.stdout
    assert any("invoices.customer_id -> customers" in ln and "foreign_key = false" in ln for ln in without), without


def test_a_reference_without_a_foreign_key_whose_types_differ_is_named_not_run(billing_db: str,
                                                                                tmp_path: Path) -> None:
    """Without a foreign key nothing guarantees the two sides compare: a text customer_id against a uuid
    customers.id is a difference plan check names and a blocker of the dry run, not a database error."""
    out = tmp_path / "draft.toml"
    assert run_cutover(billing_db, "plan", "draft", f"--db-url={billing_db}", *ORGS, f"--out={out}").returncode == 0
    before = run_cutover(billing_db, "plan", "check", f"--db-url={billing_db}", f"--plan={out}")
    assert "reference-type-mismatch" not in before.stdout, before.stdout
    execute_sql(billing_db, "ALTER TABLE credit_notes ALTER COLUMN customer_id TYPE text")
    check = run_cutover(billing_db, "plan", "check", f"--db-url={billing_db}", f"--plan={out}")
    assert check.returncode == 1, check.stdout + check.stderr
    mismatch = [ln for ln in check.stdout.splitlines() if ln.startswith("reference-type-mismatch")]
    assert len(mismatch) == 1 and "credit_notes.customer_id is text but customers.id is uuid" in mismatch[0], mismatch
    dry = run_cutover(billing_db, "dry-run", f"--plan={out}")
    assert dry.returncode == 1 and "Traceback" not in dry.stderr, dry.stdout + dry.stderr
    assert "reference-type-mismatch" in dry.stdout, dry.stdout


def test_a_self_reference_is_drafted_checked_and_followed_by_the_dry_run(fresh_db: str, tmp_path: Path) -> None:
    """A case pointing at an earlier case of its own (cases.parent_case_id -> cases): the draft declares
    it, plan check asks for it until the plan does, and the dry run follows it (READY, then an orphan)."""
    execute_sql(fresh_db, "ALTER TABLE cases ADD COLUMN parent_case_id text REFERENCES cases (id)",
                "UPDATE cases SET parent_case_id = (SELECT min(id) FROM cases) WHERE id > (SELECT min(id) FROM cases) "
                "AND id < 'case-00000100'")
    out = tmp_path / "draft.toml"
    assert run_cutover(fresh_db, "plan", "draft", f"--db-url={fresh_db}", f"--out={out}").returncode == 0
    assert ("parent_case_id", "cases") in {(r.column, r.table) for r in load_plan(out).table("cases").references}
    asked = run_cutover(fresh_db, "plan", "check", f"--db-url={fresh_db}", f"--plan={DEFAULT_PLAN}")
    assert asked.returncode == 1 and "cases.parent_case_id -> cases is not declared" in asked.stdout, asked.stdout
    plan = tmp_path / "plan.toml"
    old = 'references = [{ column = "patient_id", table = "patients" }]'
    assert DEFAULT_PLAN.read_text().count(old) == 1
    plan.write_text(DEFAULT_PLAN.read_text().replace(old, old[:-1] + ', { column = "parent_case_id", table = '
                                                                      '"cases" }]'))
    agree = run_cutover(fresh_db, "plan", "check", f"--db-url={fresh_db}", f"--plan={plan}")
    assert agree.returncode == 0, agree.stdout
    assert run_cutover(fresh_db, "dry-run", f"--plan={plan}").returncode == 0
    execute_sql(fresh_db, "UPDATE cases SET tenant_id = 'tenant-fortis-002' WHERE id = (SELECT min(id) FROM cases)")
    dry = run_cutover(fresh_db, "dry-run", f"--plan={plan}")
    assert dry.returncode == 1 and "cases.parent_case_id -> cases" in dry.stdout, dry.stdout


def test_a_table_that_only_references_the_tenants_table_is_drafted_not_queried(billing_db: str,
                                                                                tmp_path: Path) -> None:
    """It counts as tenant-scoped (it references organizations) but has no organization_id: the draft
    reads no values from it by the tenant column (the database would refuse), and plan check names it."""
    execute_sql(billing_db, "CREATE TABLE invitations (id uuid PRIMARY KEY, inviting_org_id uuid REFERENCES "
                            "organizations (id), kind text NOT NULL)",
                "INSERT INTO invitations SELECT gen_random_uuid(), id, 'admin' FROM organizations")
    out = tmp_path / "draft.toml"
    done = run_cutover(billing_db, "plan", "draft", f"--db-url={billing_db}", *ORGS, f"--out={out}")
    assert done.returncode == 0, done.stderr
    assert load_plan(out).table("invitations").owner == "classified"
    check = run_cutover(billing_db, "plan", "check", f"--db-url={billing_db}", f"--plan={out}")
    assert "missing-column: [plan].tenant_column: column invitations.organization_id does not exist" in check.stdout, \
        check.stdout


def test_a_schema_without_an_events_table_is_drafted_with_the_cutovers_own_trail(billing_db: str,
                                                                                  tmp_path: Path) -> None:
    """The billing model has no events table the cutover could write to. The draft used to name the
    first classified table instead (payment_providers: no payload, no source column), so the dry run
    was blocked on columns that table never had, and deciding that table stays with its tenant broke
    the plan ([classification.None]). Now it declares the cutover's own trail and no event table."""
    out = tmp_path / "draft.toml"
    done = run_cutover(billing_db, "plan", "draft", f"--db-url={billing_db}", *ORGS, f"--out={out}")
    assert done.returncode == 0, done.stderr
    plan = load_plan(out)
    assert plan.audit.own is True and plan.audit.table == OWN_AUDIT_TABLE
    assert plan.features.event_table is None
    assert "cutover.started" not in out.read_text(), "no table of the application's classifies the cutover's events"
    assert plan.rehearsal.straggler.table == plan.rehearsal.key_table == "customers"  # a table that moves
    dry = run_cutover(billing_db, "dry-run", f"--plan={out}")
    assert "[audit]" not in dry.stdout, dry.stdout
