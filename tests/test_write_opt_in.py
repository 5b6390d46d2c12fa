"""Writes to a database are opted into on the command line only, and only for the database named there.

Example projects run the real operator-facing tests against real databases: a rehearsal switch from
the environment or the ini file never writes; Set B and the go/no-go refuse ``--rehearse`` before they
connect; a ``--db-url`` rehearsal writes only to the database ``--rehearse=DBNAME`` names.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cutover.core.plan import Plan
from tests.support import checksum, operator_tests

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
    assert result.ret != 0, out
