"""The run's life: configure it once (settings, plan, answers, run state), clean up whatever happens.

Setup errors here are usage errors (exit 4, one line): a bad plan or answers file must stop the run
before any database is touched.
"""

from __future__ import annotations

import atexit
import signal
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import pytest

from cutover.core import evidence
from cutover.core.errors import CutoverError
from cutover.core.plan import load_plan
from cutover.core.redact import redact, split_password
from cutover.sandbox.server import release
from cutover.suite import pytest_options, selection, summary, under_check, verdicts, window, workers
from cutover.suite.catalogue import A5_CONTENT, A20_ACTIVE, REHEARSAL_PROOFS, ROLLBACK, SET_B, Catalogue
from cutover.suite.manual import answers
from cutover.suite.manual.assists import AssistConfig
from cutover.suite.state import ANSWERS, CATALOGUE, PLAN, RUN, SELECTED, SELECTION, SETTINGS, SHARED_DIR, RunState

MARKERS = (  # setA, setB, sql, manual and rehearsal are added to each check's tests from the catalogue
    "setA: dev-branch rehearsal check (runbook Set A)",
    "setB: production-window check (runbook Set B): read-only, database only",
    "sql: automated SQL check",
    "manual: operator-executed check (prompt fixture)",
    f"rehearsal: rehearsal-only check ({A20_ACTIVE.id} writes; {A5_CONTENT.id} and {ROLLBACK.id} compare with the "
    "snapshot)",
    "check(id): the smoke-matrix check id, e.g. check('A3'); its sets and kind come from the catalogue",
    "sandbox: needs the throwaway sandbox (never runs against --db-url)",
)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (CI cancelling a job) takes the same cleanup path as Ctrl-C."""
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--answers-template FILE`` writes the file to fill in and ends the run: nothing else happens."""
    config.stash[SETTINGS] = settings = pytest_options.resolve(config)  # resolved once: configure reuses it
    if settings.answers_template is None:
        return None
    path = Path(settings.answers_template)
    if path.exists():
        raise pytest.UsageError(f"--answers-template {path} exists; refusing to overwrite it (pick a new name)")
    try:
        path.write_text(answers.template(load_plan(settings.plan_path), answers.rehearsal_identity(settings)))
    except (CutoverError, OSError) as exc:
        raise pytest.UsageError(f"--answers-template {path}: {exc}") from None
    print(f"cutover: wrote the answers template {path}: fill it in, then pass --answers={path}")
    return 0


def selected(config: pytest.Config) -> selection.Selection:
    """What the run's ``-m`` expression selects of the catalogue, evaluated once (pytest's own parser)."""
    found = config.stash.get(SELECTION, None)
    if found is None:
        try:
            found = selection.select(str(config.option.markexpr or ""), config.stash[CATALOGUE])
        except SyntaxError as exc:  # pytest would say the same, later and after a sandbox started
            raise pytest.UsageError(f"Wrong expression passed to '-m': {config.option.markexpr}: {exc}") from None
        config.stash[SELECTION] = found
    return found


def _artifacts_wanted(config: pytest.Config) -> bool:
    """Operator runs (the checks, the rehearsal, the go/no-go) leave an operator log; the project's own
    tests (``pytest tests``, no expression selecting a check) do not."""
    if config.option.collectonly:  # listing tests is not a run: artifacts/latest keeps the last real one
        return False
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        return True
    chosen = selected(config)
    return bool(config.option.markexpr) and (bool(chosen.checks) or chosen.prereq)


def run_kind(config: pytest.Config) -> str | None:
    """Which verdict this run owes: Set B's, step 5a's, the rehearsal's (any other selection of checks),
    or none (the project's own tests, listing with ``--co``, the go/no-go, which owns WINDOW GO)."""
    if not _artifacts_wanted(config):
        return None
    return selection.kind(selected(config), config.stash[CATALOGUE])


def _reads_only(config: pytest.Config) -> str | None:
    """The run that must never write, named for its refusal of --rehearse: the go/no-go or Set B."""
    if selected(config).prereq:
        return "the go/no-go (-m prereq)"
    return "Set B (-m setB)" if run_kind(config) == verdicts.SET_B else None


