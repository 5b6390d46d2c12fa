"""The verdict a run owes follows from what its ``-m`` expression selects, not from how it is spelt.

``-m "not setB"`` used to be judged a Set B run, and the runbook's step 5a (the 12 SQL checks) ended
``REHEARSAL NOT READY: 9 unanswered`` with exit 6, telling an operator to investigate a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core.exit_codes import ExitCode
from cutover.core.plan import Plan
from cutover.suite import selection, verdicts
from cutover.suite.catalogue import Catalogue
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import REHEARSAL, operator_log, operator_tests

MATRIX = operator_tests("test_matrix")
STEP_5A = ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8", "A9", "A10", "A20", "A21"]


@pytest.fixture
def catalogue(cutover_plan: Plan) -> Catalogue:
    return Catalogue.for_plan(cutover_plan)


@pytest.mark.parametrize(("markexpr", "kind"), [
    ("", verdicts.REHEARSAL),
    ("setA", verdicts.REHEARSAL),
    ("setB", verdicts.SET_B),
    ("setB and sql", verdicts.SET_B),
    ("not setB", verdicts.REHEARSAL),
    ("setA and not manual", verdicts.REHEARSAL),
    ("setA and sql", verdicts.STEP_5A),
    ("sql", verdicts.STEP_5A),
    ("manual", verdicts.REHEARSAL),
    ("prereq", None),
    ("not prereq", verdicts.REHEARSAL),
])
def test_the_run_kind_is_what_the_expression_selects(catalogue: Catalogue, markexpr: str, kind: str | None) -> None:
    assert selection.kind(selection.select(markexpr, catalogue), catalogue) == kind


def test_only_an_expression_that_selects_no_check_is_the_go_no_go(catalogue: Catalogue) -> None:
    assert selection.select("prereq", catalogue).prereq
    assert not selection.select("not prereq", catalogue).prereq
    assert not selection.select("setB", catalogue).prereq
    not_set_b = selection.select("not setB", catalogue).checks
    assert "A3" not in not_set_b and {"A5", "A10", "A11", "A20-active"} <= set(not_set_b)


def test_step_5a_is_the_twelve_automated_sql_checks(catalogue: Catalogue) -> None:
    assert sorted(selection.step_5a(catalogue)) == sorted(STEP_5A)


def test_step_5a_verdicts() -> None:
    passed = {c: "passed" for c in STEP_5A}
    ok = verdicts.decide(verdicts.STEP_5A, STEP_5A, passed, {}, [])
    assert ok.exit_code == ExitCode.OK
    assert ok.line.startswith("ALL 12 CHECKS PASSED (step 5a)") and "READY only after step 5b" in ok.line
    failed = verdicts.decide(verdicts.STEP_5A, STEP_5A, {**passed, "A3": "failed"}, {}, [])
    assert (failed.line, failed.exit_code) == ("STEP 5A FAILED: A3 FAIL", ExitCode.FAILED)
    short = verdicts.decide(verdicts.STEP_5A, STEP_5A, {c: "passed" for c in STEP_5A[:-1]}, {}, [])
    assert (short.line, short.exit_code) == ("STEP 5A NOT PASSED: 1 not run", ExitCode.INCOMPLETE)


def test_step_5a_on_a_dev_branch_ends_all_12_checks_passed_and_its_evidence_says_step_5a(
        pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck) -> None:
    """The runbook's step 5a: rc=0 and "ALL 12 CHECKS PASSED"; the READY verdict waits for step 5b."""
    args = example(**MATRIX)
    result = pytester.runpytest_subprocess("-m", "setA and sql", f"--db-url={cut_over_db.url}",
                                           f"--report-path={cut_over_db.report_path}", "-p", "no:randomly", *args)
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "ALL 12 CHECKS PASSED (step 5a)" in out and "READY only after step 5b" in out
    assert "REHEARSAL READY" not in out and "unanswered" not in out
    assert out.count("ALL 12 CHECKS PASSED") == 2  # the SQL tally, and the verdict line
    log = operator_log(pytester.path)
    assert log["run"] == verdicts.STEP_5A and log["verdict"].startswith("ALL 12 CHECKS PASSED (step 5a)")


def test_a_run_of_everything_but_set_b_is_a_rehearsal_not_set_b(
        pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck) -> None:
    args = example(**MATRIX)
    result = pytester.runpytest_subprocess("-m", "not setB", f"--db-url={cut_over_db.url}",
                                           f"--report-path={cut_over_db.report_path}", "-p", "no:randomly", *args)
    out = result.stdout.str()
    assert result.ret == ExitCode.INCOMPLETE, out
    assert "REHEARSAL NOT READY" in out and "SET B" not in out
    assert "8 not run" in out  # the Set B checks it left out are owed all the same


def test_the_go_no_go_never_takes_step_5a_for_a_rehearsal(
        pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck,
        fresh_db: str) -> None:
    args = example(**REHEARSAL, **operator_tests("test_prereq"))
    step = pytester.runpytest_subprocess("-m", "setA and sql", f"--db-url={cut_over_db.url}",
                                         f"--report-path={cut_over_db.report_path}", "-p", "no:randomly", *args)
    assert step.ret == 0, step.stdout.str()
    evidence = Path(pytester.path / "artifacts" / "latest").resolve()
    go = pytester.runpytest_subprocess("-m", "prereq", f"--db-url={fresh_db}", f"--evidence={evidence}",
                                       "-p", "no:randomly", *args)
    out = go.stdout.str()
    assert go.ret == 1, out
    assert "WINDOW NO-GO" in out and "evidence-ready" in out and "step 5a" in out
