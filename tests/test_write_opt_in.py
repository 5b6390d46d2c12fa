"""Writes to a database are opted into on the command line only, and only for the database named there.

Example projects run the real operator-facing tests against real databases: a rehearsal switch from
the environment or the ini file never writes; Set B and the go/no-go refuse ``--rehearse`` before they
connect; a ``--db-url`` rehearsal writes only to the database ``--rehearse=DBNAME`` names.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cutover.core import db
from cutover.core.plan import Plan
from tests.support import checksum, operator_tests, rehearse_on, run_cutover

MATRIX = operator_tests("test_matrix")


def test_rehearse_from_the_environment_never_writes_to_set_bs_target(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str, cutover_plan: Plan,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24's first finding: `CUTOVER_REHEARSE=1 pytest -m setB --db-url=$PROD` ran the cutover there."""
    args = example(**MATRIX)
    before = checksum(fresh_db, cutover_plan, include_audit=True)
    monkeypatch.setenv("CUTOVER_REHEARSE", "1")
    result = pytester.runpytest_subprocess("-m", "setB", f"--db-url={fresh_db}", "-p", "no:randomly", *args)
    out = result.stdout.str() + result.stderr.str()
    assert "rehearsal: execute" not in out, out
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before, "Set B wrote to its target"
    refused(result, "$CUTOVER_REHEARSE is not read", "command line only", "unset CUTOVER_REHEARSE")


UNREACHABLE = "postgresql://ops:S3cret-canary@127.0.0.1:1/prod"  # nothing listens on port 1: connecting would fail


def refused(result: pytest.RunResult, *fragments: str) -> str:
    """A usage error: exit 4, one line naming the fix, no secret, nothing started or written."""
    out, err = result.stdout.str(), result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "S3cret-canary" not in out + err
    assert "cannot reach PostgreSQL" not in out + err and "sandbox: local PostgreSQL up" not in out + err
    return lines[0]


def test_rehearse_in_the_ini_file_stops_the_run_before_it_writes(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str, cutover_plan: Plan
) -> None:
    args = example(**operator_tests("test_matrix", "test_sweep_active"))
    pytester.makeini("[pytest]\naddopts = --strict-markers -p no:cacheprovider\ncutover_rehearse = true\n")
    before = checksum(fresh_db, cutover_plan, include_audit=True)
    result = pytester.runpytest_subprocess("-m", "setA", f"--db-url={fresh_db}", *args)
    refused(result, "ini cutover_rehearse is not read", "remove cutover_rehearse from the ini file")
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before
    assert not (pytester.path / "artifacts").exists()


@pytest.mark.parametrize(("selection", "extra", "who"), [
    ("setB", [], "Set B (-m setB) only reads"),
    ("setB and sql", [], "Set B (-m setB) only reads"),
    ("prereq", ["--evidence=x"], "the go/no-go (-m prereq) only reads"),
])
@pytest.mark.parametrize("rehearse", ["--rehearse=prod", "--rehearse"])
def test_set_b_and_the_go_no_go_refuse_rehearse_before_connecting(
    pytester: pytest.Pytester, example: Callable[..., list[str]], selection: str, extra: list[str], who: str,
    rehearse: str
) -> None:
    args = example(**operator_tests("test_matrix", "test_prereq"))
    result = pytester.runpytest_subprocess("-m", selection, f"--db-url={UNREACHABLE}", *extra, rehearse, *args)
    refused(result, who, "drop --rehearse")
    assert not (pytester.path / "artifacts").exists()


def test_a_bare_rehearse_with_a_db_url_is_refused_naming_the_form(
    pytester: pytest.Pytester, example: Callable[..., list[str]]
) -> None:
    args = example(**MATRIX)
    result = pytester.runpytest_subprocess("-m", "setA", f"--db-url={UNREACHABLE}", "--rehearse", *args)
    refused(result, "pass --rehearse=DBNAME")


def test_a_database_name_without_a_db_url_is_refused(
    pytester: pytest.Pytester, example: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("DATABASE_URL", "CUTOVER_DB_URL"):
        monkeypatch.delenv(var, raising=False)
    args = example(**MATRIX)
    result = pytester.runpytest_subprocess("-m", "setA", "--rehearse=dev", *args)
    refused(result, "--rehearse=dev names a --db-url database, but no --db-url")


def test_rehearse_naming_another_database_writes_nothing(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str, cutover_plan: Plan
) -> None:
    """The URL connects to one database, --rehearse names another: a wrong URL is never cut over."""
    args = example(**operator_tests("test_matrix", "test_sweep_active"))
    before = checksum(fresh_db, cutover_plan, include_audit=True)
    result = pytester.runpytest_subprocess("-m", "setA", f"--db-url={fresh_db}", "--rehearse=dev_branch", *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 2, out
    name = db.database_name(fresh_db)
    assert f"--rehearse=dev_branch but --db-url connects to the database '{name}'; nothing was written" in out
    assert "rehearsal: restore" not in out and "rehearsal: execute" not in out
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before


def test_rehearse_naming_the_database_rehearses_there(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str, cutover_plan: Plan
) -> None:
    """The other side of the name check: the database the URL connects to, named, is rehearsed."""
    args = example(**MATRIX)
    before = checksum(fresh_db, cutover_plan)
    result = pytester.runpytest_subprocess("-m", "setA and sql", *rehearse_on(fresh_db), "-p", "no:randomly", *args)
    out = result.stdout.str()
    assert f"(the rehearsal writes here (--rehearse={db.database_name(fresh_db)}))" in out, out
    assert "ALL 12 CHECKS PASSED" in out and "rehearsal: execute" in out, out
    assert checksum(fresh_db, cutover_plan) != before


def test_the_cutover_commands_ignore_a_rehearse_left_in_the_environment(fresh_db: str) -> None:
    """Only the suite has the switch: a variable left in the window's shell does not stop `cutover dry-run`."""
    done = run_cutover(fresh_db, "dry-run", extra_env={"CUTOVER_REHEARSE": "1"})
    assert done.returncode == 0 and "READY" in done.stdout, done.stderr