def _expected(kind: str | None, catalogue: Catalogue) -> tuple[str, ...]:
    """The checks the verdict waits for: all 21 (a rehearsal), Set B's 8 or step 5a's 12. ``--check``
    narrows what runs, never this: the checks it leaves out are "not run", so a selection is never a pass."""
    if kind == verdicts.STEP_5A:
        wanted = selection.step_5a(catalogue)
        return tuple(c.id for c in catalogue if c.id in wanted and catalogue.applicable(c.id))
    return tuple(c.id for c in catalogue.counted(SET_B if kind == verdicts.SET_B else None))


def _not_applicable(kind: str | None, catalogue: Catalogue) -> dict[str, str]:
    """The checks this kind of run would wait for but the plan declares without a subject, with the reason."""
    if kind is None:
        return {}
    wanted = (selection.step_5a(catalogue) if kind == verdicts.STEP_5A
              else {c.id for c in catalogue if SET_B in c.sets} if kind == verdicts.SET_B else None)
    return {c: why for c, why in catalogue.not_applicable.items() if wanted is None or c in wanted}


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """Every run names its target first: an operator in the window sees at once which database it is."""
    kind = run_kind(config) if SETTINGS in config.stash else None
    if kind is None:
        return None
    run = config.stash.get(RUN, None)
    warning = [run.answers_warning] if run is not None and run.answers_warning else []
    return [under_check.describe(config.stash[SETTINGS], kind == verdicts.SET_B), *warning]


@pytest.hookimpl(tryfirst=True)  # before allure-pytest reads --alluredir
def pytest_configure(config: pytest.Config) -> None:
    pytest_options.check_rootdir(config)
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    if SETTINGS not in config.stash:  # xdist workers skip pytest_cmdline_main
        config.stash[SETTINGS] = pytest_options.resolve(config)
    settings = config.stash[SETTINGS]
    try:
        config.stash[PLAN] = plan = load_plan(settings.plan_path)
        config.stash[ANSWERS] = (answers.load_answers(Path(settings.answers), plan, window.operator_items(plan))
                                 if settings.answers else {})
        config.stash[CATALOGUE] = catalogue = Catalogue.for_plan(plan)
        config.stash[SELECTED] = catalogue.select(settings.check)  # before any database is touched
        if settings.sign_with is not None:  # a missing key found now, not after the rehearsal has run
            evidence.check_key(Path(settings.sign_with))
        if settings.db_url is not None:
            split_password(settings.db_url)  # registers the password (masked wherever it turns up); refuses junk
    except CutoverError as exc:
        raise pytest.UsageError(redact(str(exc))) from None
    pytest_options.check_write_opt_in(settings, _reads_only(config))  # what the run is comes from the catalogue
    kind = run_kind(config)
    proofs = REHEARSAL_PROOFS if kind == verdicts.REHEARSAL else ()
    config.pluginmanager.register(summary.Summary(catalogue, kind, _expected(kind, catalogue), proofs,
                                                    _not_applicable(kind, catalogue)),
                                  "cutover-summary")  # one per run, not per process
    AssistConfig.from_env()  # registers the assist tokens as secrets before anything prints
    if workers.adopt_controller_state(config):
        results = config.stash[RUN].results
        if results and config.option.allure_report_dir is None:
            config.option.allure_report_dir = results
        return
    shared = Path(tempfile.mkdtemp(prefix="cutover-run-"))
    config.stash[SHARED_DIR] = shared
    wanted = _artifacts_wanted(config)
    if wanted and config.option.allure_report_dir is None:
        config.option.allure_report_dir = str(shared / "allure-results")
    config.stash[RUN] = RunState(artifacts=wanted, stamp=datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
                                 started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                                 results=config.option.allure_report_dir if wanted else None,
                                 journal=str(shared / "journal.jsonl"))
    if wanted:  # what this rehearsal is: the journal's heading records it, an answers file is compared with it
        run = config.stash[RUN]
        try:
            run.rehearsal = answers.rehearsal_identity(settings)
        except OSError as exc:  # an unreadable --snapshot is the restore's to report, with its fix
            run.rehearsal = {"unknown": redact(str(exc))}
        if settings.answers:
            path = Path(settings.answers)
            run.answers_warning = answers.another_rehearsal(path, answers.written_for(path), run.rehearsal)
    atexit.register(release, shared)  # belt and braces: unconfigure normally does it
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller stops the shared server: workers finish at different times."""
    if not workers.is_worker(config) and SHARED_DIR in config.stash:
        release(config.stash[SHARED_DIR])
