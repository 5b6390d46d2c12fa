"""Helpers for the project's own tests: example projects run through pytester, like pytest-alembic."""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import Phase, Verbosity, settings

from cutover.core import db
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.sandbox.backends import ServerInfo
from cutover.sandbox.server import SessionSandbox
from cutover.suite.target import Target, cut_over_clone

# Hypothesis profiles (HYPOTHESIS_PROFILE): ci keeps every row-mix property, with a database per
# example, well under 3 minutes on 2 cores; dev explores more; stress is the long hunt (docs/hypothesis.md).
settings.register_profile("ci", max_examples=12, derandomize=True, print_blob=True)
settings.register_profile("dev", max_examples=40, print_blob=True)
settings.register_profile("stress", max_examples=2000, print_blob=True, verbosity=Verbosity.normal,
                          phases=list(Phase))
settings.register_profile("triage", max_examples=40, phases=[Phase.explicit, Phase.generate], print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")

pytest_plugins = ("cutover.suite.plugin", "pytester")

EXAMPLE_CONFTEST = 'pytest_plugins = ["cutover.suite.plugin"]\n'


@pytest.fixture
def example(pytester: pytest.Pytester, cutover_settings: Settings) -> Callable[..., list[str]]:
    """Write a small example project using the plugin; returns the args that share our snapshot cache."""

    def make(**files: str) -> list[str]:
        pytester.makeconftest(EXAMPLE_CONFTEST)
        pytester.makeini("[pytest]\naddopts = --strict-markers -p no:cacheprovider\n")
        pytester.makepyfile(**files)
        pinned = Path(__file__).resolve().parent.parent / "tools" / "allure" / "node_modules" / ".bin" / "allure"
        allure = [f"--allure-bin={pinned}"] if pinned.exists() else []
        return [f"--cache-dir={cutover_settings.cache_path}", *allure]

    return make


def postgres_running_in(base_dir: str | Path) -> bool:
    """Is any process still using this sandbox directory (a postmaster left behind)?"""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "postgres" in cmdline and str(base_dir) in cmdline:
            return True
    return False


@pytest.fixture
def empty_db(cutover_server: ServerInfo) -> Iterator[str]:
    """A new, empty database on the sandbox server (restore targets must be empty)."""
    name = f"empty_{uuid.uuid4().hex[:8]}"
    url = db.create_database(cutover_server.admin_url, name)
    yield url
    db.drop_database(cutover_server.admin_url, name)


@pytest.fixture(scope="session")
def cut_over_template(cutover_sandbox: SessionSandbox, cutover_server: ServerInfo, cutover_plan: Plan,
                      cutover_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A sandbox database with the reference cutover executed, to clone per test."""
    target = cut_over_clone(cutover_sandbox, cutover_plan, cutover_settings, tmp_path_factory.mktemp("cut"),
                            f"cuttpl_{uuid.uuid4().hex[:6]}")
    yield target
    cutover_sandbox.drop(target.url)


@pytest.fixture
def cut_over_db(cut_over_template: Target, cutover_server: ServerInfo) -> Iterator[Target]:
    """A private copy of a correctly cut-over database (and its report) for one test to break."""
    name = f"cut_{uuid.uuid4().hex[:8]}"
    url = db.create_database(cutover_server.admin_url, name, template=db.database_name(cut_over_template.url))
    yield Target(url, copy.deepcopy(cut_over_template.report), cut_over_template.report_path, sandbox=True)
    db.drop_database(cutover_server.admin_url, name)
