"""A plan naming a table or column the database lacks (issue 27, point 7).

Every cutover command stops on it with one line that names the plan key to fix, and the exit code the
README documents for BLOCKED (1), never the database's own error (exit 2, or 4 "rolled back" for the
execute, whose LOCK met the missing table first) and never a traceback. Nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core.plan import DEFAULT_PLAN, load_plan
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import checksum, operator_tests, run_cutover

# (what the plan gets wrong, the edit to the reference plan, the plan key the message must name)
BROKEN = {
    "version-table": ('version_table = "alembic_version"', 'version_table = "alembic_versions"',
                      "[plan].version_table"),
    "audit-column": ('type_column = "event_type"', 'type_column = "event_kind"', "[audit].type_column"),
    "tenants-column": ('settings_column = "settings"', 'settings_column = "setting"', "[tenants].settings_column"),
    "table": ("[tables.quotes]", "[tables.quotez]", "[tables.quotez]"),
    "rule-column": ('[tables.quotes]\nkey = "id"', '[tables.quotes]\nkey = "quote_id"', "[tables.quotes].key"),
}

COMMANDS = {
    "execute": ("execute", "--operator-confirmed", "--report-path={report}"),
    "sweep": ("sweep", "--report-path={report}"),
    "reverse": ("reverse", "--dry-run", "--report-path={report}"),
    "report": ("report", "--rebuild", "--report-path={report}"),
}


def _broken_plan(tmp_path: Path, fault: str) -> tuple[Path, str]:
    old, new, key = BROKEN[fault]
    text = DEFAULT_PLAN.read_text()
    assert text.count(old) == 1, old
    plan = tmp_path / "plan.toml"
    plan.write_text(text.replace(old, new))
    load_plan(plan)  # the plan itself is well-formed: only the database lacks what it names
    return plan, key


@pytest.mark.parametrize("fault", sorted(BROKEN))
def test_the_dry_run_and_plan_check_name_the_plan_key(fresh_db: str, tmp_path: Path, fault: str) -> None:
    plan, key = _broken_plan(tmp_path, fault)
    dry = run_cutover(fresh_db, "dry-run", f"--plan={plan}")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "Traceback" not in dry.stderr and not dry.stderr.strip(), dry.stderr
    named = [ln for ln in dry.stdout.splitlines() if ln.strip().startswith("BLOCKER missing-") and key in ln]
    assert len(named) == 1 and "does not exist" in named[0], dry.stdout
    check = run_cutover(fresh_db, "plan", "check", f"--db-url={fresh_db}", f"--plan={plan}")
    assert check.returncode == 1, check.stdout + check.stderr
    assert any(key in ln and ln.startswith("missing-") for ln in check.stdout.splitlines()), check.stdout


@pytest.mark.parametrize("fault", sorted(BROKEN))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_is_blocked_in_one_line_and_writes_nothing(fresh_db: str, tmp_path: Path, fault: str,
                                                                 command: str) -> None:
    plan, key = _broken_plan(tmp_path, fault)
    report = tmp_path / "report.json"
    if command in ("sweep", "reverse"):  # they read a report first: a real one, of a cutover not run here
        report.write_text('{"run_id": "r-1", "allow_list": {}, "moved": {}}')
    before = checksum(fresh_db, load_plan(DEFAULT_PLAN), include_audit=True)
    done = run_cutover(fresh_db, *(a.format(report=report) for a in COMMANDS[command]), f"--plan={plan}")
    assert done.returncode == 1, done.stdout + done.stderr
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"cutover: BLOCKED: {command} refused: the plan does not fit the database: {key}"), err
    assert err.endswith("nothing changed"), err
    assert checksum(fresh_db, load_plan(DEFAULT_PLAN), include_audit=True) == before
    if command in ("execute", "report"):
        assert not report.exists()


@pytest.mark.parametrize("fault", ["version-table", "table", "audit-column"])
def test_set_b_fails_its_checks_in_one_line_each_without_a_traceback(
        pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck,
        tmp_path: Path, fault: str) -> None:
    """Set B on production with such a plan: each check that reads the missing name fails with one line
    saying so, A1 names the plan key, the next step and the timeline stay one line each; exit 1."""
    plan, key = _broken_plan(tmp_path, fault)
    args = example(**operator_tests("test_matrix"))
    result = pytester.runpytest("-m", "setB", "--db-url", cut_over_db.url, f"--plan={plan}", "-p", "no:randomly",
                                *args)
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "SET B FAILED: A1 FAIL" in out and key in out, out
    assert "Traceback" not in out and "psycopg.errors" not in out and "UndefinedTable" not in out, out
    assert not any(ln.lstrip().startswith(("LINE 1:", "^")) for ln in out.splitlines()), out
    assert result.parseoutcomes().get("error", 0) == 0, out
