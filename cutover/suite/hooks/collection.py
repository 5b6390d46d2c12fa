"""Which tests run, and in what order: per-table parametrization, ``--check`` selection, the runbook's order."""

from __future__ import annotations

import pytest

from cutover.suite import verdict as verdicts
from cutover.suite.hooks import session
from cutover.suite.state import PLAN, SETTINGS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Per-table checks get one test per table (or reference) of the plan, named in the test id."""
    wanted = {"patient_table", "owned_table", "reference"} & set(metafunc.fixturenames)
    if not wanted:
        return
    plan = metafunc.config.stash[PLAN]
    if "patient_table" in wanted:
        metafunc.parametrize("patient_table", [t.name for t in plan.moving], ids=str)
    if "owned_table" in wanted:
        metafunc.parametrize("owned_table", [t.name for t in plan.tables if t.owner != "patient"], ids=str)
    if "reference" in wanted:
        labels = [f"{t.name}.{r.column}" for t in plan.tables for r in t.references]
        metafunc.parametrize("reference", labels, ids=str)


def check_id(item: pytest.Item) -> str | None:
    """The check a test belongs to, as the runbook spells it."""
    marker = item.get_closest_marker("check")
    if marker is None or not marker.args:
        return None
    raw = str(marker.args[0]).strip()
    return raw[:1].upper() + raw[1:]  # "a3" → "A3", "A20-active" stays as the runbook spells it


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--check A3,A7`` keeps only those checks; every check's id travels with its reports (xdist too)."""
    settings = config.stash[SETTINGS]
    # A forgotten DATABASE_URL must not turn into a green on a throwaway database; a sandbox chosen by
    # name (--sandbox=local|docker, as CI does) is a deliberate choice and runs on a cut-over clone.
    if (session.run_kind(config) == verdicts.SET_B and settings.db_url is None
            and settings.sandbox in ("auto", "url") and not config.option.collectonly):
        raise pytest.UsageError(
            "Set B runs against production and needs its target: pass --db-url=URL or set DATABASE_URL "
            "(no sandbox was started; to try Set B on a throwaway cut-over clone say so: --sandbox=local)")
    wanted = settings.check_ids
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        check = check_id(item)
        if check is not None:
            item.user_properties.append(("cutover_check", check))
        (keep if not wanted or (check or "").upper() in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    # The runbook's order, whatever the file names: SQL checks (5a), manual checks (5b), then
    # A20-active, which writes and so must come after every check that reads what it touches.
    items.sort(key=lambda item: 2 if check_id(item) == "A20-active" else (1 if item.get_closest_marker("manual")
                                                                           else 0))
