"""The pytest plugin: options, markers and fixtures. It only wires; the work lives in the modules.

Loaded by the root conftest.py. Setup errors end the run at once with exit code 2 and one line
(``pytest.exit``): a maintenance window has no use for 21 identical setup tracebacks.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import signal
import tempfile
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import pytest

from cutover.core import options as cfg
from cutover.core.errors import EXIT_USAGE, CutoverError
from cutover.core.plan import Plan, load_plan
from cutover.core.redact import redact, split_password
from cutover.sandbox.backends import SandboxSpec, ServerInfo
from cutover.sandbox.server import SessionSandbox, release
from cutover.suite import allure_out as reporting
from cutover.suite import oplog, screen, window
from cutover.suite import rehearsal as rehearsals
from cutover.suite import target as targets
from cutover.suite.checks.sql import TITLES, Checker
from cutover.suite.manual import answers as prompts
from cutover.suite.manual.assists import AssistConfig

# The go/no-go's hooks and fixtures (pytest -m prereq), loaded with this plugin.
pytest_plugins = ("cutover.suite.window_plugin",)

SETTINGS = pytest.StashKey[cfg.Settings]()
PLAN = pytest.StashKey[Plan]()
SHARED_DIR = pytest.StashKey[Path]()
ANSWERS = pytest.StashKey[dict[str, tuple[str, str, str | None]]]()
RUN = pytest.StashKey[dict[str, Any]]()

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
    screen.mask_argument_errors(parser)


pytest_collection = screen.pytest_collection


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


def _settings(config: pytest.Config) -> cfg.Settings:
    cli = {o.name: config.getoption(f"cutover_{o.name}") for o in cfg.OPTIONS}
    ini = {o.name: config.getini(o.ini) for o in cfg.OPTIONS}
    try:
        return cfg.resolve(cli, ini)
    except CutoverError as exc:
        raise pytest.UsageError(redact(str(exc))) from None


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--answers-template FILE`` writes the file to fill in and ends the run: nothing else happens."""
    config.stash[SETTINGS] = settings = _settings(config)  # resolved once: configure reuses it
    if settings.answers_template is None:
        return None
    path = Path(settings.answers_template)
    if path.exists():
        raise pytest.UsageError(f"--answers-template {path} exists; refusing to overwrite it (pick a new name)")
    try:
        path.write_text(prompts.template(load_plan(settings.plan_path)))
    except (CutoverError, OSError) as exc:
        raise pytest.UsageError(f"--answers-template {path}: {exc}") from None
    print(f"cutover: wrote the answers template {path}: fill it in, then pass --answers={path}")
    return 0


def _artifacts_wanted(config: pytest.Config) -> bool:
    """Operator runs (the checks, the rehearsal) leave an operator log; the project's own tests do not."""
    markexpr = str(config.option.markexpr or "")
    if config.option.collectonly:  # listing tests is not a run: artifacts/latest keeps the last real one
        return False
    return (config.args_source == pytest.Config.ArgsSource.TESTPATHS
            or any(word in markexpr for word in ("setA", "setB", "manual", "prereq")))


