"""Tenant ids in their own type (issue 27, point 1): the whole flow on uuid and bigint tenants.

The reference model with ``tenants.id`` and every tenant column of type uuid, then bigint
(tests/tenant_types.py): the plan names the tenants as text, the database holds them typed. Every
command and check must compare them in the column's own type, never a Python string with a UUID.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg import sql

from cutover.core import db
from cutover.core.options import Settings
from cutover.core.plan import Plan, load_plan
from cutover.sandbox.backends import ServerInfo
from cutover.suite import content
from cutover.suite.under_check import DatabaseUnderCheck
from tests import tenant_types
from tests.support import (
    REHEARSAL,
    ROOT,
    checksum,
    execute_sql,
    executed,
    failing_evidence,
    operator_tests,
    rehearse_on,
    run_cutover,
    scalar,
)


@pytest.fixture(params=["uuid", "bigint"])
def typed_db(request: pytest.FixtureRequest, cutover_server: ServerInfo, tmp_path: Path) -> Iterator[tuple[str, Plan]]:
    url, plan = tenant_types.database(cutover_server, request.param, tmp_path)
    yield url, plan
    db.drop_database(cutover_server.admin_url, db.database_name(url))


def _own_rows(url: str, plan: Plan) -> None:
    """The target's own rows, there before the cutover (point 4): a billing profile and an event."""
    execute_sql(url, sql.SQL("INSERT INTO provider_profiles (id, tenant_id, display_name, specialty) VALUES "
                             "('prof-own', {t}, 'own', 'billing')").format(t=sql.Literal(plan.target)),
                sql.SQL("INSERT INTO events (id, tenant_id, event_type, payload, source_service) VALUES "
                        "('evt-own', {t}, 'intake.started', '{{}}', 'api')").format(t=sql.Literal(plan.target)))


