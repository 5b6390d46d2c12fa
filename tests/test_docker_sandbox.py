"""The docker sandbox against a real Docker engine: start, cleanup without a reaper image, fallbacks,
client tools inside the container, and the suite run on it with no host PostgreSQL on PATH."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover.core import db
from cutover.core.errors import SetupError
from cutover.core.plan import Plan
from cutover.sandbox import backends, snapshot
from cutover.sandbox.backends import SandboxSpec, ServerInfo
from tests.support import (
    RECORD,
    RECORD_THEN_WAIT,
    docker_client,
    host_path_without_postgres,
    recorded,
    run_until_recorded,
    use_docker,
)

pytestmark = pytest.mark.docker

NO_SUCH_IMAGE = "cutover-test/no-such-image:1"


def container_exists(container_id: str) -> bool:
    import docker.errors

    try:
        docker_client().containers.get(container_id)
    except docker.errors.NotFound:
        return False
    return True


def owned_by(pid: int) -> list[Any]:
    return list(docker_client().containers.list(all=True, filters={"label": f"{backends.OWNER_PID_LABEL}={pid}"}))


def test_the_container_listens_on_loopback_labelled_with_its_owner(docker_server: ServerInfo) -> None:
    container = docker_client().containers.get(docker_server.container_id)
    assert container.labels[backends.OWNER_PID_LABEL] == str(os.getpid())
    assert container.labels[backends.DOCKER_LABEL] == "1"
    bindings = container.attrs["HostConfig"]["PortBindings"]["5432/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    assert docker_server.admin_url.startswith("postgresql://postgres:")
    with db.connection(docker_server.admin_url) as conn:
        found = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                                  "('fsync', 'server_encoding', 'server_version_num')").fetchall())
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("postgres", "postgres")
    assert found["fsync"] == "off" and found["server_encoding"] == "UTF8"
    assert found["server_version_num"].startswith("15")


def test_testcontainers_runs_it_and_says_why_its_reaper_is_off(docker_spec: SandboxSpec) -> None:
    import docker.errors
    from testcontainers.core.config import testcontainers_config

    with pytest.raises(docker.errors.ImageNotFound):  # no registry answers here: the reaper's image cannot be had
        docker_client().images.get(testcontainers_config.ryuk_image)
    lines: list[str] = []
    info = backends.start(docker_spec, log=lines.append)
    try:
        labels = docker_client().containers.get(info.container_id).labels
    finally:
        backends.stop(info)
    assert labels["org.testcontainers"] == "true" and labels[backends.OWNER_PID_LABEL] == str(os.getpid())
    (line,) = [ln for ln in lines if "reaper" in ln]
    assert f"docker pull {testcontainers_config.ryuk_image}" in line and "removed by the next start" in line
    assert testcontainers_config.ryuk_disabled is True


def test_the_reaper_is_used_only_by_the_owner_and_where_its_image_is(docker_spec: SandboxSpec,
                                                                     docker_server: ServerInfo,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from testcontainers.core.config import testcontainers_config

    client = docker_client()
    stand_in = "cutover-test/reaper-stand-in:1"
    client.containers.get(docker_server.container_id).image.tag(stand_in)
    monkeypatch.setattr(testcontainers_config, "ryuk_image", stand_in)
    monkeypatch.delenv(backends.RYUK_DISABLED_ENV, raising=False)
    try:
        assert backends.reaper_problem(client, os.getpid()) is None
        worker_started = backends.reaper_problem(client, os.getpid() + 1)
        monkeypatch.setenv(backends.RYUK_DISABLED_ENV, "true")
        asked_off = backends.reaper_problem(client, os.getpid())
    finally:
        client.images.remove(stand_in)
    assert worker_started is not None and "the run's" in worker_started
    assert asked_off == f"{backends.RYUK_DISABLED_ENV} is set"


def test_stop_removes_the_container(docker_spec: SandboxSpec) -> None:
    info = backends.start(docker_spec)
    assert container_exists(str(info.container_id))
    backends.stop(info)
    backends.stop(info)  # idempotent
    assert not container_exists(str(info.container_id))


def test_a_container_whose_owner_died_is_reaped(docker_spec: SandboxSpec) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info = backends.start(docker_spec, owner_pid=dead.pid)
    assert [c.id for c in owned_by(dead.pid)] == [info.container_id]
    assert info.container_id in backends.reap_stale_containers()
    assert not container_exists(str(info.container_id))


@pytest.fixture(scope="session")
def exiting_image(docker_server: ServerInfo) -> Iterator[str]:
    """An image whose entrypoint fails at once, as a broken or mismatched image does."""
    client = docker_client()
    base = client.containers.get(docker_server.container_id).image
    holder = client.containers.create(base.id, labels={"cutover.test": "1"})
    try:
        # A tag of this process's own: two test runs on one engine must not remove each other's image.
        holder.commit(repository="cutover-test/exits", tag=str(os.getpid()),
                      changes=['ENTRYPOINT ["sh", "-c", "echo FATAL: deliberate start failure >&2; exit 3"]'])
    finally:
        holder.remove(force=True)
    yield f"cutover-test/exits:{os.getpid()}"
    client.images.remove(f"cutover-test/exits:{os.getpid()}", force=True)


def test_a_failed_start_says_why_without_waiting_and_leaves_nothing(docker_spec: SandboxSpec,
                                                                    exiting_image: str) -> None:
    spec = SandboxSpec(**{**docker_spec.__dict__, "docker_image": exiting_image, "startup_timeout": 120})
    began = time.monotonic()
    with pytest.raises(SetupError, match=r"container exited \(code 3\).*FATAL: deliberate start failure"):
        backends.start(spec)
    assert time.monotonic() - began < 60, "an exited container must not be waited on until the timeout"
    assert owned_by(os.getpid()) == [] or all(c.image.tags != [exiting_image] for c in owned_by(os.getpid()))
    assert docker_client().containers.list(all=True, filters={"ancestor": exiting_image}) == []


def test_explicit_docker_never_falls_back(docker_spec: SandboxSpec) -> None:
    spec = SandboxSpec(**{**docker_spec.__dict__, "docker_image": NO_SUCH_IMAGE})
    with pytest.raises(SetupError, match=rf"--docker-image {NO_SUCH_IMAGE} is not on this machine and could not "
                                         r"be pulled .*drop --docker-image"):
        backends.start(spec)


def test_auto_falls_back_to_local_saying_why(docker_spec: SandboxSpec) -> None:
    lines: list[str] = []
    spec = SandboxSpec(**{**docker_spec.__dict__, "backend": "auto", "docker_image": NO_SUCH_IMAGE})
    info = backends.start(spec, log=lines.append)
    try:
        assert info.backend == "local"
    finally:
        backends.stop(info)
    (line,) = [ln for ln in lines if "not using docker" in ln]
    assert NO_SUCH_IMAGE in line and "\n" not in line
    assert "sandbox: auto: no --db-url given; trying docker" in lines


def test_auto_uses_docker_when_it_can_start_a_server(docker_spec: SandboxSpec) -> None:
    info = backends.start(SandboxSpec(**{**docker_spec.__dict__, "backend": "auto"}))
    try:
        assert info.backend == "docker" and container_exists(str(info.container_id))
    finally:
        backends.stop(info)


def test_starting_the_docker_sandbox_prints_no_deprecation_warning(docker_spec: SandboxSpec) -> None:
    code = (f"from cutover.sandbox import backends as b\n"
            f"info = b.start(b.SandboxSpec(backend='docker', cache_path=__import__('pathlib').Path("
            f"{str(docker_spec.cache_path)!r})))\n"
            f"b.stop(info)\n")
    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Warning" not in done.stderr


@pytest.mark.parametrize("fmt,jobs", [("plain", 1), ("custom", 1), ("custom", 2)])
def test_snapshot_make_and_restore_use_the_containers_tools(docker_server: ServerInfo, cutover_plan: Plan,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            fmt: str, jobs: int) -> None:
    monkeypatch.setenv("PATH", host_path_without_postgres(tmp_path / "bin"))
    out = tmp_path / ("snap.dump" if fmt == "custom" else "snap.sql.gz")
    manifest = snapshot.make(out, cutover_plan, docker_server.admin_url, scale=0.05, seed=3, fmt=fmt,
                             tools=docker_server.tools())
    url = db.create_database(docker_server.admin_url, f"restore_{fmt}_{jobs}")
    try:
        with db.connection(url, autocommit=True) as conn:
            snapshot.ensure_roles(conn, cutover_plan)
        result = snapshot.restore(out, url, cutover_plan, jobs=jobs, tools=docker_server.tools())
        with db.connection(url) as conn:
            counts = snapshot.count_rows(conn, cutover_plan)
    finally:
        db.drop_database(docker_server.admin_url, db.database_name(url))
    assert result.format == ("custom" if fmt == "custom" else "plain-gz")
    assert result.rows == manifest["total_rows"] > 0
    assert counts == manifest["rows"]


def test_a_truncated_snapshot_is_refused_by_the_containers_pg_restore(docker_server: ServerInfo,
                                                                      cutover_plan: Plan, tmp_path: Path) -> None:
    out = tmp_path / "snap.dump"
    snapshot.make(out, cutover_plan, docker_server.admin_url, scale=0.05, seed=3, fmt="custom",
                  tools=docker_server.tools())
    out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with pytest.raises(SetupError, match="corrupt or truncated|not a readable pg_dump archive"):
        snapshot.validate(out, cutover_plan, docker_server.tools())


def test_a_bad_image_name_is_one_line_and_exit_2(pytester: pytest.Pytester, example: Callable[..., list[str]],
                                                 docker_spec: SandboxSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    args = example(test_x="def test_x(cutover_db):\n    pass\n")
    use_docker(monkeypatch)
    result = pytester.runpytest_subprocess(*args, "--sandbox=docker", f"--docker-image={NO_SUCH_IMAGE}")
    assert result.ret == 2
    errors = [ln for ln in result.stdout.lines + result.stderr.lines if "cutover: error:" in ln]
    assert len(errors) == 1, result.stdout.str()
    assert f"--docker-image {NO_SUCH_IMAGE} is not on this machine" in errors[0]


def test_xdist_workers_share_one_container_with_no_host_postgres(
        pytester: pytest.Pytester, example: Callable[..., list[str]], docker_spec: SandboxSpec,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", host_path_without_postgres(tmp_path / "bin"))
    out = pytester.path / "out"
    tests = "\n".join(f"def test_{i}(cutover_server, cutover_db):\n    record(cutover_server, cutover_db)\n"
                      for i in range(4))
    args = example(test_share=RECORD.format(out=str(out)) + tests)
    use_docker(monkeypatch)
    result = pytester.runpytest_subprocess(*args, "-n", "2", "--sandbox=docker")
    result.assert_outcomes(passed=4)
    infos = recorded(out)
    assert len(infos) == 2 and {i["backend"] for i in infos} == {"docker"}
    assert len({i["container_id"] for i in infos}) == 1, "workers must share one container"
    assert len({i["db"] for i in infos}) == 2, "each worker gets its own database"
    assert not container_exists(infos[0]["container_id"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_leaves_no_container(pytester: pytest.Pytester, example: Callable[..., list[str]],
                                         docker_spec: SandboxSpec, sig: signal.Signals,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = pytester.path / "out"
    args = example(test_slow=RECORD.format(out=str(out)) + RECORD_THEN_WAIT)
    use_docker(monkeypatch)
    proc, info = run_until_recorded(pytester.path, out, [*args, "--sandbox=docker"], timeout=300)
    assert container_exists(info["container_id"])
    proc.send_signal(sig)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode != 0, output
    assert not container_exists(info["container_id"]), output
    assert owned_by(proc.pid) == []


def test_a_killed_runs_container_is_reaped_by_the_next_start(docker_spec: SandboxSpec, tmp_path: Path) -> None:
    cache = str(docker_spec.cache_path)
    code = (f"from cutover.sandbox import backends as b\nimport pathlib, time\n"
            f"info = b.start(b.SandboxSpec(backend='docker', cache_path=pathlib.Path({cache!r})))\n"
            f"pathlib.Path({str(tmp_path / 'id')!r}).write_text(str(info.container_id))\n"
            f"time.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 300
    while not (tmp_path / "id").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    container_id = (tmp_path / "id").read_text()
    proc.kill()
    proc.wait()
    assert container_exists(container_id)
    info = backends.start(docker_spec)
    backends.stop(info)
    assert not container_exists(container_id)
