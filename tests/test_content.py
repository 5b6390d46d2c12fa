"""Nothing but the tenant changed, and the rollback rehearsed (issue: the window, rehearsed).

A cutover command that moved every row right but also rewrote one other column of one moved row passed
all 21 checks. The comparison with the restored snapshot must catch that (and a lost or added row, and a
row moved from another tenant), stay quiet on a correct cutover, its own audit events and the plan's
trigger-maintained columns; and the rehearsal must run the reverse on a clone and prove it exact.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core import db
from cutover.core.plan import Plan
from cutover.sandbox.backends import ServerInfo
from cutover.sandbox.server import SessionSandbox
from cutover.suite import content
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import REHEARSAL, ROOT, operator_log, scalar

FILES = REHEARSAL


@pytest.fixture
def snapshot_url(cutover_sandbox: SessionSandbox, cutover_server: ServerInfo) -> str:
    """The restored snapshot every clone (and the cut-over template) was made from."""
    return db.with_database(cutover_server.admin_url, cutover_sandbox.template())


def _run(url: str, statement: str, *params: object) -> None:
    with db.connection(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # past the foreign keys: a deliberate fault
        conn.execute(statement, params)


def _moved_message(url: str, plan: Plan) -> str:
    return str(scalar(url, "SELECT id FROM messages WHERE tenant_id = %s ORDER BY id LIMIT 1", (plan.target,)))


def test_a_correct_cutover_changes_nothing_but_the_tenant(snapshot_url: str, cut_over_db: DatabaseUnderCheck,
                                                          cutover_plan: Plan) -> None:
    found = content.compare(snapshot_url, cut_over_db.url, cutover_plan, moved_back=True)
    assert found.same, [d.line() for d in found.differences]
    assert found.tables == len(cutover_plan.all_tables) and found.rows > 50_000
    exact = content.compare(snapshot_url, cut_over_db.url, cutover_plan, moved_back=False)
    assert not exact.same  # read exactly, the moved rows differ: the tenant column is what the cutover changed


def test_one_column_of_one_moved_row_is_named_with_before_and_after(
        snapshot_url: str, cut_over_db: DatabaseUnderCheck, cutover_plan: Plan) -> None:
    key = _moved_message(cut_over_db.url, cutover_plan)
    was = scalar(snapshot_url, "SELECT body FROM messages WHERE id = %s", (key,))
    _run(cut_over_db.url, "UPDATE messages SET body = 'stray SET' WHERE id = %s", key)
    found = content.compare(snapshot_url, cut_over_db.url, cutover_plan, moved_back=True)
    assert [(d.table, d.key, d.column, d.after) for d in found.differences] == [
        ("messages", key, "body", '"stray SET"')]
    assert found.differences[0].before == f'"{was}"' or found.differences[0].before.startswith(f'"{was[:50]}')
    ev = content.evidence("A5-content", found, "as before", "x")
    assert not ev.ok and f"messages [{key}] body: before" in ev.text() and f"messages:{key}" in ev.rows


def test_a_lost_row_and_a_row_from_another_tenant_differ(
        snapshot_url: str, cut_over_db: DatabaseUnderCheck, cutover_plan: Plan) -> None:
    key = _moved_message(cut_over_db.url, cutover_plan)
    _run(cut_over_db.url, "DELETE FROM messages WHERE id = %s", key)
    provider = str(scalar(cut_over_db.url, "SELECT id FROM tenants WHERE id NOT IN (%s, %s) ORDER BY id LIMIT 1",
                          (cutover_plan.source, cutover_plan.target)))
    other = scalar(cut_over_db.url, "SELECT id FROM organizations WHERE tenant_id = %s ORDER BY id LIMIT 1",
                   (provider,))
    if other is not None:  # a third tenant's row taken to the patient tenant is not "the tenant moved"
        _run(cut_over_db.url, "UPDATE organizations SET tenant_id = %s WHERE id = %s", cutover_plan.target, other)
    found = content.compare(snapshot_url, cut_over_db.url, cutover_plan, moved_back=True)
    lines = [d.line() for d in found.differences]
    assert f"messages [{key}] (row): before present, after absent" in lines, lines
    if other is not None:
        assert any(d.table == "organizations" and d.key == str(other) and d.column == "tenant_id"
                   for d in found.differences), lines


def test_the_cutovers_own_events_and_trigger_columns_are_left_out(
        snapshot_url: str, cut_over_db: DatabaseUnderCheck, cutover_plan: Plan) -> None:
    assert scalar(cut_over_db.url, "SELECT count(*) FROM events WHERE event_type LIKE 'cutover.%'") > 0
    key = _moved_message(cut_over_db.url, cutover_plan)
    _run(cut_over_db.url, "UPDATE messages SET created_at = created_at + interval '1 s' WHERE id = %s", key)
    assert not content.compare(snapshot_url, cut_over_db.url, cutover_plan, moved_back=True).same
    touched = dataclasses.replace(cutover_plan, tables=tuple(
        dataclasses.replace(t, trigger_columns=("created_at",)) if t.name == "messages" else t
        for t in cutover_plan.tables))
    assert content.compare(snapshot_url, cut_over_db.url, touched, moved_back=True).same


def test_sums_name_the_table_when_no_copy_was_kept(snapshot_url: str, cut_over_db: DatabaseUnderCheck,
                                                   cutover_plan: Plan) -> None:
    """A dev branch: its sums before the cutover, compared with its sums after."""
    before = content.sums(snapshot_url, cutover_plan, moved_back=True)
    assert content.compare_sums(before, content.sums(cut_over_db.url, cutover_plan, moved_back=True)).same
    _run(cut_over_db.url, "UPDATE messages SET body = body || '!' WHERE id = %s",
         _moved_message(cut_over_db.url, cutover_plan))
    found = content.compare_sums(before, content.sums(cut_over_db.url, cutover_plan, moved_back=True))
    assert [d.table for d in found.differences] == ["messages"]


# -- the rehearsal, as an operator runs it ----------------------------------------------------------------

def _stray_set(where: Path) -> str:
    """A command that rewrites one other column of one moved row on $DATABASE_URL: the operator's stray SET."""
    script = where / "stray_set.py"
    script.write_text("import os, psycopg\nwith psycopg.connect(os.environ['DATABASE_URL']) as c:\n"
                      "    c.execute(\"UPDATE messages SET body = 'stray' WHERE id = (SELECT min(id) FROM messages "
                      "WHERE tenant_id = 'tenant-curaway-patients')\")\n")
    return f"{sys.executable} {script}"


