"""What several test modules need, in one place, so that no test module imports another.

Running the cutover as an operator does and fingerprinting a database; the operator-facing test files
an example project runs; the 12 checks on a database; reference databases; and the machine's real
Docker engine and PostgreSQL processes, which the example projects hide or outlive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from cutover.core import audit, db
from cutover.core.errors import SetupError
from cutover.core.options import Settings
from cutover.core.plan import Plan, table_sql
from cutover.core.progress import Log, quiet
from cutover.core.row_keys import CutoverReport
from cutover.reference import engine, reports
from cutover.sandbox import snapshot
from cutover.sandbox.backends import ServerInfo
from cutover.sandbox.server import SessionSandbox
from cutover.suite.catalogue import AUTOMATED, Catalogue
from cutover.suite.checks.base import Checker
from cutover.suite.under_check import DatabaseUnderCheck, check_connection

ROOT = Path(__file__).resolve().parent.parent

# -- the cutover as an operator runs it ----------------------------------------------------------------


def run_cutover(url: str, *args: str, actor: str | None = "test:pytest", extra_env: dict[str, str] | None = None,
                script: bool = False, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``cutover ARGS`` (or the runbook script) with DATABASE_URL and CUTOVER_ACTOR in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    env["DATABASE_URL"] = url
    if actor is not None:
        env["CUTOVER_ACTOR"] = actor
    env.update(extra_env or {})
    argv = ([sys.executable, str(ROOT / "scripts" / "cutover_patient_tenant.py")] if script
            else [sys.executable, *_command(env)])
    return subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False,
                          cwd=ROOT)


# Set in extra_env, they run the command through tests/pausing_cutover.py: held after that step, or
# with an audit part of that many bytes.
PAUSE_ENV = "CUTOVER_TEST_PAUSE_AFTER_STEP"
PART_BYTES_ENV = "CUTOVER_TEST_AUDIT_PART_BYTES"
SIGINT_AFTER_COMMIT_ENV = "CUTOVER_TEST_SIGINT_AFTER_COMMIT"


def _command(env: dict[str, str]) -> list[str]:
    hooked = PAUSE_ENV in env or PART_BYTES_ENV in env or SIGINT_AFTER_COMMIT_ENV in env
    return [str(ROOT / "tests" / "pausing_cutover.py")] if hooked else ["-m", "cutover.cli"]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def spawn_cutover(url: str, *args: str, extra_env: dict[str, str] | None = None,
                  sigint_ignored: bool = False) -> subprocess.Popen[str]:
    """``cutover ARGS`` running in the background. ``sigint_ignored``: started the way a script's
    background job (``cmd &`` without job control: CI steps, ``scripts/test &``) starts it, with
    SIGINT ignored, which Python then leaves ignored instead of raising KeyboardInterrupt."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    env.update(DATABASE_URL=url, CUTOVER_ACTOR="test:pytest", **(extra_env or {}))
    return subprocess.Popen([sys.executable, *_command(env), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=_ignore_sigint if sigint_ignored else None)


def ssh_signer(directory: Path, principal: str) -> tuple[Path, str]:
    """A throwaway ed25519 key (no passphrase) and its allowed-signers line, as an operator makes them."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / principal.replace("@", "_at_")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(key)], check=True,
                   capture_output=True, timeout=60)
    return key, f"{principal} {Path(f'{key}.pub').read_text().strip()}\n"


def machine_python() -> str:
    """The interpreter the venv was made from: the project's dependencies are not installed there."""
    python = str(getattr(sys, "_base_executable", "") or "python3")
    probe = subprocess.run([python, "-c", "import psycopg"], capture_output=True, check=False)
    assert probe.returncode != 0, f"{python} can import psycopg: this test needs a python without the project"
    return python


def executed(url: str, plan: Plan, actor: str, timeouts: engine.Timeouts | None = None,
             progress: engine.Progress | None = None) -> CutoverReport:
    """The reference execute run in-process, its ids spooled as the command spools them; its report
    with the allow-list as the database's audit parts record it (what a rebuilt report reads; no
    report file is written here). Raises :class:`engine.RunFailed` as the execute does."""
    bounds = engine.Timeouts() if timeouts is None else timeouts
    with engine.private_spool() as spool:
        report, _ = (engine.execute(url, plan, actor, bounds, spool=spool) if progress is None
                     else engine.execute(url, plan, actor, bounds, progress, spool=spool))
    with db.connection(url, read_only=True) as conn:
        _, ids = reports.rebuild(conn, plan, report["run_id"])
        report["allow_list"] = {table: [json.loads(key) for key in keys] for table, keys in ids.items()}
    return report


# -- a database's content ----------------------------------------------------------------------------------


def checksum(url: str, plan: Plan, *, include_audit: bool = False) -> dict[str, str]:
    """An md5 over every row of every table (ordered by key); the cutover's own audit rows optionally left out."""
    out = {}
    with db.connection(url, read_only=True) as conn:
        for table in plan.all_tables:
            where = sql.SQL("TRUE") if include_audit else audit.own_events(plan, table)
            row = conn.execute(sql.SQL("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                                       "FROM {} t WHERE {}").format(table_sql(table), where)).fetchone()
            assert row is not None
            out[table] = str(row[0])
    return out


def scalar(url: str, query: Any, params: Any = None) -> Any:
    with db.connection(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def execute_sql(url: str, *statements: Any) -> None:
    with db.connection(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def reference_database(server: ServerInfo, plan: Plan, scale: float, seed: int, prefix: str = "seed",
                       model: snapshot.Model = snapshot.REFERENCE) -> str:
    """A new database on ``server`` generated from the reference model (or ``model``; roles and grants as
    a restore leaves them); the caller drops it."""
    url = db.create_database(server.admin_url, f"{prefix}_{uuid.uuid4().hex[:8]}")
    snapshot.seed_database(url, plan, scale, seed, model=model)
    return url


# -- the checks ----------------------------------------------------------------------------------------------


def failing_evidence(target: DatabaseUnderCheck, plan: Plan, settings: Settings, report: Any = None,
                     only: tuple[str, ...] = ()) -> dict[str, str]:
    """Every one of the 12 checks (or ``only`` these) the plan makes applicable, on ``target``; the failing
    ones' ids with their evidence text."""
    conn = check_connection(target.url, settings, plan)
    applicable = Catalogue.for_plan(plan).applicable
    try:
        c = Checker(conn, plan, target.report if report is None else report)
        results = [check.evaluate(c, *subject) for check in AUTOMATED
                   if applicable(check.id) and (not only or check.id in only)
                   for subject in ([[s] for s in check.subjects(plan)] if check.per else [[]])]
        for ev in results:
            assert ev.ok or (ev.queries or ev.problems), "a failing check must carry evidence"
        failed: dict[str, str] = {}
        for ev in results:
            if not ev.ok:
                failed[ev.check] = "\n".join(filter(None, [failed.get(ev.check), ev.text()]))
        return failed
    finally:
        conn.close()


def run_checks(target: DatabaseUnderCheck, plan: Plan, settings: Settings, report: Any = None,
               only: tuple[str, ...] = ()) -> set[str]:
    """The ids of the checks that fail on ``target``."""
    return set(failing_evidence(target, plan, settings, report, only))


# -- example projects: the operator-facing tests, and what a run leaves ------------------------------------

# Each operator-facing test file under the module name an example project gives it.
OPERATOR_TESTS = {
    "test_matrix": "smoke/test_matrix.py",
    "test_restore": "smoke/test_restore.py",
    "test_prereq": "smoke/test_prereq.py",
    "test_manual": "rehearsal/test_manual.py",
    "test_sweep_active": "rehearsal/test_sweep_active.py",
    "test_rollback": "rehearsal/test_rollback.py",
}


def operator_tests(*names: str) -> dict[str, str]:
    """The named operator-facing test files' text, as ``example(**operator_tests(...))`` writes them."""
    return {name: (ROOT / OPERATOR_TESTS[name]).read_text() for name in names}


# What a rehearsal runs: Set A, the manual checks, A20-active (the sweep of a synthetic straggler), and
# its proofs: nothing but the tenant changed (A5-content), the rollback rehearsed.
REHEARSAL = operator_tests("test_matrix", "test_manual", "test_sweep_active", "test_rollback")


def rehearse_on(url: str) -> list[str]:
    """The command line of a rehearsal that writes to ``url``: --db-url and the --rehearse=DBNAME naming it."""
    return [f"--db-url={url}", f"--rehearse={db.database_name(url)}"]


def operator_log(base: Path) -> dict[str, Any]:
    """The operator log of the last run in the example project at ``base``."""
    latest = base / "artifacts" / "latest"
    assert latest.is_symlink(), "artifacts/latest is missing"
    return dict(json.loads((latest / "operator-log.json").read_text()))


# Written into an example project: ``record(cutover_server, cutover_db)`` leaves, per process, what the
# sandbox was in `{out}` (a directory), for :func:`recorded` to read back after the run.
RECORD = """
import json, os, pathlib
def record(server, db_url=None, name="info"):
    out = pathlib.Path({out!r})
    out.mkdir(exist_ok=True)
    (out / f"{{name}}-{{os.getpid()}}.json").write_text(json.dumps(
        {{"base_dir": server.base_dir, "container_id": server.container_id, "backend": server.backend,
          "db": db_url}}))
"""

# An example test that records its sandbox, then sleeps until the test interrupts the run.
RECORD_THEN_WAIT = """
import time
def test_slow(cutover_server, cutover_db):
    record(cutover_server, cutover_db)
    time.sleep(120)
"""


def recorded(out: Path) -> list[dict[str, str]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def run_until_recorded(cwd: Path, out: Path, args: list[str], timeout: float) -> tuple[subprocess.Popen[bytes],
                                                                                      dict[str, str]]:
    """Start ``pytest args`` in ``cwd`` and wait until its example test has recorded its sandbox.

    A job started in the background (`cmd &`, nohup, some CI runners) inherits SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler: the child gets the terminal's default back, so
    a test can interrupt it as an operator's Ctrl-C would."""
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + timeout
    while not recorded(out) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    (info,) = recorded(out)
    return proc, info


# -- the machine's Docker engine and PostgreSQL processes ------------------------------------------------

# Taken when the tests are collected, before an example project points DOCKER_HOST at a dead socket.
REAL_DOCKER_HOST = os.environ.get("DOCKER_HOST")
POSTGRES_TOOLS = {"psql", "initdb", "postgres", "postmaster", "createdb", "dropdb", "createuser", "dropuser",
                  "clusterdb", "reindexdb", "vacuumdb", "ecpg", "pgbench", "oid2name", "vacuumlo"}


def use_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give an example project the machine's real Docker engine back."""
    if REAL_DOCKER_HOST is None:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    else:
        monkeypatch.setenv("DOCKER_HOST", REAL_DOCKER_HOST)


def docker_client() -> Any:
    """The real engine, also inside an example test (where DOCKER_HOST names a dead socket)."""
    import docker

    if REAL_DOCKER_HOST is not None:
        return docker.DockerClient(base_url=REAL_DOCKER_HOST, timeout=30)
    return docker.from_env(timeout=30)


def host_path_without_postgres(shim: Path) -> str:
    """A PATH with every command of the current one except PostgreSQL's: a machine with Docker only."""
    shim.mkdir(parents=True, exist_ok=True)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or "postgresql" in directory or not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            name = entry.name
            if name in POSTGRES_TOOLS or name.startswith("pg_") or (shim / name).exists():
                continue
            if os.access(entry, os.X_OK) and not entry.is_dir():
                (shim / name).symlink_to(entry.resolve() if entry.is_symlink() else entry)
    return str(shim)


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


def cut_over_clone(provider: SessionSandbox, plan: Plan, settings: Settings, workdir: Path, label: str,
                   log: Log = quiet) -> DatabaseUnderCheck:
    """A clone of the restored snapshot with the reference cutover executed on it."""
    url = provider.clone(label)
    path = workdir / f"cutover_report_{label}_{os.getpid()}.json"
    with engine.private_spool() as spool:
        try:
            report, id_files = engine.execute(url, plan, f"rehearsal:{label}",
                                              engine.Timeouts(settings.lock_timeout, settings.statement_timeout),
                                              spool=spool)
        except engine.RunFailed as exc:
            provider.drop(url)
            raise SetupError(f"the reference cutover failed on the sandbox target: {exc}") from None
        reports.write(path, report, id_files)
    log(f"cutover: reference cutover committed on the sandbox target in {report['duration_s']:.2f} s "
        f"({sum(report['moved'].values())} rows); report {path}")
    return DatabaseUnderCheck(url, json.loads(path.read_text()), path, sandbox=True)