@pytest.hookimpl(tryfirst=True)  # before allure-pytest reads --alluredir
def pytest_configure(config: pytest.Config) -> None:
    _check_rootdir(config)
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    if SETTINGS not in config.stash:  # xdist workers skip pytest_cmdline_main
        config.stash[SETTINGS] = _settings(config)
    settings = config.stash[SETTINGS]
    try:
        config.stash[PLAN] = plan = load_plan(settings.plan_path)
        config.stash[ANSWERS] = (prompts.load_answers(Path(settings.answers), plan, window.operator_items(plan))
                                 if settings.answers else {})
    except CutoverError as exc:
        raise pytest.UsageError(redact(str(exc))) from None
    titles = {c: m.title for c, m in plan.manual.items()}
    config.pluginmanager.register(reporting.Summary(titles), "cutover-summary")  # one per run, not per process
    AssistConfig.from_env()  # registers the assist tokens as secrets before anything prints
    if settings.db_url is not None:
        split_password(settings.db_url)  # registers the password: masked wherever it turns up
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        config.stash[SHARED_DIR] = Path(workerinput["cutover_shared_dir"])
        config.stash[RUN] = dict(workerinput["cutover_run"])
        if config.stash[RUN]["results"] and config.option.allure_report_dir is None:
            config.option.allure_report_dir = config.stash[RUN]["results"]
        return
    shared = Path(tempfile.mkdtemp(prefix="cutover-run-"))
    config.stash[SHARED_DIR] = shared
    wanted = _artifacts_wanted(config)
    if wanted and config.option.allure_report_dir is None:
        config.option.allure_report_dir = str(shared / "allure-results")
    config.stash[RUN] = {"artifacts": wanted, "stamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
                         "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                         "results": config.option.allure_report_dir if wanted else None,
                         "journal": str(shared / "journal.jsonl")}
    atexit.register(release, shared)  # belt and braces: unconfigure normally does it
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller → worker: where the shared server is described, and who owns it."""
    node.workerinput["cutover_shared_dir"] = str(node.config.stash[SHARED_DIR])
    node.workerinput["cutover_owner_pid"] = os.getpid()
    node.workerinput["cutover_run"] = node.config.stash[RUN]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The controller writes the operator log and the Allure report, also after a failed run."""
    config = session.config
    if getattr(config, "workerinput", None) is not None or RUN not in config.stash:
        return
    run = config.stash[RUN]
    if not run["artifacts"]:
        return
    settings, shared = config.stash[SETTINGS], config.stash[SHARED_DIR]
    summary = config.pluginmanager.get_plugin("cutover-summary")
    try:
        out = oplog.operator_log(settings, config.stash[PLAN], shared, run, summary, int(exitstatus),
                                     " ".join(["pytest", *config.invocation_params.args]))
    except Exception as exc:  # the log must never turn a result into a crash; say why it is missing
        run["log_error"] = f"operator log not written: {type(exc).__name__}: {redact(str(exc))}"
        return
    run["log"] = str(out)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash.get(RUN, {})
    if run.get("log"):
        terminalreporter.write_line(f"operator log: {run['log']}/operator-log.md (artifacts/latest)")
    elif run.get("log_error"):
        terminalreporter.write_line(run["log_error"], red=True)


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
    plan = metafunc.config.stash[PLAN]
    if "patient_table" in wanted:
        metafunc.parametrize("patient_table", [t.name for t in plan.moving], ids=str)
    if "owned_table" in wanted:
        metafunc.parametrize("owned_table", [t.name for t in plan.tables if t.owner != "patient"], ids=str)
    if "reference" in wanted:
        labels = [f"{t.name}.{r.column}" for t in plan.tables for r in t.references]
        metafunc.parametrize("reference", labels, ids=str)


