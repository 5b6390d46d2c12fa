"""Runs that are not an operator's run leave artifacts/latest alone: collecting (``--co``) and the
project's own tests (one of which runs pytest inside the repository)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.mark.parametrize("selection", ["setA", "setB"])
def test_collect_only_never_touches_the_operator_log(pytester: pytest.Pytester, example: Callable[..., list[str]],
                                                     selection: str) -> None:
    args = example(test_b="import pytest\n@pytest.mark.setA\n@pytest.mark.setB\ndef test_b(): pass\n")
    result = pytester.runpytest_subprocess("-m", selection, "--co", "-q", *args)
    assert result.ret == 0, result.stdout.str()
    assert "test_b" in result.stdout.str()
    assert not (pytester.path / "artifacts").exists()
