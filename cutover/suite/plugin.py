"""The pytest plugin: it only wires. The options come from the one options table; the hooks and
fixtures are registered from the modules that hold them, one job each (docs/architecture.md).

Loaded by the entry point and by the root conftest.py, so every entry point (setA, setB, the
project's tests, example projects) shares one wiring.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from cutover.suite import fixtures, pytest_options, screen, window_plugin, workers
from cutover.suite.hooks import collection, reporting, session

PARTS: tuple[ModuleType, ...] = (
    session, collection, reporting, workers, screen,
    window_plugin,  # the go/no-go's hooks and fixtures (pytest -m prereq)
    fixtures.run, fixtures.sandbox, fixtures.rehearsal, fixtures.manual, fixtures.checks,
)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    pytest_options.add_options(parser)
    screen.mask_argument_errors(parser)
    for part in PARTS:
        if pluginmanager.get_plugin(part.__name__) is None:
            pluginmanager.register(part, part.__name__)
