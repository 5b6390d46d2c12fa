"""Fixtures and hooks for the project's own tests: example projects run through pytester, like pytest-alembic.

Plain helpers that several test modules share live in tests/support.py."""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import Phase, Verbosity, settings

from cutover.core import db
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.sandbox import backends, snapshot
from cutover.sandbox.backends import SandboxSpec, ServerInfo
from cutover.sandbox.server import SessionSandbox
from cutover.suite.under_check import DatabaseUnderCheck
from tests import billing_model
from tests.support import ROOT, cut_over_clone

# Hypothesis profiles (HYPOTHESIS_PROFILE): ci keeps every row-mix property, with a database per
# example, well under 3 minutes on 2 cores; dev explores more; stress is the long hunt (docs/hypothesis.md).
settings.register_profile("ci", max_examples=12, derandomize=True, print_blob=True)
settings.register_profile("dev", max_examples=40, print_blob=True)
settings.register_profile("stress", max_examples=2000, print_blob=True, verbosity=Verbosity.normal,
                          phases=list(Phase))
settings.register_profile("triage", max_examples=40, phases=[Phase.explicit, Phase.generate], print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")

pytest_plugins = ("cutover.suite.plugin", "pytester")

# The project's own tests assert local-cluster details (directories, processes), so this session's
# sandbox is local even where a Docker engine answers (set before the plugin resolves its settings);
# the docker tests ask for docker explicitly. Example projects: see `example`.
PINNED_LOCAL = "CUTOVER_SANDBOX" not in os.environ
os.environ.setdefault("CUTOVER_SANDBOX", "local")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: needs a Docker engine (CI requires one: CUTOVER_REQUIRE_DOCKER=1)")
    config.addinivalue_line("markers", "install: builds the wheel and installs it into a new virtualenv; slower "
                            "than the other tests, offline (`-m 'not install'` leaves it out)")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """How many docker tests ran, so CI shows the container backend was exercised (or why not)."""
    counts: dict[str, int] = {}
    reasons: set[str] = set()
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if "docker" in getattr(report, "keywords", {}) and (report.when == "call" or outcome == "skipped"
                                                                 or report.failed):
                counts[outcome] = counts.get(outcome, 0) + 1
                if outcome == "skipped" and isinstance(report.longrepr, tuple):
                    reasons.add(str(report.longrepr[2]))
    if counts:
        shown = ", ".join(f"{n} {o}" for o, n in counts.items())
        terminalreporter.write_line(f"docker tests: {shown}" + (f" ({'; '.join(sorted(reasons))})" if reasons else ""))


@pytest.fixture(scope="session")
def docker_spec(cutover_settings: Settings) -> SandboxSpec:
    """The docker backend's settings; skips (fails, when CI requires docker) where no engine answers."""
    problem = backends.docker_engine_problem()
    if problem is not None:
        if os.environ.get("CUTOVER_REQUIRE_DOCKER"):
            pytest.fail(f"CUTOVER_REQUIRE_DOCKER is set but {problem}")
        pytest.skip(f"needs a Docker engine: {problem}")
    return SandboxSpec(backend="docker", cache_path=cutover_settings.cache_path, startup_timeout=120)


@pytest.fixture(scope="session")
def docker_server(docker_spec: SandboxSpec) -> Iterator[ServerInfo]:
    info = backends.start(docker_spec)
    yield info
    backends.stop(info)


@pytest.fixture(scope="session")
def local_server(cutover_settings: Settings) -> Iterator[ServerInfo]:
    info = backends.start(SandboxSpec(backend="local", cache_path=cutover_settings.cache_path))
    yield info
    backends.stop(info)


@pytest.fixture(scope="session", params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def any_server(request: pytest.FixtureRequest) -> ServerInfo:
    """Each backend's own server in turn: behaviour that must not depend on the backend."""
    return request.getfixturevalue(f"{request.param}_server")  # type: ignore[no-any-return]

EXAMPLE_CONFTEST = 'pytest_plugins = ["cutover.suite.plugin"]\n'


@pytest.fixture
def example(pytester: pytest.Pytester, cutover_settings: Settings,
            monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """Write a small example project using the plugin; returns the args that share our snapshot cache.

    Examples run with ``--sandbox`` unset (auto) as on a machine with no Docker engine: a ``--db-url``
    example adopts its URL, the others get a local cluster. A docker test calls :func:`use_docker`.
    """

    def make(**files: str) -> list[str]:
        if PINNED_LOCAL:
            monkeypatch.delenv("CUTOVER_SANDBOX", raising=False)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{pytester.path}/no-docker-engine.sock")
        pytester.makeconftest(EXAMPLE_CONFTEST)
        pytester.makeini("[pytest]\naddopts = --strict-markers -p no:cacheprovider\n")
        pytester.makepyfile(**files)
        pinned = ROOT / "tools" / "allure" / "node_modules" / ".bin" / "allure"
        allure = [f"--allure-bin={pinned}"] if pinned.exists() else []
        return [f"--cache-dir={cutover_settings.cache_path}", *allure]

    return make


@pytest.fixture
def empty_db(cutover_server: ServerInfo) -> Iterator[str]:
    """A new, empty database on the sandbox server (restore targets must be empty)."""
    name = f"empty_{uuid.uuid4().hex[:8]}"
    url = db.create_database(cutover_server.admin_url, name)
    yield url
    db.drop_database(cutover_server.admin_url, name)


@pytest.fixture(scope="session")
def cut_over_template(cutover_sandbox: SessionSandbox, cutover_server: ServerInfo, cutover_plan: Plan,
                      cutover_settings: Settings,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseUnderCheck]:
    """A sandbox database with the reference cutover executed, to clone per test."""
    target = cut_over_clone(cutover_sandbox, cutover_plan, cutover_settings, tmp_path_factory.mktemp("cut"),
                            f"cuttpl_{uuid.uuid4().hex[:6]}")
    yield target
    cutover_sandbox.drop(target.url)


@pytest.fixture
def cut_over_db(cut_over_template: DatabaseUnderCheck, cutover_server: ServerInfo) -> Iterator[DatabaseUnderCheck]:
    """A private copy of a correctly cut-over database (and its report) for one test to break."""
    name = f"cut_{uuid.uuid4().hex[:8]}"
    url = db.create_database(cutover_server.admin_url, name, template=db.database_name(cut_over_template.url))
    yield DatabaseUnderCheck(url, copy.deepcopy(cut_over_template.report), cut_over_template.report_path, sandbox=True)
    db.drop_database(cutover_server.admin_url, name)


@pytest.fixture(scope="session")
def billing_template(cutover_server: ServerInfo) -> Iterator[str]:
    """The billing model (tests/billing_model) loaded once, into a database used only as a template."""
    name = f"billing_tpl_{uuid.uuid4().hex[:6]}"
    url = db.create_database(cutover_server.admin_url, name)
    snapshot.fill(url, billing_model.MODEL, scale=1, seed=11)
    yield url
    db.drop_database(cutover_server.admin_url, name)


@pytest.fixture
def billing_db(cutover_server: ServerInfo, billing_template: str) -> Iterator[str]:
    """A private copy of the billing model, for one test to read or change."""
    name = f"billing_{uuid.uuid4().hex[:8]}"
    url = db.create_database(cutover_server.admin_url, name, template=db.database_name(billing_template))
    yield url
    db.drop_database(cutover_server.admin_url, name)
