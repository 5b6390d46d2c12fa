"""The smoke tests in smoke/test_restore.py fail when their fault is present, and pass when it is not."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cutover.core import db
from cutover.core.plan import Plan
from cutover.sandbox import snapshot
from cutover.sandbox.backends import ServerInfo
from tests.support import operator_tests

SMOKE = operator_tests("test_restore")


def test_schema_check_passes_on_the_snapshot_and_names_a_missing_table(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str
) -> None:
    args = example(**SMOKE)
    pytester.runpytest_subprocess(*args, f"--db-url={fresh_db}", "-m", "setA").assert_outcomes(
        passed=1, skipped=1)
    with db.connection(fresh_db, autocommit=True) as conn:
        conn.execute("DROP TABLE quotes")
    result = pytester.runpytest_subprocess(*args, f"--db-url={fresh_db}", "-m", "setA")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*tables the plan names are missing from the target: ?'quotes'?*"])


def test_manifest_check_catches_a_snapshot_that_disagrees_with_its_manifest(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cutover_server: ServerInfo,
    cutover_plan: Plan, tmp_path: Path
) -> None:
    snap = tmp_path / "snap.sql.gz"
    snapshot.make(snap, cutover_plan, cutover_server.admin_url, scale=0.02, seed=5)
    args = [*example(**SMOKE), f"--snapshot={snap}", "-m", "setA"]
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=2)

    manifest = json.loads(snapshot.manifest_path(snap).read_text())
    manifest["rows"]["messages"]["tenant-apollo-001"] += 1  # the snapshot lost a message
    snapshot.manifest_path(snap).write_text(json.dumps(manifest))
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_sandbox_rows_match_the_snapshot_manifest*", "*messages*"])


def test_a_failing_check_never_prints_the_database_password(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str
) -> None:
    """pytest shows a failing test's arguments; the --db-url fixture value carries the password."""
    password = urlsplit(fresh_db).password
    assert password
    with db.connection(fresh_db, autocommit=True) as conn:
        conn.execute("DROP TABLE quotes")
    args = example(**SMOKE)
    for tb in ("auto", "long", "short"):
        result = pytester.runpytest_subprocess(*args, f"--db-url={fresh_db}", "-m", "setA", f"--tb={tb}", "-l")
        result.assert_outcomes(failed=1, skipped=1)
        assert password not in result.stdout.str() + result.stderr.str(), f"password shown with --tb={tb}"
