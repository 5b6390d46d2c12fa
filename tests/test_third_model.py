"""The whole flow on the third model (issue 23): the reference schema with tenant-keyed foreign keys of
each kind, a ``(tenant_id, id)`` key, a table outside ``public``, a quoted mixed-case name, a
materialized view the cutover refreshes, an audit trigger on ``messages`` writing into a tenant-scoped
``audit."Message Changes"`` (declared with ``written_by``), and an owner role under FORCE ROW LEVEL SECURITY.

The model is built in ``tests/third_model``; the Hypothesis row mixes run on it in test_row_mixes.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from cutover.core import db
from cutover.core.errors import SetupError
from cutover.core.options import Settings
from cutover.core.plan import Plan, load_plan, table_sql
from cutover.sandbox import snapshot
from cutover.sandbox.backends import ServerInfo
from cutover.suite.under_check import DatabaseUnderCheck, check_connection
from tests import third_model
from tests.support import checksum, execute_sql, failing_evidence, run_cutover, scalar

PLAN = third_model.PLAN
SRC, TGT = "tenant-apollo-001", "tenant-curaway-patients"
AUDIT = third_model.AUDIT  # written by the trigger messages_audit on messages (plan: written_by)


@pytest.fixture(scope="session")
def third_plan() -> Plan:
    return load_plan(PLAN)


@pytest.fixture(scope="session")
def third_template(cutover_server: ServerInfo, third_plan: Plan,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The third model's snapshot, made as the runbook makes one (pg_dump | gzip) and restored once
    into a database used only as a template."""
    directory = tmp_path_factory.mktemp("third")
    out = directory / "third.sql.gz"
    snapshot.make(out, third_plan, cutover_server.admin_url, scale=1, seed=11, model=third_model.model(directory))
    name = f"third_tpl_{uuid.uuid4().hex[:6]}"
    url = db.create_database(cutover_server.admin_url, name)
    snapshot.restore(out, url, third_plan)
    yield url
    db.drop_database(cutover_server.admin_url, name)


@pytest.fixture
def third_db(cutover_server: ServerInfo, third_template: str) -> Iterator[str]:
    """A private, restored, not yet cut-over copy of the third model."""
    url = db.create_database(cutover_server.admin_url, f"third_{uuid.uuid4().hex[:8]}",
                             template=db.database_name(third_template))
    yield url
    db.drop_database(cutover_server.admin_url, db.database_name(url))


def test_dry_run_ready_execute_the_twelve_checks_and_an_exact_reverse(third_db: str, third_plan: Plan,
                                                                       tmp_path: Path,
                                                                       cutover_settings: Settings) -> None:
    before = checksum(third_db, third_plan)
    dry = run_cutover(third_db, "dry-run", f"--plan={PLAN}")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.splitlines()[-1].startswith("READY"), dry.stdout
    assert f"trigger messages_audit on messages writes {AUDIT} on each moved row: declared" in dry.stdout, dry.stdout
    path = tmp_path / "r.json"
    done = run_cutover(third_db, "execute", "--operator-confirmed", f"--plan={PLAN}", f"--report-path={path}")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(path.read_text())
    for table in ("Document References", "clinical.match_requests", "messages", "cases", "patients"):
        assert report["moved"][table] > 0, table
    assert {k[0] for k in report["allow_list"]["messages"]} == {TGT}  # (tenant_id, id): as it is after the move
    moved_messages = report["moved"]["messages"]
    assert report["triggered"] == {AUDIT: {TGT: moved_messages}}  # one row per moved message, where it landed
    moved_cases = report["moved"]["cases"]
    assert scalar(third_db, "SELECT cases FROM case_counts WHERE tenant_id = %s", (TGT,)) == moved_cases  # refreshed
    target = DatabaseUnderCheck(third_db, report, path, sandbox=True)
    assert failing_evidence(target, third_plan, cutover_settings) == {}
    back = run_cutover(third_db, "reverse", "--operator-confirmed", f"--plan={PLAN}", f"--report-path={path}")
    assert back.returncode == 0, back.stdout + back.stderr
    # Exact but for the audit trail, which keeps what the trigger wrote: the cutover's rows moved back, and
    # one more per message the reverse moved, all on the source.
    assert {t: s for t, s in checksum(third_db, third_plan).items() if t != AUDIT} == {
        t: s for t, s in before.items() if t != AUDIT}
    audit = sql.SQL("SELECT tenant_id, count(*) FROM {} GROUP BY 1").format(table_sql(AUDIT))
    with db.connection(third_db, read_only=True) as conn:
        assert dict(conn.execute(audit).fetchall()) == {SRC: 2 * moved_messages}
    assert scalar(third_db, "SELECT count(*) FROM case_counts WHERE tenant_id = %s", (TGT,)) == 0


