"""The smoke matrix as operators run it: pytester projects with the real smoke/test_matrix.py.

Set B against a --db-url is read-only (the database's own write counters prove it) and starts no
sandbox; a write from a check is refused by the database; before the cutover the checks fail and
name rows; serial and ``-n 2`` agree; and correct cutovers of ten seeds raise no false alarm.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core import db
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.core.redact import split_password
from cutover.sandbox.backends import ServerInfo
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import ROOT, executed, operator_tests, reference_database, run_checks, scalar

MATRIX = operator_tests("test_matrix")


def writes(url: str) -> int:
    time.sleep(1.2)  # let other sessions' pending statistics reach shared memory
    return int(scalar(url, "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables") or 0)


def test_set_b_on_a_db_url_passes_reads_only_and_starts_nothing(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck
) -> None:
    args = example(**MATRIX)
    before = writes(cut_over_db.url)
    result = pytester.runpytest("-m", "setB", "--db-url", cut_over_db.url, "-p", "no:randomly", *args)
    outcomes = result.parseoutcomes()
    out = result.stdout.str()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] >= 8, out
    assert result.ret == 0, out
    assert "SET B PASSED: 8 of 8" in out
    assert "sandbox:" not in out and "cutover: reference cutover" not in out
    assert writes(cut_over_db.url) == before, "Set B changed the database"
    password = split_password(cut_over_db.url)[1]
    assert password is not None and password not in out


def test_a_write_inside_a_set_b_check_is_refused(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck
) -> None:
    args = example(test_sneaky="""
        import pytest

        @pytest.mark.setB
        @pytest.mark.check("A1")
        def test_sneaky_write(cutover_checker):
            cutover_checker.conn.execute("UPDATE tenants SET name = 'x'")
    """)
    result = pytester.runpytest("-m", "setB", "--db-url", cut_over_db.url, *args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot execute UPDATE in a read-only transaction*"])
    assert scalar(cut_over_db.url, "SELECT count(*) FROM tenants WHERE name = 'x'") == 0


def test_before_the_cutover_set_a_fails_and_names_rows(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str, cutover_plan: Plan
) -> None:
    args = example(**MATRIX)
    result = pytester.runpytest("-m", "setA", "--db-url", fresh_db, "-p", "no:randomly", *args)
    out = result.stdout.str()
    assert result.ret == 1
    for check in ("A3", "A5", "A8", "A9", "A10", "A20"):
        assert f"{check:<4} FAIL" in out, check
    assert "A1   PASS" in out and "A2   PASS" in out
    assert "rows (20 shown, max 20): msg-" in out
    assert "query:    SELECT" in out
    assert "pass the execute's report with --report-path" in out
    password = split_password(fresh_db)[1]
    assert password is not None and password not in out


def test_check_selection_by_id(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck
) -> None:
    args = example(**MATRIX)
    picked = pytester.runpytest("--check", "A3,a7", "--db-url", cut_over_db.url, "-p", "no:randomly", *args)
    out = picked.stdout.str()
    assert picked.ret == 0, out
    assert "A3   PASS" in out and "A7   PASS" in out and "A1   " not in out


@pytest.mark.parametrize("seed", [11, 22, 33, 44, 55, 66, 77, 88, 99, 111])
def test_no_false_alarm_on_correct_cutovers(cutover_server: ServerInfo, cutover_plan: Plan,
                                            cutover_settings: Settings, seed: int) -> None:
    url = reference_database(cutover_server, cutover_plan, 0.1, seed)
    try:
        report = executed(url, cutover_plan, "test:seeds")
        assert run_checks(DatabaseUnderCheck(url, report, None, True), cutover_plan, cutover_settings) == set()
    finally:
        db.drop_database(cutover_server.admin_url, db.database_name(url))


def _outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Test id → outcome, from ``-rA``'s short summary (the same lines serially and under xdist)."""
    found: dict[str, str] = {}
    for line in result.stdout.lines:
        word, _, rest = line.partition(" ")
        if word in {"PASSED", "FAILED", "SKIPPED", "ERROR"} and "::" in rest:
            found[rest.split(" ")[0]] = word
    return found


def test_serial_and_two_workers_give_the_same_results(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str
) -> None:
    """Before the cutover Set A has passes and failures both: each must come out the same under -n 2."""
    args = example(**MATRIX)
    common = ("-m", "setA", "--db-url", fresh_db, "-p", "no:randomly", "-rA", *args)
    serial = pytester.runpytest_subprocess(*common)
    parallel = pytester.runpytest_subprocess("-n", "2", *common)
    assert serial.ret == parallel.ret == 1, parallel.stdout.str()
    one, two = _outcomes(serial), _outcomes(parallel)
    assert len(one) >= 12 and "PASSED" in one.values() and "FAILED" in one.values(), serial.stdout.str()
    assert one == two
    verdict = [line for line in serial.stdout.lines if "REHEARSAL NOT READY: " in line]
    assert verdict and verdict[-1] in parallel.stdout.lines
    assert "gw1" in parallel.stdout.str() or "2 workers" in parallel.stdout.str()


def test_a_path_option_taken_for_a_test_path_is_a_usage_error(tmp_path: Path) -> None:
    """``--report-path /abs/r.json`` once made pytest skip pytest.ini and collect the project's own tests."""
    import subprocess
    import sys

    report = tmp_path / "r.json"
    report.write_text("{}")
    cmd = [sys.executable, "-m", "pytest", "-m", "setB", "--report-path", str(report), "--co", "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "write path options with '=', e.g. --report-path=" in proc.stderr
    ok = subprocess.run([*cmd[:5], f"--report-path={report}", "--co", "-q"], cwd=ROOT, capture_output=True,
                        text=True, check=False)
    assert ok.returncode == 0 and "tests/" not in ok.stdout, ok.stdout
