"""The pytest plugin: options, markers and fixtures. It only wires; the work lives in the modules.

Loaded by the root conftest.py. Setup errors end the run at once with exit code 2 and one line
(``pytest.exit``): a maintenance window has no use for 21 identical setup tracebacks.
"""

from __future__ import annotations

import atexit
import os
import signal
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import pytest

from cutover import config as cfg
from cutover import reporting
from cutover import target as targets
from cutover.checks import TITLES, Checker
from cutover.errors import EXIT_USAGE, CutoverError
from cutover.plan import Plan, load_plan
from cutover.provider import SessionSandbox, release
from cutover.redact import redact, split_password
from cutover.sandbox import ServerInfo

SETTINGS = pytest.StashKey[cfg.Settings]()
SHARED_DIR = pytest.StashKey[Path]()

MARKERS = (
    "setA: dev-branch rehearsal check (runbook Set A)",
    "setB: production-window check (runbook Set B): read-only, database only",
    "sql: automated SQL check",
    "manual: operator-executed check (prompt fixture)",
    "check(id): the smoke-matrix check id, e.g. check('A3')",
    "sandbox: needs the throwaway sandbox (never runs against --db-url)",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cutover", "Phase 2a patient tenant cutover suite")
    cfg.add_to_parser(group.addoption, parser.addini)


def _fail_setup(exc: CutoverError) -> NoReturn:
    pytest.exit(f"cutover: error: {redact(str(exc))}", returncode=EXIT_USAGE)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (CI cancelling a job) takes the same cleanup path as Ctrl-C."""
    raise KeyboardInterrupt(f"signal {signum}")


def _check_rootdir(config: pytest.Config) -> None:
    """pytest looks for its ini before it knows our options, so ``--report-path /abs/r.json`` makes it
    treat the file as a test path, miss pytest.ini (markers, testpaths, addopts) and collect the wrong
    tests. Say so instead of running a half-configured suite in a maintenance window."""
    here = config.invocation_params.dir
    if config.inipath is None and (here / "pytest.ini").is_file() and (here / "conftest.py").is_file():
        raise pytest.UsageError(
            f"pytest did not read {here / 'pytest.ini'} (rootdir became {config.rootpath}): an option's value "
            "was taken for a test path; write path options with '=', e.g. --report-path=/tmp/r.json")


def pytest_configure(config: pytest.Config) -> None:
    _check_rootdir(config)
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    config.pluginmanager.register(reporting.Summary(), "cutover-summary")  # one per run, not per process
    cli = {o.name: config.getoption(f"cutover_{o.name}") for o in cfg.OPTIONS}
    ini = {o.name: config.getini(o.ini) for o in cfg.OPTIONS}
    try:
        config.stash[SETTINGS] = cfg.resolve(cli, ini)
    except CutoverError as exc:
        raise pytest.UsageError(redact(str(exc))) from None
    db_url = config.stash[SETTINGS].db_url
    if db_url is not None:
        split_password(db_url)  # registers the password: masked wherever it turns up
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        config.stash[SHARED_DIR] = Path(workerinput["cutover_shared_dir"])
        return
    shared = Path(tempfile.mkdtemp(prefix="cutover-run-"))
    config.stash[SHARED_DIR] = shared
    atexit.register(release, shared)  # belt and braces: unconfigure normally does it
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller → worker: where the shared server is described, and who owns it."""
    node.workerinput["cutover_shared_dir"] = str(node.config.stash[SHARED_DIR])
    node.workerinput["cutover_owner_pid"] = os.getpid()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Redact every report: pytest prints a failing test's arguments, and a --db-url carries a password.

    Done here, once, rather than in each fixture's repr, so that assertion messages, captured output
    and locals (``-l``) are covered too, whatever a check puts in them.
    """
    report: pytest.TestReport = yield
    if report.longrepr is not None:
        text = str(report.longrepr)
        clean = redact(text)
        if clean != text:
            report.longrepr = clean
    report.sections = [(title, redact(content)) for title, content in report.sections]
    return report


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Per-table checks get one test per table (or reference) of the plan, named in the test id."""
    wanted = {"patient_table", "owned_table", "reference"} & set(metafunc.fixturenames)
    if not wanted:
        return
    try:
        plan = load_plan(metafunc.config.stash[SETTINGS].plan_path)
    except CutoverError as exc:
        raise pytest.UsageError(str(exc)) from None
    if "patient_table" in wanted:
        metafunc.parametrize("patient_table", [t.name for t in plan.moving], ids=str)
    if "owned_table" in wanted:
        metafunc.parametrize("owned_table", [t.name for t in plan.tables if t.owner != "patient"], ids=str)
    if "reference" in wanted:
        labels = [f"{t.name}.{r.column}" for t in plan.tables for r in t.references]
        metafunc.parametrize("reference", labels, ids=str)


def _check_id(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("check")
    return str(marker.args[0]).upper() if marker is not None and marker.args else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--check A3,A7`` keeps only those checks; every check's id travels with its reports (xdist too)."""
    wanted = config.stash[SETTINGS].check_ids
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        check = _check_id(item)
        if check is not None:
            item.user_properties.append(("cutover_check", check))
        (keep if not wanted or check in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_unconfigure(config: pytest.Config) -> None:
    if getattr(config, "workerinput", None) is None and SHARED_DIR in config.stash:
        release(config.stash[SHARED_DIR])


def _progress(config: pytest.Config) -> Callable[[str], None]:
    """Progress lines on the terminal even while output is captured (restores take a while)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        if reporter is None or capman is None:
            return
        with capman.global_and_fixture_disabled():
            reporter.write_line(redact(line))

    return write


@pytest.fixture(scope="session")
def cutover_settings(pytestconfig: pytest.Config) -> cfg.Settings:
    """The resolved configuration of this run."""
    return pytestconfig.stash[SETTINGS]


@pytest.fixture(scope="session")
def cutover_plan(cutover_settings: cfg.Settings) -> Plan:
    """The validated plan file."""
    try:
        return load_plan(cutover_settings.plan_path)
    except CutoverError as exc:
        _fail_setup(exc)


@pytest.fixture(scope="session")
def cutover_sandbox(pytestconfig: pytest.Config, cutover_settings: cfg.Settings, cutover_plan: Plan) -> SessionSandbox:
    """The session's sandbox provider (server, template, clones), shared across xdist workers."""
    workerinput = getattr(pytestconfig, "workerinput", None)
    worker = workerinput["workerid"] if workerinput else "main"
    owner = int(workerinput["cutover_owner_pid"]) if workerinput else os.getpid()
    return SessionSandbox(cutover_settings, cutover_plan, pytestconfig.stash[SHARED_DIR], worker, owner,
                          _progress(pytestconfig))


@pytest.fixture(scope="session")
def cutover_server(cutover_sandbox: SessionSandbox) -> ServerInfo:
    """The running server (a --db-url server is adopted, never modified)."""
    try:
        return cutover_sandbox.server()
    except CutoverError as exc:
        _fail_setup(exc)


@pytest.fixture(scope="session")
def cutover_db(cutover_sandbox: SessionSandbox, cutover_server: ServerInfo) -> Iterator[str]:
    """URL of the database under check: --db-url as given, else a sandbox clone of the restored snapshot."""
    if cutover_server.backend == "url":
        yield cutover_server.admin_url
        return
    yield from _clone(cutover_sandbox, "target")


@pytest.fixture
def fresh_db(cutover_sandbox: SessionSandbox, cutover_server: ServerInfo) -> Iterator[str]:
    """A private clone of the restored snapshot for one test; dropped afterwards."""
    if cutover_server.backend == "url":
        pytest.skip("needs a sandbox: a --db-url target is never cloned or written")
    yield from _clone(cutover_sandbox, "t")


def _clone(provider: SessionSandbox, label: str) -> Iterator[str]:
    """Yield a template clone's URL, dropping it afterwards; setup errors end the run."""
    try:
        url = provider.clone(label)
    except CutoverError as exc:
        _fail_setup(exc)
    yield url
    provider.drop(url)


@pytest.fixture(scope="session")
def cutover_target(request: pytest.FixtureRequest, pytestconfig: pytest.Config, cutover_settings: cfg.Settings,
                   cutover_plan: Plan) -> Iterator[targets.Target]:
    """The database under check: --db-url untouched, else a sandbox clone with the reference cutover run."""
    try:
        if cutover_settings.db_url is not None:
            yield targets.adopt(cutover_settings)
            return
        provider: SessionSandbox = request.getfixturevalue("cutover_sandbox")
        request.getfixturevalue("cutover_server")
        workerinput = getattr(pytestconfig, "workerinput", None)
        label = f"cut_{workerinput['workerid']}" if workerinput else "cut"
        target = targets.cut_over_clone(provider, cutover_plan, cutover_settings, pytestconfig.stash[SHARED_DIR],
                                        label, _progress(pytestconfig))
    except CutoverError as exc:
        _fail_setup(exc)
    yield target
    provider.drop(target.url)


@pytest.fixture(scope="session")
def cutover_checker(cutover_target: targets.Target, cutover_settings: cfg.Settings,
                    cutover_plan: Plan) -> Iterator[Checker]:
    """The checks, on a read-only connection to the target."""
    try:
        conn = targets.check_connection(cutover_target.url, cutover_settings)
    except CutoverError as exc:
        _fail_setup(exc)
    yield Checker(conn, cutover_plan, cutover_target.report)
    conn.close()


@pytest.fixture(autouse=True)
def _cutover_check_label(request: pytest.FixtureRequest) -> None:
    """Name a check's test in Allure by its id and title."""
    check = _check_id(request.node)
    if check is not None:
        reporting.label(check, f"{check} {TITLES.get(check, request.node.name)}")