def _check_id(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("check")
    if marker is None or not marker.args:
        return None
    raw = str(marker.args[0]).strip()
    return raw[:1].upper() + raw[1:]  # "a3" → "A3", "A20-active" stays as the runbook spells it


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--check A3,A7`` keeps only those checks; every check's id travels with its reports (xdist too)."""
    wanted = config.stash[SETTINGS].check_ids
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        check = _check_id(item)
        if check is not None:
            item.user_properties.append(("cutover_check", check))
        (keep if not wanted or (check or "").upper() in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    # The runbook's order, whatever the file names: SQL checks (5a), manual checks (5b), then
    # A20-active, which writes and so must come after every check that reads what it touches.
    items.sort(key=lambda item: 2 if _check_id(item) == "A20-active" else (1 if item.get_closest_marker("manual")
                                                                            else 0))


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
def cutover_plan(pytestconfig: pytest.Config) -> Plan:
    """The validated plan file (loaded once, at configure: a bad plan is a usage error)."""
    return pytestconfig.stash[PLAN]


@pytest.fixture(scope="session")
def cutover_sandbox(pytestconfig: pytest.Config, cutover_settings: cfg.Settings, cutover_plan: Plan) -> SessionSandbox:
    """The session's sandbox provider (server, template, clones), shared across xdist workers."""
    workerinput = getattr(pytestconfig, "workerinput", None)
    worker = workerinput["workerid"] if workerinput else "main"
    owner = int(workerinput["cutover_owner_pid"]) if workerinput else os.getpid()
    return SessionSandbox(SandboxSpec.of(cutover_settings), cutover_plan, pytestconfig.stash[SHARED_DIR], worker, owner,
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
                   cutover_plan: Plan) -> targets.Target:
    """The database under check: --db-url untouched, else the rehearsal's (restore, dry run, execute)."""
    try:
        if cutover_settings.db_url is not None and not cutover_settings.rehearse:
            return targets.adopt(cutover_settings)
        provider: SessionSandbox = request.getfixturevalue("cutover_sandbox")
        if cutover_settings.db_url is None:
            request.getfixturevalue("cutover_server")
        run = pytestconfig.stash[RUN]
        shared = pytestconfig.stash[SHARED_DIR]
        reports_dir = Path(cutover_settings.artifacts_dir) / run["stamp"] if run["artifacts"] else shared
        target, _ = rehearsals.shared(provider, cutover_plan, cutover_settings, shared, _progress(pytestconfig),
                                      reports_dir)
    except CutoverError as exc:
        _fail_setup(exc)
    return target  # one per run, on the run's sandbox: it goes when the sandbox stops


@pytest.fixture(scope="session")
def cutover_rehearsal(pytestconfig: pytest.Config, cutover_target: targets.Target) -> rehearsals.Record | None:
    """The rehearsal's record (timeline, captured values); None when the target was only adopted."""
    return rehearsals.load_record(pytestconfig.stash[SHARED_DIR])


@pytest.fixture(scope="session")
def assist_config() -> AssistConfig:
    """The assists' URLs and tokens, from the environment."""
    return AssistConfig.from_env()


@pytest.fixture(scope="session")
def manual_values(cutover_target: targets.Target, cutover_plan: Plan, cutover_rehearsal: rehearsals.Record | None,
                  assist_config: AssistConfig) -> dict[str, str]:
    """The real values the manual checks' steps name (moved ids, the captured key, the URLs)."""
    return {**rehearsals.manual_values(cutover_target.url, cutover_plan, cutover_rehearsal), **assist_config.urls()}


@contextlib.contextmanager
def _terminal(capman: Any) -> Iterator[None]:
    """Hand the real terminal to the prompt: stdin too (as pdb does), not only the output."""
    if capman is None:
        yield
        return
    capman.suspend_fixture()
    capman.suspend_global_capture(in_=True)
    try:
        yield
    finally:
        capman.resume_global_capture()
        capman.resume_fixture()


@pytest.fixture
def manual_check(request: pytest.FixtureRequest, pytestconfig: pytest.Config, cutover_plan: Plan,
                 cutover_settings: cfg.Settings, manual_values: dict[str, str]) -> Callable[..., None]:
    """Call it (with an assist's finding, if any) to show the steps, get the answer and record it."""
    check = cutover_plan.manual[_check_id(request.node) or ""]
    instructions = prompts.fill(check, manual_values)
    capman = pytestconfig.pluginmanager.get_plugin("capturemanager")
    suspend = functools.partial(_terminal, capman)
    journal = prompts.Journal(Path(pytestconfig.stash[RUN]["journal"]))

    def confirm(found: Any = None) -> None:
        if found is not None:
            reporting.assist(found)
        answer, why = prompts.resolve(
            check, instructions, found.line() if found is not None else None, pytestconfig.stash[ANSWERS],
            cutover_settings.operator_name, getattr(pytestconfig, "workerinput", None) is not None,
            suspend, journal)
        reporting.manual(check.check, instructions, answer, why)

    return confirm


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
