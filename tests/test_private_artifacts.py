"""A run's artifacts are readable by their owner only, whatever the umask.

The operator log, the journal, evidence.json, the Allure results and report name patients' rows and
the captured idempotency key: artifacts/<stamp>/ is 0700 and every file in it 0600, as the cutover
report already is. Each test runs under umask 000, where anything created with the default mode
would be world-readable, so only modes set on purpose pass.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cutover.sandbox.backends import free_port
from cutover.suite import oplog
from cutover.suite.manual.answers import Answer, Journal
from tests.support import operator_tests

MATRIX = operator_tests("test_matrix")


@contextmanager
def open_umask() -> Iterator[None]:
    """umask 000: files and directories come out 0666/0777 unless their creator says otherwise."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def not_private(root: Path) -> list[str]:
    """Everything under ``root`` (itself included) that another user could read or enter."""
    wrong = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        wanted = 0o700 if path.is_dir() else 0o600
        if mode(path) != wanted:
            wrong.append(f"{path.relative_to(root.parent)} {oct(mode(path))}")
    return wrong


def test_the_operator_log_journal_and_allure_results_are_written_private(tmp_path: Path) -> None:
    results, journal = tmp_path / "run" / "allure-results", tmp_path / "run" / "journal.jsonl"
    results.mkdir(parents=True)
    (results / "r-result.json").write_text(json.dumps({"name": "A3", "status": "failed"}))
    (results / "r-attachment.txt").write_text("rows ev-1, ev-2 on the source")
    results.chmod(0o755)
    (results / "r-attachment.txt").chmod(0o644)  # as allure-pytest leaves them under umask 022
    journal.write_text(json.dumps({"check": "A12", "result": "pass"}) + "\n")
    log = oplog.build(started_at="2026-12-04T20:00:00+00:00", exit_status=1, command="pytest -m setA",
                      operator="op", verdict="REHEARSAL NOT READY: A3 FAIL", summary_lines=[], checks=[],
                      record=None, environment={"git_sha": "abc"}, report_path=None)
    with open_umask():
        out = oplog.write(tmp_path / "artifacts", "20261204T200000Z", log, results, journal, allure=None)
    assert {p.name for p in out.iterdir()} >= {"operator-log.md", "operator-log.json", "journal.jsonl",
                                                "allure-results"}
    assert not_private(out) == []
    assert not_private(results) == []  # the results as written (an --alluredir of the operator's) too


def test_the_journal_is_private_from_its_first_answer(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with open_umask():
        Journal(path).add(Answer(check="A11", result="pass", observation="fine", operator="op",
                                 at="2026-12-04T20:00:00+00:00", source="terminal"))
    assert mode(path) == 0o600
    path.chmod(0o644)  # a journal another run left readable is tightened on the next answer
    Journal(path).add(Answer(check="A12", result="pass", observation="fine", operator="op",
                             at="2026-12-04T20:00:01+00:00", source="terminal"))
    assert mode(path) == 0o600


def test_a_runs_artifacts_directory_and_evidence_are_private(pytester: pytest.Pytester,
                                                            example: Callable[..., list[str]]) -> None:
    """Set B on an unreachable target: the quickest run that still writes the whole directory."""
    args = example(**MATRIX)
    with open_umask():
        result = pytester.runpytest_subprocess("-m", "setB", f"--db-url=postgresql://ops@127.0.0.1:{free_port()}/prod",
                                               *args)
    assert result.ret == 2, result.stdout.str()
    out = (pytester.path / "artifacts" / "latest").resolve()
    assert (out / "evidence.json").is_file() and (out / "operator-log.md").is_file()
    assert any((out / "allure-results").iterdir())
    assert not_private(out) == []
