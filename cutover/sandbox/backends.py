"""Sandbox process control: a throwaway PostgreSQL server, started once and always cleaned up.

Backends: ``url`` (a server someone else runs; we never create or drop anything there), ``docker``
(a container of ``--docker-image``, see docker_image.py), ``local`` (initdb + pg_ctl on 127.0.0.1, run as
the ``postgres`` user when we are root). ``auto`` tries url, docker, local in turn.

A local cluster lives in ``<tmp>/cutover-sandbox-*`` with an ``owner.json`` naming the process that
must stop it; a container carries labels naming its owning process and host. Stopping is idempotent.
Should the owner die without cleaning up (SIGKILL), the next start reaps clusters and containers
whose owner is gone, so no server outlives its run for long. Containers are run by testcontainers;
its reaper image (Ryuk) is used where it is on the machine, and is not needed.

The temp directory is shared with every user of the machine, and the reaper often runs as root, so it
touches only what a start of this user made (:func:`owner_record`) and signals only a pid that is a
postgres process of that very data directory (:func:`is_postmaster_of`): a planted directory whose
postmaster.pid names someone else's process must not get that process killed.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from cutover.core import db
from cutover.core.errors import SetupError
from cutover.core.options import DEFAULTS, Settings
from cutover.core.progress import Log, quiet
from cutover.core.redact import redact, register_secret, split_password
from cutover.sandbox import docker_image, dumpneeds, majors, pgbin
from cutover.sandbox.pgbin import SERVICE_USER, ClientTools, locate

if TYPE_CHECKING:  # imported where used: a run that never starts a container never loads testcontainers
    from testcontainers.core.container import DockerContainer

# The running server's kind: which fields of ServerInfo are set and how it is stopped.
Backend = Literal["local", "docker", "url"]

PREFIX = "cutover-sandbox-"
ADMIN_USER = "postgres"
DOCKER_LABEL = "cutover.sandbox"
OWNER_PID_LABEL = "cutover.owner-pid"
OWNER_HOST_LABEL = "cutover.owner-host"
OWNER_RECORD = "owner.json"
RECORD_KIND = "cutover-sandbox"

@dataclass(frozen=True)
class SandboxSpec:
    """What the sandbox needs to know, and nothing more: the suite's other settings stay out of here."""

    backend: str = DEFAULTS["sandbox"]
    db_url: str | None = None
    pg_bindir: str | None = None
    sandbox_dir: str | None = None
    docker_image: str | None = None  # None: postgres:N of the wanted major (majors.docker_image)
    pg_major: int | None = None
    allow_newer_server: bool = False
    startup_timeout: int = DEFAULTS["startup_timeout"]
    snapshot: str | None = None
    snapshot_scale: int = DEFAULTS["snapshot_scale"]
    snapshot_seed: int = DEFAULTS["snapshot_seed"]
    cache_path: Path = Path(".cutover-cache")
    durable: bool = False

    @property
    def server_settings(self) -> str:
        """Throwaway clusters skip durability for speed, unless a durable restore time is wanted."""
        if self.durable:
            return "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
        return "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"

    @classmethod
    def of(cls, settings: Settings) -> SandboxSpec:
        return cls(backend=settings.sandbox, db_url=settings.db_url, pg_bindir=settings.pg_bindir,
                   sandbox_dir=settings.sandbox_dir, docker_image=settings.docker_image,
                   pg_major=settings.pg_major, allow_newer_server=settings.allow_newer_server,
                   startup_timeout=settings.startup_timeout, snapshot=settings.snapshot,
                   snapshot_scale=settings.snapshot_scale, snapshot_seed=settings.snapshot_seed,
                   cache_path=settings.cache_path, durable=settings.sandbox_durable)


@dataclass(frozen=True)
class ServerInfo:
    """A running server as the fixtures need it; JSON-serialisable to share it with xdist workers.

    ``local`` sets base_dir, bindir and run_as; ``docker`` sets container_id; ``url`` (adopted,
    never modified) sets neither."""

    backend: Backend
    admin_url: str
    base_dir: str | None = None
    container_id: str | None = None
    bindir: str | None = None
    run_as: str | None = None
    owner_pid: int = 0
    version: str = ""  # the server's version ('18.6'), read once it answers
    source_version: str = ""  # the snapshot's source server version, when the snapshot says
    note: str = ""  # a newer server than the snapshot's (--allow-newer-server): what every verdict says

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerInfo:
        info = cls(**json.loads(text))
        split_password(info.admin_url)  # registers the password, so output from this process masks it
        return info

    def tools(self) -> ClientTools:
        """Where psql/pg_dump/pg_restore run for this server: inside its container, else on the host."""
        if self.backend == "docker" and self.container_id:
            return ClientTools(container=self.container_id)
        return ClientTools(bindir=Path(self.bindir) if self.bindir else None)