def test_a_not_deferrable_tenant_key_outside_public_blocks_with_its_qualified_fix(third_db: str, third_plan: Plan,
                                                                                  tmp_path: Path) -> None:
    """NOT DEFERRABLE: the dry run said READY and execute rolled back at the first move; now a
    blocker naming the key, both tables (with their schema) and the statement that fixes it."""
    execute_sql(third_db, "ALTER TABLE clinical.match_requests ALTER CONSTRAINT match_requests_tenant_case_fkey "
                          "NOT DEFERRABLE")
    before = checksum(third_db, third_plan, include_audit=True)
    dry = run_cutover(third_db, "dry-run", f"--plan={PLAN}")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    (line,) = [x for x in dry.stdout.splitlines() if "tenant-key-not-deferrable" in x]
    assert "clinical.match_requests (tenant_id, case_id) -> cases (tenant_id, id)" in line, line
    assert ("ALTER TABLE clinical.match_requests ALTER CONSTRAINT match_requests_tenant_case_fkey DEFERRABLE"
            in line), line
    done = run_cutover(third_db, "execute", "--operator-confirmed", f"--plan={PLAN}",
                       f"--report-path={tmp_path / 'r.json'}")
    assert done.returncode == 1 and "tenant-key-not-deferrable" in done.stderr, done.stdout + done.stderr
    assert checksum(third_db, third_plan, include_audit=True) == before



@pytest.fixture
def forced_owner(third_db: str, cutover_server: ServerInfo, third_plan: Plan) -> Iterator[tuple[str, str]]:
    """(URL, role): a login that owns every table of the third model, in both schemas, without BYPASSRLS."""
    role, password = f"owner_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    execute_sql(cutover_server.admin_url, sql.SQL("CREATE ROLE {} LOGIN NOBYPASSRLS PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(password)))
    third_model.owned_by_a_forced_role(third_db, third_plan, role)
    try:
        yield db.with_login(third_db, role, password), role
    finally:
        execute_sql(third_db, sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)),
                    sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        execute_sql(cutover_server.admin_url, sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_owner_under_force_rls_is_a_blocker_and_a_setup_error_never_a_pass(
        forced_owner: tuple[str, str], third_plan: Plan, cutover_settings: Settings) -> None:
    url, role = forced_owner
    dry = run_cutover(url, "dry-run", f"--plan={PLAN}")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    (line,) = [x for x in dry.stdout.splitlines() if "BLOCKER row-security" in x]
    assert role in line and "clinical.match_requests" in line and "Document References" in line, line
    assert "BYPASSRLS" in line, line
    with pytest.raises(SetupError, match=f"the checks cannot see every row: role '{role}'"):
        check_connection(url, cutover_settings, third_plan)


def test_a_lock_held_on_a_table_outside_public_is_named_with_its_schema(third_db: str, third_plan: Plan,
                                                                        tmp_path: Path) -> None:
    with db.connection(third_db) as holder:
        holder.execute("UPDATE clinical.match_requests SET status = status WHERE false")  # ROW EXCLUSIVE, held
        done = run_cutover(third_db, "execute", "--operator-confirmed", "--lock-timeout", "1s", f"--plan={PLAN}",
                           f"--report-path={tmp_path / 'r.json'}", timeout=120)
        holder.rollback()
    assert done.returncode == 4, done.stdout + done.stderr
    assert "could not lock table clinical.match_requests (held by pid" in done.stderr, done.stderr
