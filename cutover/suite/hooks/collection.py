"""Which tests run, and in what order: markers and per-table parametrization from the catalogue,
``--check`` selection, the runbook's order."""

from __future__ import annotations

import pytest

from cutover.suite import allure_out, matrix, verdicts
from cutover.suite.catalogue import AUTOMATED, Catalogue
from cutover.suite.hooks import session
from cutover.suite.state import CATALOGUE, PLAN, SELECTED, SETTINGS


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str,
                              obj: object) -> list[pytest.Item | pytest.Collector] | None:
    """A module's ``Matrix()`` is the catalogue's automated checks, one test each (``suite/matrix.py``)."""
    return matrix.collect(collector) if isinstance(obj, matrix.Matrix) else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Per-table checks get one test per table (or reference) of the plan, named in the test id."""
    plan = metafunc.config.stash[PLAN]
    for check in AUTOMATED:
        if check.per is not None and check.per in metafunc.fixturenames:
            metafunc.parametrize(check.per, check.subjects(plan), ids=str)
            return


def check_id(item: pytest.Item) -> str | None:
    """The check a test belongs to, as the catalogue spells it (``a3`` → ``A3``)."""
    marker = item.get_closest_marker("check")
    if marker is None or not marker.args:
        return None
    raw = str(marker.args[0]).strip()
    catalogue = item.config.stash.get(CATALOGUE, None)
    known = catalogue.get(raw) if catalogue is not None else None
    return known.id if known is not None else raw


def _mark(item: pytest.Item, check: str, catalogue: Catalogue) -> None:
    """A check's set and kind markers, from its catalogue entry: ``-m setB`` selects what the catalogue says."""
    entry = catalogue.get(check)
    if entry is None:
        raise pytest.UsageError(f"{item.nodeid}: check({check!r}) is not in the check catalogue "
                                f"({', '.join(c.id for c in catalogue)})")
    for name in (*entry.sets, entry.kind):
        item.add_marker(name)
    allure_out.title(getattr(item, "obj", None), entry)


@pytest.hookimpl(tryfirst=True)  # before -m and -k deselect: they must see the catalogue's markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--check A3,A7`` keeps only those checks; a check the plan declares not applicable is not run (the
    summary and the verdict name it instead); every check's id travels with its reports (xdist too)."""
    settings = config.stash[SETTINGS]
    # A forgotten DATABASE_URL must not turn into a green on a throwaway database; a sandbox chosen by
    # name (--sandbox=local|docker, as CI does) is a deliberate choice and runs on a cut-over clone.
    if (session.run_kind(config) == verdicts.SET_B and settings.db_url is None
            and settings.sandbox in ("auto", "url") and not config.option.collectonly):
        raise pytest.UsageError(
            "Set B runs against production and needs its target: pass --db-url=URL or set DATABASE_URL "
            "(no sandbox was started; to try Set B on a throwaway cut-over clone say so: --sandbox=local)")
    catalogue, wanted = config.stash[CATALOGUE], config.stash[SELECTED]
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        check = check_id(item)
        if check is not None:
            _mark(item, check, catalogue)
            item.user_properties.append(("cutover_check", check))
        applicable = check is None or catalogue.applicable(check)
        (keep if applicable and (not wanted or check in wanted) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    # The runbook's order, whatever the file names: SQL checks (5a), manual checks (5b), then
    # A20-active, which writes and so must come after every check that reads what it touches.
    rank = {"sql": 0, "manual": 1, "rehearsal": 2}
    items.sort(key=lambda item: rank[entry.kind] if (entry := catalogue.get(check_id(item) or "")) else 0)
