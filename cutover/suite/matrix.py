"""The automated checks as pytest tests, collected from the catalogue.

Twelve hand-written wrappers each repeated an id, a title's words and its set markers; a new check
meant editing them in step with everything else. A test module declares ``checks = Matrix()``; at
collection (:func:`collect`, called from ``hooks/collection.py``'s ``pytest_pycollect_makeitem``)
each entry of the catalogue becomes a test function named ``test_<id>_<slug>`` that asks for the
read-only checker (and, for per-table checks, the table or reference it is parametrized by, under
the fixture name the entry's ``per`` gives) and turns the evidence into the verdict. pytest's own
function collection then makes the items, so fixtures, per-table parametrization, ``-k`` and the
node ids are pytest's, as for any test function. Markers are added at collection from the same
entry, for these and for the hand-written manual and rehearsal tests alike.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cutover.suite import allure_out
from cutover.suite.catalogue import AUTOMATED, Check
from cutover.suite.checks.base import Checker


class Matrix:
    """What a test module declares to have the catalogue's automated checks collected in it."""

    def __repr__(self) -> str:
        return f"Matrix({len(AUTOMATED)} automated checks from the catalogue)"


def _function(check: Check) -> Callable[..., None]:
    """The check's test, with the signature pytest reads its fixtures from: the checker, and the
    per-table subject under the name the catalogue's ``per`` gives it."""
    def once(cutover_checker: Checker) -> None:
        allure_out.verdict(check.evaluate(cutover_checker))

    def per_patient_table(cutover_checker: Checker, patient_table: str) -> None:
        allure_out.verdict(check.evaluate(cutover_checker, patient_table))

    def per_owned_table(cutover_checker: Checker, owned_table: str) -> None:
        allure_out.verdict(check.evaluate(cutover_checker, owned_table))

    def per_reference(cutover_checker: Checker, reference: str) -> None:
        allure_out.verdict(check.evaluate(cutover_checker, reference))

    variants: dict[str | None, Callable[..., None]] = {
        None: once, "patient_table": per_patient_table, "owned_table": per_owned_table, "reference": per_reference}
    test = variants[check.per]
    test.__name__ = test.__qualname__ = check.test_name
    test.__doc__ = check.heading()
    marked: Callable[..., None] = pytest.mark.check(check.id)(test)
    return marked


def collect(collector: pytest.Module | pytest.Class) -> list[pytest.Item | pytest.Collector]:
    """Every automated check's items, made by pytest's own function collection (fixtures, parametrization)."""
    items: list[pytest.Item | pytest.Collector] = []
    for check in AUTOMATED:
        test = _function(check)
        # pytest's Function reads its object from its module by name; the module's names were listed
        # before this runs, so the function is not collected a second time from there.
        setattr(collector.obj, test.__name__, test)
        made = collector.ihook.pytest_pycollect_makeitem(collector=collector, name=test.__name__, obj=test)
        items.extend(made if isinstance(made, list) else [made] if made is not None else [])
    return items
