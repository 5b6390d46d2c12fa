"""Helpers for the project's own tests: example projects run through pytester, like pytest-alembic."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cutover import db
from cutover.config import Settings
from cutover.sandbox import ServerInfo

EXAMPLE_CONFTEST = 'pytest_plugins = ["cutover.plugin"]\n'


@pytest.fixture
def example(pytester: pytest.Pytester, cutover_settings: Settings) -> Callable[..., list[str]]:
    """Write a small example project using the plugin; returns the args that share our snapshot cache."""

    def make(**files: str) -> list[str]:
        pytester.makeconftest(EXAMPLE_CONFTEST)
        pytester.makeini("[pytest]\naddopts = --strict-markers -p no:cacheprovider\n")
        pytester.makepyfile(**files)
        return [f"--cache-dir={cutover_settings.cache_path}"]

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
