"""The check catalogue is the one home of a check's identity: everything an operator sees agrees with it.

Markers, ``--check``, ``-k`` names, the summary's titles, the docs' table and Set B's membership
are read from ``cutover/suite/catalogue.py``; these tests fail when any of them drifts from it.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core.plan import DEFAULT_PLAN, load_plan
from cutover.suite.catalogue import AUTOMATED, SET_A, SET_B, Catalogue, markdown_table
from tests.support import REHEARSAL

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = Catalogue.for_plan(load_plan(DEFAULT_PLAN))


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest("--co", "-q", *args)
    return [line for line in result.stdout.lines if "::" in line]


def check_of(nodeid: str) -> str:
    """``test_matrix.py::test_A3_nothing…[events]`` → ``A3``; ``test_A20active_…`` → ``A20-active``: the
    catalogue entry whose keyword (``A3_``, ``A20active_``, ``rollback_``) starts the test's name."""
    found = [c.id for c in CATALOGUE if f"::test_{c.keyword}" in nodeid]
    assert len(found) == 1, f"{nodeid}: a check's test name must start with test_<id>_"
    return found[0]


def test_the_runbook_has_21_checks_and_set_b_its_8() -> None:
    assert len(CATALOGUE.counted()) == 21
    assert {c.id for c in CATALOGUE.counted(SET_B)} == {"A1", "A2", "A3", "A4", "A6", "A7", "A8", "A9"}
    assert all(SET_A in c.sets for c in CATALOGUE)
    assert CATALOGUE.get("a20-ACTIVE") is not None and CATALOGUE.get("A20-active") not in CATALOGUE.counted()


def test_docs_carry_the_catalogue_table() -> None:
    docs = (ROOT / "docs" / "checks.md").read_text()
    block = re.search(r"<!-- catalogue:start -->\n(.*?)<!-- catalogue:end -->", docs, re.S)
    assert block is not None, "docs/checks.md lost its catalogue block"
    assert block.group(1) == markdown_table(CATALOGUE), (
        "docs/checks.md differs from the catalogue: regenerate the block with "
        "`.venv/bin/python -m cutover.suite.catalogue`")


def test_markers_come_from_the_catalogue(pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    args = example(**REHEARSAL)
    set_a = {check_of(n) for n in collected(pytester, "-m", "setA", *args)}
    set_b = {check_of(n) for n in collected(pytester, "-m", "setB", *args)}
    manual = {check_of(n) for n in collected(pytester, "-m", "manual", *args)}
    assert set_a == {c.id for c in CATALOGUE}
    assert set_b == {c.id for c in CATALOGUE if SET_B in c.sets}
    assert manual == {c.id for c in CATALOGUE if c.kind == "manual"}


def test_k_selects_each_check_by_its_keyword_and_no_other(pytester: pytest.Pytester,
                                                        example: Callable[..., list[str]]) -> None:
    args = example(**REHEARSAL)
    for check in CATALOGUE:
        found = {check_of(n) for n in collected(pytester, "-k", check.keyword, *args)}
        assert found == {check.id}, f"-k {check.keyword} selected {sorted(found)}"


def test_check_selects_in_any_case_and_runs_the_runbook_order(pytester: pytest.Pytester,
                                                              example: Callable[..., list[str]]) -> None:
    args = example(**REHEARSAL)
    nodes = collected(pytester, "--check", "a20-active,A12,a3", *args)
    assert [check_of(n) for n in nodes][-2:] == ["A12", "A20-active"]
    assert {check_of(n) for n in nodes} == {"A3", "A12", "A20-active"}


def test_an_unknown_check_is_a_usage_error_before_anything_runs(
        pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    args = example(**REHEARSAL)
    result = pytester.runpytest_subprocess("-m", "setA", "--check", "A3,A99", *args)
    err = [line for line in result.stderr.lines if line.strip()]
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert len(err) == 1 and "unknown check A99" in err[0], err
    assert all(c.id in err[0] for c in CATALOGUE), "the error must name the known checks"
    assert "sandbox:" not in result.stdout.str() and not (pytester.path / "artifacts").exists()


def test_a_check_marker_outside_the_catalogue_is_refused(pytester: pytest.Pytester,
                                                         example: Callable[..., list[str]]) -> None:
    args = example(test_stray="""
        import pytest

        @pytest.mark.check("A42")
        def test_A42_made_up():
            pass
    """)
    result = pytester.runpytest("--co", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "check('A42') is not in the check catalogue" in result.stderr.str()


def test_every_automated_check_titles_its_evidence() -> None:
    for check in AUTOMATED:
        assert check.run is not None and check.per in (None, "patient_table", "reference", "owned_table")
        assert check.heading("t") == f"{check.id} {check.title} [t]"


def test_a_matrix_is_collected_as_one_test_per_automated_check_and_subject(
        pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    """The test ids are the catalogue's names and the plan's subjects, each once: a module that declares
    ``Matrix()`` gets the automated checks through pytest's collection, in the catalogue's order, each once
    (the functions the collector leaves on the module are not collected a second time)."""
    plan = load_plan(DEFAULT_PLAN)
    expected = [f"test_matrix.py::{check.test_name}" + (f"[{subject}]" if check.per else "")
                for check in AUTOMATED for subject in (check.subjects(plan) if check.per else [""])]
    args = example(test_matrix="from cutover.suite.matrix import Matrix\n\nchecks = Matrix()\n")
    assert collected(pytester, "-p", "no:randomly", *args) == expected


CHECK_ID = re.compile(r"\bA\d+\b")
# The check functions are handed their entry's evidence (id and title from the catalogue), the assists'
# findings get their id from the test that runs them; a literal id in them is a second registry.
ID_FREE = ("cutover/suite/checks", "cutover/suite/manual")


# The go/no-go runs A1 and A2 on production: it names them by their catalogue entries, never by a literal.
GO_NO_GO = ("cutover/suite/window.py", "cutover/suite/window_plugin.py", "smoke/test_prereq.py")


def id_literals(root: Path, places: tuple[str, ...] = ID_FREE) -> list[str]:
    """Every string (docstrings aside) in ``places`` (folders or files) under ``root`` that writes a check id, as
    ``path:line``."""
    found: list[str] = []
    for place in places:
        for path in [root / place] if (root / place).is_file() else sorted((root / place).rglob("*.py")):
            tree = ast.parse(path.read_text())
            docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                          if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                          and node.body and isinstance(node.body[0], ast.Expr)
                          and isinstance(node.body[0].value, ast.Constant)}
            found += [f"{path.relative_to(root)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str)
                      and id(node) not in docstrings and CHECK_ID.search(node.value)]
    return found


def test_check_functions_take_their_ids_from_the_catalogue() -> None:
    assert id_literals(ROOT) == []


def test_the_go_no_go_takes_its_check_ids_from_the_catalogue() -> None:
    assert id_literals(ROOT, GO_NO_GO) == []


def test_a_planted_check_id_literal_is_found(tmp_path: Path) -> None:
    """The scan can fail: a copy of the checks where one builds its own evidence with an id."""
    for folder in ID_FREE:
        shutil.copytree(ROOT / folder, tmp_path / folder)
    planted = tmp_path / "cutover/suite/checks/planted.py"
    planted.write_text('"""A check that names itself."""\n\n\ndef a7(c, ev):\n    return Evidence("A7")\n')
    assert id_literals(tmp_path) == ["cutover/suite/checks/planted.py:5: 'A7'"]