def docker_engine_problem(timeout: float = 3.0) -> str | None:
    """None when a Docker engine answers a ping within ``timeout`` seconds, else why not."""
    try:
        import docker  # testcontainers depends on it

        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # the docker SDK raises many unrelated types for "no engine"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"no Docker engine answered within {timeout:g} s ({redact(reason, limit=160)})"
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited (holds no port or files) and waits for a parent that may be slow to reap
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _our_uids() -> set[int]:
    """Who may own a sandbox directory we made: us, and as root the user the server runs as (the
    directory is given to it so that it can write its data directory, see pgbin.PgBin.chown)."""
    uids = {os.geteuid()}
    if os.geteuid() == 0:
        try:
            uids.add(pwd.getpwnam(SERVICE_USER).pw_uid)
        except KeyError:
            pass
    return uids


def write_owner_record(base: Path, owner_pid: int) -> None:
    """The record the reaper trusts: created exclusively, 0600, by us, naming this very directory.
    Written before the directory is given to the service user, so it stays ours (that user cannot
    make a file of root's, so it cannot forge one)."""
    record = {"kind": RECORD_KIND, "pid": owner_pid, "uid": os.geteuid(), "base": os.path.realpath(base)}
    fd = os.open(base / OWNER_RECORD, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)


def owner_record(base: Path) -> dict[str, Any] | None:
    """The owner record when ``base`` is a sandbox directory this user made, else None: a directory
    (not a link) owned by us (or, as root, by the service user), mode 0700, holding a regular
    ``owner.json`` of ours, not a link, with one name, that names this directory."""
    try:
        st = os.lstat(base)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != 0o700 or st.st_uid not in _our_uids():
        return None
    try:
        fd = os.open(base / OWNER_RECORD, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        rst = os.fstat(fh.fileno())
        if not stat.S_ISREG(rst.st_mode) or rst.st_uid != os.geteuid() or rst.st_nlink != 1:
            return None
        try:
            record = json.loads(fh.read(4096))
        except ValueError:
            return None
    if (not isinstance(record, dict) or record.get("kind") != RECORD_KIND or record.get("uid") != os.geteuid()
            or record.get("base") != os.path.realpath(base) or type(record.get("pid")) is not int):
        return None
    return record


def is_postmaster_of(pid: int, data: Path) -> bool:
    """Is ``pid`` a postgres process serving ``data``? Its executable is postgres, its working
    directory is that data directory (the postmaster changes into it) and it runs as the data
    directory's owner. A stale postmaster.pid, whose pid now belongs to another process, fails."""
    proc = Path(f"/proc/{pid}")
    try:
        exe = os.readlink(proc / "exe")
        cwd = os.readlink(proc / "cwd")
        status = (proc / "status").read_text()
        owner = os.stat(data).st_uid
    except OSError:
        return False
    uid = next((line.split()[1] for line in status.splitlines() if line.startswith("Uid:")), "")
    return (Path(exe.removesuffix(" (deleted)")).name == "postgres" and cwd == os.path.realpath(data)
            and uid == str(owner))


def _postmaster_pid(base: Path) -> int | None:
    try:
        return int((base / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _log_tail(base: Path, lines: int = 3) -> str:
    try:
        text = (base / "postgres.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no server log"
    return " | ".join(text[-lines:]) or "empty server log"


def wanted_major(settings: SandboxSpec) -> majors.Wanted:
    """The major this sandbox must run: the snapshot's, else --pg-major, else any (majors.wanted)."""
    return majors.wanted(Path(settings.snapshot) if settings.snapshot is not None else None, settings.pg_major,
                         settings.allow_newer_server)


def start_local(settings: SandboxSpec, owner_pid: int | None = None, log: Log = quiet,
                want: majors.Wanted | None = None) -> ServerInfo:
    """initdb + pg_ctl start a private cluster on 127.0.0.1 with fsync off (unless --sandbox-durable),
    from the installation of the wanted major (refused in one line, before anything starts, when none)."""
    chosen = majors.local_installation(settings.pg_bindir, want or wanted_major(settings), log)
    pg = locate(settings.pg_bindir, chosen.bindir)
    problem = pg.reachable_problem()
    if problem is not None:
        raise SetupError(problem)
    reap_stale(settings.sandbox_dir)
    parent = settings.sandbox_dir if settings.sandbox_dir is not None else tempfile.gettempdir()
    base = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))  # 0700
    write_owner_record(base, owner_pid or os.getpid())
    pg.chown(base)
    password = secrets.token_urlsafe(18)
    register_secret(password)
    info = ServerInfo(backend="local", admin_url="", base_dir=str(base), bindir=str(pg.bindir),
                      run_as=pg.run_as, owner_pid=owner_pid or os.getpid())
    try:
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        pg.chown(pwfile)
        log(f"sandbox: initdb in {base} ({pg.version()})")
        init = subprocess.run(
            pg.server_cmd("initdb", "-D", str(base / "data"), "-U", ADMIN_USER, f"--pwfile={pwfile}",
                          "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-locale",
                          "--no-sync", "--no-instructions"),
            capture_output=True, text=True, timeout=settings.startup_timeout, check=False)
        pwfile.unlink()
        if init.returncode != 0:
            detail = (init.stderr or init.stdout).strip().splitlines()
            raise SetupError(f"initdb failed in {base}: {detail[-1] if detail else init.returncode}; "
                             "check --sandbox-dir is writable by the postgres user, or use --sandbox url")
        for attempt in range(3):
            port = free_port()
            opts = (f"-p {port} -c listen_addresses=127.0.0.1 -k {base} {settings.server_settings} "
                    "-c max_connections=200")
            start = subprocess.run(
                pg.server_cmd("pg_ctl", "-D", str(base / "data"), "-l", str(base / "postgres.log"), "-w",
                              "-t", str(settings.startup_timeout), "-o", opts, "start"),
                capture_output=True, text=True, timeout=settings.startup_timeout + 10, check=False)
            if start.returncode == 0:
                url = f"postgresql://{ADMIN_USER}:{password}@127.0.0.1:{port}/postgres"
                log(f"sandbox: local PostgreSQL {chosen.version} ({chosen.origin}) up on 127.0.0.1:{port}")
                return ServerInfo(**{**asdict(info), "admin_url": url})
            if "could not bind" not in _log_tail(base, 10) or attempt == 2:
                raise SetupError(f"pg_ctl start failed in {base}: {_log_tail(base)}; "
                                 "see that log, or use --sandbox url --db-url URL")
    except BaseException:
        stop(info)
        raise
    raise AssertionError("unreachable")


def _docker_client(timeout: float = 10.0) -> Any:
    import docker

    return docker.from_env(timeout=timeout)


def _owner_labels(owner_pid: int) -> dict[str, str]:
    return {DOCKER_LABEL: "1", OWNER_PID_LABEL: str(owner_pid), OWNER_HOST_LABEL: socket.gethostname()}


def _remove(client: Any, containers: list[Any]) -> list[str]:
    removed = []
    for container in containers:
        try:
            container.remove(force=True, v=True)
            removed.append(str(container.id))
        except Exception:  # already gone (another reaper, or --rm): nothing left to do
            pass
    return removed


def reap_stale_containers(client: Any = None) -> list[str]:
    """Remove sandbox containers whose owning process on this host is gone (SIGKILL, a crash)."""
    client = client or _docker_client()
    host = socket.gethostname()
    stale = []
    for container in client.containers.list(all=True, filters={"label": f"{DOCKER_LABEL}=1"}):
        labels = container.labels or {}
        try:
            pid = int(labels.get(OWNER_PID_LABEL, ""))
        except ValueError:
            continue
        if labels.get(OWNER_HOST_LABEL) == host and not _pid_alive(pid):
            stale.append(container)
    return _remove(client, stale)


def _container_logs(container: Any, lines: int = 3) -> str:
    try:
        text = container.logs(tail=20).decode(errors="replace").strip().splitlines()
    except Exception:
        return "no container log"
    return " | ".join(text[-lines:]) or "empty container log"


# The server that answers on TCP: the official image's entrypoint first runs a socket-only server for its
# init scripts (it too says "ready to accept connections"), then the final one, which listens on TCP.
READY_LOG = re.compile(r"listening on IPv4 address[\s\S]*database system is ready to accept connections")
RYUK_DISABLED_ENV = "TESTCONTAINERS_RYUK_DISABLED"


def reaper_problem(client: Any, owner_pid: int) -> str | None:
    """None when testcontainers' reaper (Ryuk) can watch the container this process starts, else why not.

    Ryuk removes a session's containers once the process that started them is gone. That is right only
    when the starting process owns the container: an xdist worker starts the run's shared container for
    the controller, and must not take it with it when it exits first. Its image is used only when it is
    already on the machine: where no registry answers, a pull would cost every start its timeout."""
    from testcontainers.core.config import testcontainers_config

    if os.environ.get(RYUK_DISABLED_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return f"{RYUK_DISABLED_ENV} is set"
    if owner_pid != os.getpid():
        return "the container is the run's, started here for its other processes"
    import docker.errors

    try:
        client.images.get(testcontainers_config.ryuk_image)
    except docker.errors.ImageNotFound:
        return (f"its image {testcontainers_config.ryuk_image} is not on this machine; "
                f"docker pull {testcontainers_config.ryuk_image} turns it on")
    return None


def _exit_code(container: Any) -> object:
    try:
        container.reload()
        return container.attrs.get("State", {}).get("ExitCode")
    except Exception:  # removed meanwhile
        return "unknown"


def start_docker(settings: SandboxSpec, owner_pid: int | None = None, log: Log = quiet,
                 want: majors.Wanted | None = None) -> ServerInfo:
    """A PostgreSQL container on 127.0.0.1, run by testcontainers, labelled with its owner.

    testcontainers creates and starts it and waits for the server (its log wait strategy, which also
    fails at once when the container exits). Its reaper watches the container where it can (see
    :func:`reaper_problem`); the container is removed in any case by :func:`stop` at the end of the run
    (also after Ctrl-C or SIGTERM, which the plugin turns into a normal shutdown), right here when the
    start fails, and by the next start's :func:`reap_stale_containers` when its owner died (SIGKILL).
    """
    from testcontainers.core.config import testcontainers_config

    problem = docker_engine_problem()
    if problem is not None:
        raise SetupError(f"--sandbox docker: {problem}; start Docker, or use --sandbox local or --sandbox url")
    owner = owner_pid or os.getpid()
    client = _docker_client()
    reap_stale_containers(client)
    image = _image_with_extensions(client, settings, owner, log, want or wanted_major(settings))
    no_reaper = reaper_problem(client, owner)
    testcontainers_config.ryuk_disabled = no_reaper is not None
    if no_reaper is not None:
        log(f"sandbox: docker: testcontainers' reaper is off ({no_reaper}); a killed run's container is removed "
            "by the next start, by its labels")
    password = secrets.token_urlsafe(18)
    register_secret(password)
    name = f"{PREFIX}{owner}-{secrets.token_hex(4)}"
    container: DockerContainer | None = None
    try:
        container = _postgres_container(image, name, owner, password, settings)
        try:
            container.start()
        except RuntimeError:  # the wait strategy saw the container exit
            raw = container.get_wrapped_container()
            raise SetupError(f"--sandbox docker: the {image} container exited (code {_exit_code(raw)}) before "
                             f"PostgreSQL was ready: {redact(_container_logs(raw))}; fix the image or use "
                             "--sandbox local") from None
        except TimeoutError:
            raise SetupError(f"--sandbox docker: PostgreSQL in the container was not ready within "
                             f"{settings.startup_timeout} s "
                             f"({redact(_container_logs(container.get_wrapped_container()))}); raise "
                             "--startup-timeout or use --sandbox local") from None
        container_id = container.get_container_id()
        port = int(container.get_docker_client().port(container_id, 5432))
        url = f"postgresql://{ADMIN_USER}:{password}@127.0.0.1:{port}/postgres"
    except BaseException as exc:
        remove_owned_name(client, name)
        if isinstance(exc, SetupError) or not isinstance(exc, Exception):
            raise
        raise SetupError(f"--sandbox docker: could not start {image} ({redact(str(exc), limit=200)}); "
                         "use --sandbox local") from None
    finally:
        if container is not None:  # its own engine connection; the container is stopped by id (stop())
            container.get_docker_client().client.close()
    log(f"sandbox: docker {image} up on 127.0.0.1:{port}")
    return ServerInfo(backend="docker", admin_url=url, container_id=container_id, owner_pid=owner)


def _image_with_extensions(client: Any, settings: SandboxSpec, owner: int, log: Log, want: majors.Wanted) -> str:
    """The image to run, pulled if need be; a setup error naming where to get them when it lacks
    extensions the snapshot creates (found before any server starts, not by a failed restore)."""
    image = docker_image.ensure(client, majors.docker_image(settings.docker_image, want), log,
                                given=settings.docker_image is not None)
    missing = image_missing_extensions(client, image, want, owner)
    if missing:
        major = majors.image_major(image) or want.major or 15
        raise SetupError(f"--sandbox docker: {image} lacks the extension{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)} that {want.source or 'the snapshot ' + want.snapshot} creates; get "
                         + "; ".join(dumpneeds.where_to_get(e, major) for e in missing))
    return image


def image_missing_extensions(client: Any, image: str, want: majors.Wanted, owner: int) -> list[str] | None:
    """Those of the snapshot's extensions ``image`` has no control file for, read from a container that is
    created and never started (no server runs); None when its extension directory is not where the
    official image or Debian's packages put it (then the restore's check on the started server says)."""
    if not want.extensions:
        return []
    import docker.errors

    major = majors.image_major(image) or want.major
    places = ([f"/usr/share/postgresql/{major}/extension"] if major is not None else []) + [
        "/usr/local/share/postgresql/extension"]
    try:
        container = client.containers.create(image, entrypoint=["true"], command=[], labels=_owner_labels(owner))
    except Exception:  # the docker SDK's many error types: not knowing is not a refusal
        return None
    try:
        for place in places:
            try:
                container.get_archive(f"{place}/plpgsql.control")
            except docker.errors.NotFound:
                continue
            missing = []
            for name in want.extensions:
                try:
                    container.get_archive(f"{place}/{name}.control")
                except docker.errors.NotFound:
                    missing.append(name)
            return missing
        return None
    finally:
        _remove(client, [container])


def _postgres_container(image: str, name: str, owner: int, password: str,
                        settings: SandboxSpec) -> DockerContainer:
    """testcontainers' container of ``image`` as the sandbox runs it (not started yet)."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    # network="bridge": testcontainers would otherwise look for a network of the container it runs in; the
    # port is published on the engine host's 127.0.0.1 only, which its port API cannot say (host port only).
    container = (DockerContainer(image, docker_client_kw={"timeout": 10})
                 .with_kwargs(labels=_owner_labels(owner), network="bridge")
                 .with_name(name)
                 .with_command(["postgres", *settings.server_settings.split(), "-c", "max_connections=200"])
                 .with_envs(POSTGRES_USER=ADMIN_USER, POSTGRES_PASSWORD=password, POSTGRES_DB="postgres")
                 .waiting_for(LogMessageWaitStrategy(READY_LOG).with_startup_timeout(settings.startup_timeout)
                              .with_poll_interval(0.2)))
    container.ports["5432/tcp"] = cast(Any, ("127.0.0.1",))  # docker's (address,): a free port on that address
    return container


def remove_owned_name(client: Any, name: str) -> None:
    """Remove a container by name: a start interrupted between create and start leaves one with no id yet."""
    _remove(client, client.containers.list(all=True, filters={"name": name}))


def _docker_major_problem(settings: SandboxSpec, want: majors.Wanted) -> str | None:
    """Why the docker backend cannot give the wanted major, seen from the image's tag before any pull."""
    if want.major is None:
        return None
    image = majors.docker_image(settings.docker_image, want)
    stated = majors.image_major(image)
    if stated is None or stated == want.major or (stated > want.major and want.allow_newer):
        return None
    return (f"--docker-image {image} is PostgreSQL {stated} and {want.source} needs {want.major}; "
            f"drop --docker-image (postgres:{want.major} is then used) or name a {want.major} image")


def _settle(info: ServerInfo, want: majors.Wanted, log: Log) -> ServerInfo:
    """Read the started server's version and hold it to the rule: an image whose tag does not say its
    major (or a --db-url dev branch) is checked here, and stopped when it is older, or newer unallowed."""
    with db.connection(info.admin_url, read_only=True, autocommit=True, purpose="the sandbox") as conn:
        row = conn.execute("SHOW server_version").fetchone()
    version = str(row[0]).split()[0] if row else ""
    note = ""
    if want.major is not None and version:
        running = pgbin.major_of(version)
        if running < want.major or (running > want.major and not want.allow_newer):
            if info.backend != "url":
                stop(info)
            newer = (f"; or --allow-newer-server to rehearse on {running} anyway" if running > want.major else "")
            raise SetupError(f"{want.source} needs a PostgreSQL {want.major} server but the {info.backend} sandbox "
                             f"runs PostgreSQL {version}; get {want.major}: {majors.ways(want.major)}{newer}")
        if running > want.major:
            note = majors.note(running, want.major)
            log(f"sandbox: {note} (--allow-newer-server)")
    return ServerInfo(**{**asdict(info), "version": version, "source_version": want.version, "note": note})


def start(settings: SandboxSpec, owner_pid: int | None = None, log: Log = quiet) -> ServerInfo:
    """Start (or, for ``url``, adopt) the server the ``--sandbox`` option asks for, of the snapshot's major.

    ``auto`` tries url, then docker, then local, taking the first that can give the wanted major, and
    says in one line why it moved on each time; an explicit backend never falls back (the operator
    asked for it, so its failure is the answer). A major that cannot be had is refused before any
    server starts, naming both majors and each way to get the right one.
    """
    want = wanted_major(settings)
    if want.major is not None:
        log(f"sandbox: {want.source}: a PostgreSQL {want.major} server"
            + (" (or newer: --allow-newer-server)" if want.allow_newer else ""))
    choice = settings.backend
    if choice == "url" or (choice == "auto" and settings.db_url is not None):
        if settings.db_url is None:
            raise SetupError("--sandbox url needs a database: pass --db-url or set CUTOVER_DB_URL / DATABASE_URL")
        with db.connection(settings.db_url, read_only=True):  # fail now, in one line, not in every test
            pass
        adopted = ServerInfo(backend="url", admin_url=settings.db_url, owner_pid=owner_pid or os.getpid())
        return _settle(adopted, want, log)
    if choice == "docker":
        problem = _docker_major_problem(settings, want)
        if problem is not None:
            raise SetupError(f"--sandbox docker: {problem}")
        return _settle(start_docker(settings, owner_pid, log, want), want, log)
    if choice == "local":
        return _settle(start_local(settings, owner_pid, log, want), want, log)
    tried = ["url: no --db-url given"]
    log("sandbox: auto: no --db-url given; trying docker")
    problem = _docker_major_problem(settings, want) or docker_engine_problem()
    if problem is None:
        try:
            return _settle(start_docker(settings, owner_pid, log, want), want, log)
        except SetupError as exc:
            problem = str(exc).removeprefix("--sandbox docker: ")
    tried.append(f"docker: {problem}")
    log(f"sandbox: auto: not using docker ({problem}); trying a local cluster")
    try:
        return _settle(start_local(settings, owner_pid, log, want), want, log)
    except SetupError as exc:
        tried.append(f"local: {exc}")
    raise SetupError("no sandbox could be started (tried " + "; ".join(tried)
                     + "); pass --db-url, start Docker, or install PostgreSQL server binaries")


def stop(info: ServerInfo) -> None:
    """Stop the server and remove its files; safe to call twice, never raises for a gone server."""
    if info.backend == "docker" and info.container_id:
        try:
            client = _docker_client()
            _remove(client, [client.containers.get(info.container_id)])
        except Exception:  # already gone, or the engine is gone: the next start reaps it by its label
            pass
    if info.backend == "local" and info.base_dir:
        _stop_local(Path(info.base_dir))


def _stop_local(base: Path) -> None:
    """Immediate shutdown (SIGQUIT to the postmaster: throwaway data needs no checkpoint), then SIGKILL
    if it lingers, then remove the directory. Signalling directly avoids pg_ctl's slow stop polling.
    Only a postgres process of this data directory is signalled, never whatever pid the file names."""
    pid = _postmaster_pid(base)
    if pid is not None and _pid_alive(pid):
        for sig, grace in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)):
            if not is_postmaster_of(pid, base / "data"):
                break
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not _pid_alive(pid):
                break
    shutil.rmtree(base, ignore_errors=True)


def reap_stale(parent: str | None = None) -> list[str]:
    """Stop and remove sandbox clusters this user made whose owning process is gone (e.g. it was
    SIGKILLed). Any other ``cutover-sandbox-*`` directory is left as it is (see owner_record)."""
    reaped = []
    root = Path(parent if parent is not None else tempfile.gettempdir())
    for base in root.glob(f"{PREFIX}*"):
        record = owner_record(base)
        if record is not None and not _pid_alive(record["pid"]):
            _stop_local(base)
            reaped.append(str(base))
    return reaped
