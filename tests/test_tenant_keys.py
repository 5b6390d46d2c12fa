"""A key that holds the tenant column (issue 23, point 4): ``PRIMARY KEY (tenant_id, id)``.

Many multi-tenant schemas key their rows by tenant first. The cutover changes the tenant, so a
moved row's key changes with it: the report holds every key as the row is after the move (its tenant
column the target), and execute, the sweep, the rebuilt report, A5, A10 and the reverse all find the
rows by that key. Shown on the reference model with ``messages`` keyed ``(tenant_id, id)``.
"""

# Late writes are fixed SQL over constant tenant ids, as an operator would type them.
# ruff: noqa: S608

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cutover.core.options import Settings
from cutover.core.plan import DEFAULT_PLAN, load_plan
from cutover.core.row_keys import CutoverReport
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import checksum, execute_sql, failing_evidence, run_cutover, scalar

SRC, TGT = "tenant-apollo-001", "tenant-curaway-patients"
PLANNED_KEY = '[tables.messages]\nkey = "id"'


@pytest.fixture
def keyed_plan(tmp_path: Path) -> Path:
    """The reference plan with ``messages`` keyed by its tenant and id."""
    text = DEFAULT_PLAN.read_text()
    assert PLANNED_KEY in text
    path = tmp_path / "plan.toml"
    path.write_text(text.replace(PLANNED_KEY, '[tables.messages]\nkey = ["tenant_id", "id"]', 1))
    return path


@pytest.fixture
def keyed_db(fresh_db: str) -> str:
    """The restored reference snapshot with the primary key of ``messages`` over (tenant_id, id)."""
    execute_sql(fresh_db, "ALTER TABLE messages DROP CONSTRAINT messages_pkey",
                "ALTER TABLE messages ADD PRIMARY KEY (tenant_id, id)")
    return fresh_db


def _late_message(url: str) -> str:
    """A patient's message that lands on the source after the commit; returns its id."""
    execute_sql(url, f"INSERT INTO messages (id, tenant_id, case_id, sender_role, body) SELECT 'late-msg', '{SRC}', "
                     f"id, 'patient', 'late' FROM cases WHERE tenant_id = '{TGT}' ORDER BY id LIMIT 1")
    return "late-msg"


def _execute(url: str, plan_path: Path, report_path: Path) -> CutoverReport:
    assert run_cutover(url, "dry-run", f"--plan={plan_path}").returncode == 0
    done = run_cutover(url, "execute", "--operator-confirmed", f"--plan={plan_path}", f"--report-path={report_path}")
    assert done.returncode == 0, done.stdout + done.stderr
    report: CutoverReport = json.loads(report_path.read_text())
    return report


def _reverse(url: str, plan_path: Path, report_path: Path) -> None:
    dry = run_cutover(url, "reverse", "--dry-run", f"--plan={plan_path}", f"--report-path={report_path}")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    back = run_cutover(url, "reverse", "--operator-confirmed", f"--plan={plan_path}", f"--report-path={report_path}")
    assert back.returncode == 0, back.stdout + back.stderr


def test_execute_then_reverse_restores_the_database(keyed_db: str, keyed_plan: Path, tmp_path: Path,
                                                    cutover_settings: Settings) -> None:
    """The issue's report: execute and the checks passed, then the reverse exited 4 (rolled back)."""
    plan = load_plan(keyed_plan)
    before = checksum(keyed_db, plan)
    path = tmp_path / "r.json"
    report = _execute(keyed_db, keyed_plan, path)
    keys = report["allow_list"]["messages"]
    assert keys and all(isinstance(k, list) and k[0] == TGT for k in keys)  # the key as it is after the move
    assert failing_evidence(DatabaseUnderCheck(keyed_db, report, path, sandbox=True), plan, cutover_settings) == {}
    _reverse(keyed_db, keyed_plan, path)
    assert checksum(keyed_db, plan) == before


def test_sweep_rebuild_checks_and_reverse_hold_the_key_after_the_move(keyed_db: str, keyed_plan: Path, tmp_path: Path,
                                                                     cutover_settings: Settings) -> None:
    plan = load_plan(keyed_plan)
    before = checksum(keyed_db, plan)
    path = tmp_path / "r.json"
    keys: list[Any] = list(_execute(keyed_db, keyed_plan, path)["allow_list"]["messages"])
    target = DatabaseUnderCheck(keyed_db, json.loads(path.read_text()), path, sandbox=True)

    late = _late_message(keyed_db)
    assert {"A3", "A20"} <= set(failing_evidence(target, plan, cutover_settings))
    swept = run_cutover(keyed_db, "sweep", f"--plan={keyed_plan}", f"--report-path={path}")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    report = json.loads(path.read_text())
    assert report["sweeps"][0]["ids"]["messages"] == [[TGT, late]]
    assert failing_evidence(target, plan, cutover_settings, report) == {}

    rebuilt = tmp_path / "rebuilt.json"
    done = run_cutover(keyed_db, "report", "--rebuild", f"--plan={keyed_plan}", f"--report-path={rebuilt}")
    assert done.returncode == 0, done.stdout + done.stderr
    again = json.loads(rebuilt.read_text())
    assert sorted(map(tuple, again["allow_list"]["messages"])) == sorted(map(tuple, keys))
    assert again["sweeps"][0]["ids"]["messages"] == [[TGT, late]]
    assert failing_evidence(target, plan, cutover_settings, again) == {}

    _reverse(keyed_db, keyed_plan, path)
    assert scalar(keyed_db, f"SELECT tenant_id FROM messages WHERE id = '{late}'") == SRC
    execute_sql(keyed_db, f"DELETE FROM messages WHERE id = '{late}'")
    assert checksum(keyed_db, plan) == before