def test_every_command_and_check_on_typed_tenant_ids(typed_db: tuple[str, Plan], tmp_path: Path,
                                                     cutover_settings: Settings) -> None:
    url, plan = typed_db
    args = [f"--plan={plan.path}"]
    _own_rows(url, plan)
    before = checksum(url, plan)
    dry = run_cutover(url, "dry-run", *args)
    assert dry.returncode == 0 and "READY" in dry.stdout, dry.stdout + dry.stderr
    path = tmp_path / "r.json"
    done = run_cutover(url, "execute", "--operator-confirmed", *args, f"--report-path={path}")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(path.read_text())
    moved = scalar(url, sql.SQL("SELECT count(*) FROM cases WHERE tenant_id = {}").format(sql.Literal(plan.target)))
    assert report["moved"]["cases"] == moved > 0
    assert report["baseline"]["cases"][plan.source] == moved  # the report names the tenants as the plan does
    assert report["held_on_target"] == {"provider_profiles": {"provider": 1}, "events": {"patient": 1}}
    target = DatabaseUnderCheck(url, report, path, sandbox=True)
    assert failing_evidence(target, plan, cutover_settings) == {}
    again = run_cutover(url, "execute", "--operator-confirmed", *args, f"--report-path={tmp_path / 'again.json'}")
    assert again.returncode == 3, again.stdout + again.stderr  # already cut over, by the audit trail
    # A late write on the source: the sweep moves it, and the rebuilt report lists it.
    execute_sql(url, sql.SQL("INSERT INTO messages (id, tenant_id, case_id, sender_role, body) SELECT 'late', {}, id, "
                             "'patient', 'late' FROM cases WHERE tenant_id = {} LIMIT 1").format(
        sql.Literal(plan.source), sql.Literal(plan.target)))
    swept = run_cutover(url, "sweep", *args, f"--report-path={path}")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    report = json.loads(path.read_text())
    assert failing_evidence(DatabaseUnderCheck(url, report, path, sandbox=True), plan, cutover_settings) == {}
    rebuilt = tmp_path / "rebuilt.json"
    done = run_cutover(url, "report", "--rebuild", *args, f"--report-path={rebuilt}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(rebuilt.read_text())["sweeps"][0]["ids"] == {"messages": ["late"]}
    preview = run_cutover(url, "reverse", "--dry-run", *args, f"--report-path={path}")
    assert preview.returncode == 0, preview.stdout + preview.stderr
    back = run_cutover(url, "reverse", "--operator-confirmed", *args, f"--report-path={path}")
    assert back.returncode == 0, back.stdout + back.stderr
    execute_sql(url, "DELETE FROM messages WHERE id = 'late'")
    assert checksum(url, plan) == before  # the target's own event included: still on the target


def test_the_content_comparison_reads_the_target_as_the_source_in_the_keys_type(
        typed_db: tuple[str, Plan], cutover_server: ServerInfo) -> None:
    """A5-content names the one column a stray SET changed, and not the tenant column beside it: a
    bigint tenant came back from to_jsonb as a number, which never equalled the plan's text."""
    url, plan = typed_db
    name = f"before_{uuid.uuid4().hex[:8]}"
    before = db.create_database(cutover_server.admin_url, name, template=db.database_name(url))
    try:
        executed(url, plan, "test:pytest")
        assert content.compare(before, url, plan, moved_back=True).same
        key = scalar(url, sql.SQL("SELECT id FROM messages WHERE tenant_id = {} ORDER BY id LIMIT 1").format(
            sql.Literal(plan.target)))
        execute_sql(url, sql.SQL("UPDATE messages SET body = 'stray SET' WHERE id = {}").format(sql.Literal(key)))
        found = content.compare(before, url, plan, moved_back=True)
        assert [(d.table, d.key, d.column, d.after) for d in found.differences] == [
            ("messages", key, "body", '"stray SET"')]
    finally:
        db.drop_database(cutover_server.admin_url, name)


def test_a_tenant_id_written_otherwise_is_read_as_the_database_writes_it(
        cutover_server: ServerInfo, tmp_path: Path, cutover_settings: Settings) -> None:
    """The plan's target in capitals: uuid input accepts it; the report, the baseline and the checks
    name it as the database writes it, so the counts keyed by tenant agree with the plan."""
    url, plan = tenant_types.database(cutover_server, "uuid", tmp_path)
    try:
        canonical = plan.target
        upper = load_plan(tenant_types.plan_file("uuid", tmp_path, target=canonical.upper()))
        assert upper.target != canonical
        path = tmp_path / "r.json"
        done = run_cutover(url, "execute", "--operator-confirmed", f"--plan={upper.path}", f"--report-path={path}")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(path.read_text())
        assert report["target"] == canonical and report["baseline"]["cases"].get(canonical) is None
        assert failing_evidence(DatabaseUnderCheck(url, report, path, sandbox=True), upper, cutover_settings) == {}
    finally:
        db.drop_database(cutover_server.admin_url, db.database_name(url))


def test_a_tenant_id_the_type_refuses_is_a_one_line_error_naming_the_plan_key(
        cutover_server: ServerInfo, tmp_path: Path) -> None:
    url, plan = tenant_types.database(cutover_server, "uuid", tmp_path)
    try:
        wrong = tmp_path / "wrong.toml"
        wrong.write_text(plan.path.read_text().replace(f'source = "{plan.source}"', 'source = "tenant-apollo-001"'))
        before = checksum(url, plan, include_audit=True)
        for args in (["dry-run"], ["execute", "--operator-confirmed", f"--report-path={tmp_path / 'r.json'}"]):
            done = run_cutover(url, *args, f"--plan={wrong}")
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            assert done.returncode == 2 and len(lines) == 1, done.stdout + done.stderr
            assert "[tenants].source: 'tenant-apollo-001' is not a uuid" in lines[0], lines[0]
            assert "Traceback" not in done.stdout + done.stderr
        assert checksum(url, plan, include_audit=True) == before
    finally:
        db.drop_database(cutover_server.admin_url, db.database_name(url))


def test_the_rehearsals_twelve_sql_checks_pass_on_uuid_tenants(
        pytester: pytest.Pytester, example: Callable[..., list[str]], cutover_server: ServerInfo,
        tmp_path: Path) -> None:
    """The runbook's step 5a on a database whose tenants are uuid: the rehearsal's dry run, execute and
    the 12 SQL checks, as an operator runs them."""
    url, plan = tenant_types.database(cutover_server, "uuid", tmp_path)
    try:
        args = example(**operator_tests("test_matrix"))
        result = pytester.runpytest_subprocess("-m", "setA and sql", "-p", "no:randomly", *rehearse_on(url),
                                               f"--plan={plan.path}", *args)
        out = result.stdout.str()
        assert result.ret == 0 and "ALL 12 CHECKS PASSED" in out, out + result.stderr.str()
    finally:
        db.drop_database(cutover_server.admin_url, db.database_name(url))


def test_the_full_rehearsal_is_ready_on_uuid_tenants(
        pytester: pytest.Pytester, example: Callable[..., list[str]], cutover_server: ServerInfo,
        tmp_path: Path) -> None:
    """Set A, the manual checks (CI's labelled answers), A20-active, A5-content and the rollback
    rehearsed, on a database whose tenants are uuid and whose target holds rows of its own: REHEARSAL
    READY, 21 of 21."""
    url, plan = tenant_types.database(cutover_server, "uuid", tmp_path)
    try:
        _own_rows(url, plan)
        args = example(**REHEARSAL)
        answers = pytester.path / "answers.yaml"
        answers.write_text((ROOT / "ci" / "answers-ci.yaml").read_text())
        result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", *rehearse_on(url),
                                               f"--plan={plan.path}", "--answers=answers.yaml", "--rehearse-rollback",
                                               *args)
        out = result.stdout.str()
        assert result.ret == 0 and "REHEARSAL READY: 21 of 21 checks passed" in out, out + result.stderr.str()
    finally:
        db.drop_database(cutover_server.admin_url, db.database_name(url))