def test_a_stray_set_in_the_cutover_command_makes_the_rehearsal_not_ready(
        pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    args = example(**FILES)
    cmd = (f'cd {ROOT} && {sys.executable} -m cutover.cli execute --operator-confirmed '
           f'--report-path "$CUTOVER_REPORT_PATH" && {_stray_set(pytester.path)}')
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", f"--cutover-cmd={cmd}", *args)
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "ALL 12 CHECKS PASSED" in out and "A5-content FAIL" in out
    assert "REHEARSAL NOT READY: A5-content FAIL" in out
    assert "] body: before " in out and 'after "stray"' in out
    log = operator_log(pytester.path)
    assert {c["check"]: c["result"] for c in log["checks"]}["A5-content"] == "failed"


@pytest.mark.parametrize(("reverse_cmd", "fragment"), [
    ("true", "tenant_id: before \"tenant-apollo-001\", after \"tenant-curaway-patients\""),  # reversed nothing
    ("echo refusing; exit 3", "--reverse-cmd exited 3"),
])
def test_a_rollback_that_does_not_put_the_rows_back_fails_the_rehearsal(
        pytester: pytest.Pytester, example: Callable[..., list[str]], reverse_cmd: str, fragment: str) -> None:
    args = example(**FILES)
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", f"--reverse-cmd={reverse_cmd}", *args)
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "rollback FAIL" in out and fragment in out, out
    assert "A5-content PASS" in out and "REHEARSAL NOT READY: rollback FAIL" in out


def test_the_bundled_reverse_is_rehearsed_timed_and_in_the_rollback_bound(
        pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    args = example(**FILES)
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly",
                                           f"--answers={ROOT / 'ci' / 'answers-ci.yaml'}", *args)
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "rollback PASS" in out and "A5-content PASS" in out, out
    log = operator_log(pytester.path)
    bound = log["rollback_time_bound"]
    assert bound["reverse_s"] > 0 and bound["reverse_measured_on"].startswith("the rehearsal's clone")
    assert log["rehearsal"]["rollback"]["via"] == "bundled cutover module"
    assert f"REHEARSAL READY: 21 of 21 checks passed; rollback rehearsed in {bound['reverse_s']:.1f} s" in out


def test_an_adopted_database_cannot_prove_content_or_rollback_and_is_not_ready(
        pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck) -> None:
    args = example(**FILES)
    result = pytester.runpytest_subprocess("-m", "setA", f"--db-url={cut_over_db.url}", "-p", "no:randomly",
                                           f"--report-path={cut_over_db.report_path}", *args)
    out = result.stdout.str()
    assert result.ret == 6, out
    assert "REHEARSAL NOT READY: A5-content SKIP, A20-active SKIP, rollback SKIP, 9 unanswered" in out
