"""The automated checks as pytest test functions, one per catalogue entry.

Twelve hand-written wrappers each repeated an id, a title's words and its set markers; a new check
meant editing them in step with everything else. Here each entry of the catalogue becomes a test
function named ``test_<id>_<slug>`` that asks for the read-only checker (and, for per-table checks,
the table or reference it is parametrized by) and turns the evidence into the verdict. Markers
are added at collection from the same entry (hooks/collection.py), for these and for the
hand-written manual and rehearsal tests alike.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import Parameter, Signature

import pytest

from cutover.suite import allure_out as reporting
from cutover.suite.catalogue import AUTOMATED, Check
from cutover.suite.checks.base import Checker


def _test_for(check: Check) -> Callable[..., None]:
    def test(cutover_checker: Checker, **per: str) -> None:
        reporting.verdict(check.evaluate(cutover_checker, *per.values()))

    params = [Parameter("cutover_checker", Parameter.KEYWORD_ONLY)]
    if check.per is not None:
        params.append(Parameter(check.per, Parameter.KEYWORD_ONLY))
    test.__signature__ = Signature(params)  # type: ignore[attr-defined]  # pytest reads the fixtures from here
    test.__name__ = test.__qualname__ = check.test_name
    test.__doc__ = check.heading()
    return pytest.mark.check(check.id)(test)


def matrix_tests() -> dict[str, Callable[..., None]]:
    """``{"test_A3_nothing_patient_owned_on_source": <function>, ...}`` for a test module's globals."""
    return {check.test_name: _test_for(check) for check in AUTOMATED}
