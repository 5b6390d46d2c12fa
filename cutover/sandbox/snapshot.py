"""Snapshots: making the synthetic pre-cutover database and restoring any snapshot into a sandbox.

A snapshot is what the runbook makes: ``pg_dump --no-owner --no-privileges | gzip`` (plain SQL), or
pg_dump's custom format for ``pg_restore -j``. We make ours with the real pg_dump from a database
loaded by the reference generator, so a restore exercises exactly the path an operator's prod
snapshot takes. Plain files are byte-identical for the same (scale, seed): gzip's header carries no
time or name. A manifest (rows per table per tenant) sits next to every snapshot.

A restore first reads the whole file (corruption, truncation, a dump of some other schema) and
checks the target is empty, and only then writes, in one transaction where the format allows it:
bad input leaves nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import secrets
import subprocess
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

from filelock import FileLock
from psycopg import sql

from cutover.core import db
from cutover.core.db import Connection
from cutover.core.errors import SetupError
from cutover.core.evidence import sha256_file
from cutover.core.options import DEFAULTS
from cutover.core.plan import Plan, table_sql, toml_key
from cutover.core.progress import Log, quiet
from cutover.core.redact import mask_url, redact, register_secret
from cutover.model import generator
from cutover.sandbox import dumpneeds
from cutover.sandbox.pgbin import ClientTools
from cutover.sandbox.plain_sql import MetaCommandGuard, psql_restricts, restricted_preamble

REFERENCE_DIR = Path(str(resources.files("cutover.model")))
CHUNK = 1 << 20
FORMATS = ("plain", "custom")
MANIFEST_VERSION = 2  # 2: tenant keys are text whatever the server encoding (1 could hold "b'...'" keys)
Counts = dict[str, dict[str, int]]
DUMP_COMPLETE = b"-- PostgreSQL database dump complete"
PROGRESS_EVERY_S = 5.0

# A table pg_dump creates, its name schema-qualified as pg_dump writes it: bare (lower case, digits,
# ``_``, ``$``) or double-quoted with ``""`` for a quote (a space, capitals, non-ASCII, a newline).
_IDENT = rb'(?:"(?:[^"]|"")+"|[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)'
_CREATE_TABLE = re.compile(rb"^CREATE (?:UNLOGGED )?TABLE (" + _IDENT + rb")(?:\.(" + _IDENT + rb"))? \(", re.M)


@dataclass(frozen=True)
class RestoreResult:
    """``seconds`` is the load itself; ``total_seconds`` adds validation, grants and ANALYZE;
    ``created_roles`` the NOLOGIN roles made in a sandbox for the policies, owners and grants it names."""

    format: str
    seconds: float
    rows: int
    total_seconds: float
    created_roles: tuple[str, ...] = ()


def manifest_path(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name + ".manifest.json")


def sniff_format(path: Path) -> str:
    """'plain-gz', 'plain' or 'custom'; anything else is not a snapshot."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(5)
    except FileNotFoundError:
        raise SetupError(f"snapshot {path} not found; pass an existing file with --snapshot") from None
    except OSError as exc:
        raise SetupError(f"snapshot {path} cannot be read ({exc.strerror}); "
                         "fix its permissions or --snapshot") from None
    if head[:2] == b"\x1f\x8b":
        return "plain-gz"
    if head == b"PGDMP":
        return "custom"
    if head[:2] in (b"--", b"SE", b"\n-"):
        return "plain"
    raise SetupError(f"snapshot {path} is neither gzip'd SQL nor a pg_dump custom archive; "
                     "pass a pg_dump snapshot with --snapshot")


def _open_binary(path: Path, fmt: str) -> IO[bytes]:
    if fmt == "plain-gz":
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]  # GzipFile is a binary IO
    return open(path, "rb")


def _plain_chunks(path: Path, fmt: str) -> Iterator[bytes]:
    try:
        with _open_binary(path, fmt) as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
    except (OSError, EOFError, zlib.error) as exc:
        raise SetupError(f"snapshot {path} is corrupt or truncated ({exc}); "
                         "make or download it again, then pass it with --snapshot") from None


def _complete(end: bytes) -> bool:
    """Does the dump end with pg_dump's completion line? Only blank lines, ``--`` and psql's
    ``\\unrestrict`` (pg_dump 15.14+) may follow it."""
    at = end.rfind(DUMP_COMPLETE)
    if at < 0:
        return False
    after = end[at + len(DUMP_COMPLETE):].splitlines()
    return all(line.strip() in (b"", b"--") or line.startswith(b"\\unrestrict") for line in after)


def _unquote(ident: bytes) -> str:
    name = ident[1:-1].replace(b'""', b'"') if ident.startswith(b'"') else ident
    return name.decode("utf-8", errors="replace")


def _created_tables(script: bytes) -> set[str]:
    """The names of the tables a dump's SQL creates, each bare and, where the dump names its schema,
    qualified too: a plan names a table as the search path finds it (``patients`` for a role whose
    search_path is ``app``) or with its schema (``app.patients``)."""
    out: set[str] = set()
    for first, second in _CREATE_TABLE.findall(script):
        out.add(_unquote(second or first))
        if second:
            out.add(f"{_unquote(first)}.{_unquote(second)}")
    return out


def _tables_in_plain(path: Path, fmt: str, log: Log = quiet) -> set[str]:
    """Read the whole file (that is the integrity check) and collect the tables it creates.

    A gzip stream closed cleanly after a line that happens to end a statement restores "fine" with
    the constraints and RLS missing, and the dry run then blames RLS: pg_dump's completion line is
    the only proof the file holds the whole dump, so a plain file without it is refused. A psql
    meta-command anywhere but the dump's own ``\\restrict`` pair is refused here too, before anything
    is restored (see plain_sql)."""
    guard = MetaCommandGuard()
    tables: set[str] = set()
    tail = b""
    end = b""
    started = shown = time.monotonic()
    read = 0
    for chunk in _plain_chunks(path, fmt):
        read += len(chunk)
        guard.feed(chunk)
        if time.monotonic() - shown >= PROGRESS_EVERY_S:  # a real snapshot is read for minutes
            shown = time.monotonic()
            log(f"snapshot: checking {path.name} before writing anything: {read / CHUNK:,.0f} MB of SQL read "
                f"in {shown - started:.0f} s")
        data = tail + chunk
        cut = data.rfind(b"\n") + 1
        opened = data.rfind(b"\nCREATE ", 0, cut)
        if opened >= 0 and data.find(b" (\n", opened) < 0:
            cut = opened + 1  # a quoted name with a newline in it may continue in the next chunk
        tables.update(_created_tables(data[:cut]))
        tail = data[cut:]
        end = (end + chunk)[-4096:]
    tables.update(_created_tables(tail))
    guard.finish()
    if not _complete(end):
        raise SetupError(f"snapshot {path} was cut short: it does not end with pg_dump's "
                         f"'{DUMP_COMPLETE.decode()}' line; make or download it again, then pass it with --snapshot")
    return tables


def _tool_on_file(tools: ClientTools, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pg_restore ``args`` reading ``path`` (streamed on stdin into a container: no copy needed)."""
    if tools.container is None:
        argv, env = tools.command("pg_restore", None, *args, str(path))
        return subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    argv, env = tools.command("pg_restore", None, *args, stdin=True)
    with open(path, "rb") as fh:
        done = subprocess.run(argv, stdin=fh, capture_output=True, check=False, env=env)
    return subprocess.CompletedProcess(argv, done.returncode, done.stdout.decode(errors="replace"),
                                       done.stderr.decode(errors="replace"))


def _tables_in_custom(path: Path, tools: ClientTools) -> set[str]:
    listing = _tool_on_file(tools, path, "-l")
    if listing.returncode != 0 and "unsupported version" in listing.stderr:
        # The file is fine: a newer pg_dump wrote it than this server's pg_restore can read.
        raise SetupError(f"snapshot {path} was written by a newer pg_dump than this sandbox's pg_restore reads "
                         f"({redact(listing.stderr.strip().splitlines()[-1])}); the file is fine: rehearse it on a "
                         "server of its own major (see --pg-bindir, --pg-major and --allow-newer-server)")
    if listing.returncode != 0:
        raise SetupError(f"snapshot {path} is not a readable pg_dump archive ({redact(listing.stderr.strip())}); "
                         "make or download it again")
    full = _tool_on_file(tools, path, "-f", os.devnull)
    if full.returncode != 0:
        raise SetupError(f"snapshot {path} is corrupt or truncated "
                         f"({redact(full.stderr.strip().splitlines()[-1] if full.stderr.strip() else '')}); "
                         "make or download it again")
    # The listing's names are unquoted, with spaces and newlines made spaces: read the schema's own
    # CREATE TABLEs instead (pg_restore seeks past the data of a file; a stream is read once more).
    schema = _tool_on_file(tools, path, "-s", "--no-owner", "--no-privileges", "-f", "-")
    return _created_tables(schema.stdout.encode())


def required_extensions(path: Path, tools: ClientTools | None = None) -> tuple[str, ...]:
    """The extensions the snapshot creates: a plain file's ``CREATE EXTENSION``s (read up to its first
    rows only, where pg_dump puts them), a custom archive's table of contents. Cheap on a GB snapshot, so
    a missing extension is said before the whole file is read."""
    fmt = sniff_format(path)
    if fmt == "custom":
        listing = _tool_on_file(tools or ClientTools(), path, "-l")
        return dumpneeds.extensions_in_toc(listing.stdout) if listing.returncode == 0 else ()
    return dumpneeds.scan_sql(_plain_chunks(path, fmt), stop_at_data=True).extensions


def named_roles(path: Path, tools: ClientTools | None = None) -> tuple[str, ...]:
    """The roles the snapshot's statements name: its policies' ``TO``, and where the dump kept them its
    ``OWNER TO`` and grants. A custom archive is restored with --no-owner --no-privileges, so only its
    policies count; they are read from its schema (``pg_restore -s``), never its data."""
    return dump_needs(path, tools).roles


def dump_needs(path: Path, tools: ClientTools | None = None) -> dumpneeds.DumpNeeds:
    """What :func:`named_roles` reads, with the roles the dump makes its loader act as (``owners``)."""
    fmt = sniff_format(path)
    if fmt != "custom":
        return dumpneeds.scan_sql(_plain_chunks(path, fmt))
    schema = _tool_on_file(tools or ClientTools(), path, "-s", "--no-owner", "--no-privileges", "-f", "-")
    return dumpneeds.scan_sql([schema.stdout.encode()]) if schema.returncode == 0 else dumpneeds.DumpNeeds()


def refuse_missing_extensions(conn: Connection, path: Path, required: tuple[str, ...], url: str) -> None:
    """One line naming each extension the snapshot creates that the server cannot, and where to get it."""
    missing = dumpneeds.missing_extensions(conn, required)
    if missing:
        major = dumpneeds.server_major(conn)
        raise SetupError(f"snapshot {path.name} creates extensions that PostgreSQL {major} at {mask_url(url)} does "
                         f"not have: {'; '.join(dumpneeds.where_to_get(e, major) for e in missing)}; "
                         "nothing was restored")


def provide_roles(conn: Connection, path: Path, plan: Plan, roles: tuple[str, ...], url: str,
                  create: bool, log: Log = quiet) -> tuple[str, ...]:
    """The roles the snapshot names that the server lacks: created as NOLOGIN roles when ``create`` (a
    sandbox, ours to change), else refused in one line (a --db-url target: the restore would fail on the
    first of them, and roles are the server's, not ours to create). The plan's app role is left to
    :func:`ensure_roles`. Returns the roles created."""
    missing = [r for r in dumpneeds.missing_roles(conn, roles) if r != plan.app_role]
    if not missing:
        return ()
    reserved = [r for r in missing if dumpneeds.reserved(r)]
    if reserved:
        raise SetupError(f"snapshot {path.name} names predefined roles PostgreSQL at {mask_url(url)} does not have "
                         f"({', '.join(reserved)}): it comes from a newer PostgreSQL; restore it on a server of "
                         "its major")
    if not create:
        statements = " ".join(f"CREATE ROLE {sql.Identifier(r).as_string(None)} NOLOGIN;" for r in missing)
        raise SetupError(f"snapshot {path.name} names roles that {mask_url(url)} does not have: {', '.join(missing)} "
                         f"(in its policies, owners or grants; pg_dump does not carry roles); create them there "
                         f"first ({statements}) or restore into a sandbox (no --db-url); nothing was restored")
    log(f"snapshot: creating the roles {path.name} names as NOLOGIN roles in the sandbox: {', '.join(missing)}")
    dumpneeds.create_nologin_roles(conn, missing)
    return tuple(missing)


def validate(path: Path, plan: Plan, tools: ClientTools | None = None, log: Log = quiet) -> str:
    """Read the whole snapshot and check it holds the plan's tables; returns its format."""
    fmt = sniff_format(path)
    tables = (_tables_in_custom(path, tools or ClientTools()) if fmt == "custom"
              else _tables_in_plain(path, fmt, log))
    missing = [t for t in plan.all_tables if t not in tables]
    if missing:
        raise SetupError(f"snapshot {path} does not hold the plan's schema (missing tables: "
                         f"{', '.join(map(toml_key, missing))}); pass a snapshot of that schema with --snapshot, "
                         f"or a matching plan with --plan")
    return fmt


def count_rows(conn: Connection, plan: Plan) -> Counts:
    """Rows per table per tenant (static tables under '*'): the manifest and the conservation base."""
    counts: Counts = {}
    for table in plan.static_tables:
        row = db.one(conn, sql.SQL("SELECT count(*) FROM {}").format(table_sql(table)))
        counts[table] = {"*": int(row[0])}
    for table in plan.table_names:
        col = sql.Identifier(plan.tenant_column)
        rows = conn.execute(sql.SQL("SELECT {c}::text, count(*) FROM {t} GROUP BY {c} ORDER BY {c}")
                            .format(c=col, t=table_sql(table))).fetchall()
        counts[table] = {_text(tenant, table): int(n) for tenant, n in rows}
    return counts


def _text(value: object, table: str) -> str:
    """A tenant key as text. bytes mean the connection's client encoding was not forced to UTF8 (a
    SQL_ASCII database): stringifying them wrote keys like "b'tenant-apollo-001'" into a manifest once."""
    if not isinstance(value, str):
        raise SetupError(f"{table}: tenant key {value!r} came back as {type(value).__name__}, not text; "
                         "the connection's client encoding is not UTF8")
    return value


@dataclass(frozen=True)
class Model:
    """A schema file and the generator of its synthetic rows: the reference model, or another one
    (the project's tests keep a second model to prove the suite on a schema unlike the reference)."""

    schema: Path
    generate: Callable[[float, int], Iterable[generator.TableData]]
    version: str


REFERENCE = Model(REFERENCE_DIR / "schema.sql", generator.generate, generator.GENERATOR_VERSION)


def fill(url: str, model: Model, scale: float, seed: int, log: Log = quiet,
         tables: Collection[str] | None = None) -> None:
    """Create the model's schema in an empty database and fill it with generated rows. With ``tables``
    (a plan's), a generated table outside them stops the load: the plan and the model disagree."""
    with db.connection(url, purpose="the build database") as conn:
        conn.execute(model.schema.read_text())  # static fixture file, no parameters
        for data in model.generate(scale, seed):
            if tables is not None and data.table not in tables:
                raise SetupError(f"generator table '{data.table}' is not in the plan; fix the plan")
            stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
                table_sql(data.table), sql.SQL(", ").join(map(sql.Identifier, data.columns)))
            started = time.monotonic()
            with conn.cursor().copy(stmt) as copy:
                for row in data.rows:
                    copy.write_row(row)
            log(f"snapshot: {data.table:<20} {len(data.rows):>9,} rows  {time.monotonic() - started:5.1f} s")
        conn.commit()
        conn.execute("ANALYZE")
        conn.commit()


def load_reference(url: str, plan: Plan, scale: float, seed: int, log: Log = quiet,
                   model: Model = REFERENCE) -> Counts:
    """Create the model's schema in an empty database, fill it with generated rows, count them."""
    fill(url, model, scale, seed, log, plan.all_tables)
    with db.connection(url, purpose="the build database") as conn:
        counts = count_rows(conn, plan)
        conn.commit()
    return counts


def seed_database(url: str, plan: Plan, scale: float, seed: int, log: Log = quiet,
                  model: Model = REFERENCE) -> Counts:
    """The reference model (or ``model``) in the empty database at ``url``, with its roles and grants as
    a restore of its snapshot leaves them: what the benchmarks and the tests that skip the dump start from."""
    with db.connection(url, autocommit=True) as conn:
        ensure_roles(conn, plan)
    counts = load_reference(url, plan, scale, seed, log, model)
    with db.connection(url, autocommit=True) as conn:
        grant_app_role(conn, plan)
    return counts


def check_make_args(out: Path, scale: float, fmt: str) -> None:
    """Refuse bad arguments before any server is started or file written."""
    if fmt not in FORMATS:
        raise SetupError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if scale <= 0:
        raise SetupError(f"--scale must be positive, got {scale}")
    if not out.parent.is_dir():
        raise SetupError(f"output directory {out.parent} does not exist; create it or fix --out")


def make(out: Path, plan: Plan, admin_url: str, scale: float = 1, seed: int = DEFAULTS["snapshot_seed"],
         fmt: str = "plain", log: Log = quiet, model: Model = REFERENCE,
         tools: ClientTools | None = None) -> dict[str, Any]:
    """Generate, dump and compress a snapshot to ``out`` (atomically), with its manifest.

    The build database is UTF8 whatever the server's default: the snapshot must not depend on it.
    """
    check_make_args(out, scale, fmt)
    tools = tools or ClientTools()
    build = f"cutover_build_{uuid.uuid4().hex[:10]}"
    with db.connection(admin_url, autocommit=True, purpose="the sandbox") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
                     .format(sql.Identifier(build)))
    url = db.with_database(admin_url, build)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        started = time.monotonic()
        counts = load_reference(url, plan, scale, seed, log, model)
        options = ["--no-owner", "--no-privileges", "--encoding=UTF8"]
        if fmt == "custom":
            options.append("-Fc")
        else:
            options += _restrict_key(tools, f"{plan.name}:{scale}:{seed}")
        dump, env = tools.command("pg_dump", url, *options)
        _dump_to(dump, env, tmp, gzipped=fmt != "custom")
        os.replace(tmp, out)
        manifest = {"manifest_version": MANIFEST_VERSION, "format": fmt, "scale": scale, "seed": seed,
                    "plan": plan.name, "generator": model.version, "schema_head": plan.schema_head,
                    "total_rows": sum(sum(t.values()) for t in counts.values()), "rows": counts,
                    "sha256": sha256_file(out)}
        manifest_path(out).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        log(f"snapshot: wrote {out} ({manifest['total_rows']:,} rows) in {time.monotonic() - started:.1f} s")
        return manifest
    finally:
        tmp.unlink(missing_ok=True)
        db.drop_database(admin_url, build)


def _restrict_key(tools: ClientTools, basis: str) -> list[str]:
    """A fixed psql \\restrict key where pg_dump supports one (15.14+): its default is random per dump,
    which would make two makes of the same data differ. Derived from the inputs, not guessable from data."""
    argv, env = tools.command("pg_dump", None, "--help")
    helptext = subprocess.run(argv, capture_output=True, text=True, check=False, env=env).stdout
    if "--restrict-key" not in helptext:
        return []
    return [f"--restrict-key={hashlib.sha256(basis.encode()).hexdigest()[:40]}"]


def _dump_to(argv: list[str], env: dict[str, str], out: Path, gzipped: bool) -> None:
    """pg_dump's stdout into ``out`` (gzip'd with no name or time in the header: byte-identical makes)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()) if proc.stderr else None)
    reader.start()
    with open(out, "wb") as raw:
        if gzipped:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                while chunk := proc.stdout.read(CHUNK):
                    gz.write(chunk)
        else:
            while chunk := proc.stdout.read(CHUNK):
                raw.write(chunk)
    reader.join()
    err = b"".join(errors).decode(errors="replace")
    if proc.wait() != 0:
        raise SetupError(f"pg_dump failed: {redact(err.strip())}")


def _tool_error(stderr: str, code: int) -> str:
    """The line of a tool's stderr that says why: its ERROR line (the ones after it are CONTEXT), else
    the last line."""
    lines = redact(stderr.strip()).splitlines()
    errors = [line for line in lines if "ERROR:" in line]
    return (errors or lines or [str(code)])[0 if errors else -1]


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SetupError(f"{what} failed: {_tool_error(done.stderr, done.returncode)}")


def _require_empty(conn: Connection, url: str) -> None:
    row = db.one(conn, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                 "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'")
    if row[0]:
        raise SetupError(f"target {mask_url(url)} is not empty ({row[0]} relations); restore into a new, "
                         "empty database (createdb NAME) and pass its URL with --db-url")


def ensure_roles(conn: Connection, plan: Plan) -> None:
    """Create the plan's application role when missing: pg_dump does not carry roles."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (plan.app_role,)).fetchone()
    if exists is None:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOBYPASSRLS").format(sql.Identifier(plan.app_role)))


RESTORE_ROLE_PREFIX = "cutover_restore_"


def _needs_a_superuser(conn: Connection, needs: dumpneeds.DumpNeeds, extensions: tuple[str, ...]) -> str:
    """Why this dump cannot be loaded by a non-superuser, or "": it keeps owners (OWNER TO and the like,
    which only a member of that role may say, and ``postgres`` is one no restore role may be a member
    of), or it creates an extension only a superuser may create."""
    if needs.owners:
        return f"keeps its owners ({', '.join(needs.owners[:5])}: pg_dump without --no-owner)"
    untrusted = dumpneeds.superuser_extensions(conn, extensions)
    if untrusted:
        return f"creates extensions only a superuser may create ({', '.join(untrusted)})"
    return ""


@contextmanager
def unprivileged_owner(url: str, enabled: bool = True) -> Iterator[str]:
    """The URL a dump is loaded through: when we are a superuser there, a login of its own that owns the
    target database and is nothing more: no superuser, CREATEDB or CREATEROLE. It has BYPASSRLS, as
    pg_dump's ``SET row_security = off`` needs of whoever loads a table with FORCE ROW LEVEL SECURITY
    (the role owns every row it loads anyway).

    A dump's SQL runs as whoever loads it: as a superuser, ``COPY ... TO PROGRAM`` or ``lo_export`` in it
    (directly, or in a function a CHECK or an index calls while the rows load) runs a command or writes a
    file on the server. ``SET ROLE`` is no fence (the SQL can ``RESET ROLE``); a login of that role is.
    Afterwards everything it made is handed back to us and the role is dropped, so the restored
    database looks as a superuser's restore leaves it. Without superuser rights the dump already runs
    with no more than ours; ``enabled=False`` (a dump that needs a superuser) loads as we are."""
    name = f"{RESTORE_ROLE_PREFIX}{secrets.token_hex(6)}"
    role = sql.Identifier(name)
    password = secrets.token_urlsafe(24)
    register_secret(password)
    target = sql.Identifier(db.database_name(url))
    with db.connection(url, autocommit=True) as conn:
        me, superuser, owner = db.one(conn, "SELECT current_user, rolsuper, pg_get_userbyid(d.datdba) FROM pg_roles, "
                                      "pg_database d WHERE rolname = current_user AND d.datname = current_database()")
        superuser = superuser and enabled
        if superuser:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                                 "BYPASSRLS PASSWORD {}").format(role, sql.Literal(password)))
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(target, role))
    if not superuser:
        yield url
        return
    try:
        yield db.with_login(url, name, password)
    finally:
        with db.connection(url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(target, sql.Identifier(owner)))
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(role, sql.Identifier(me)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
            conn.execute(sql.SQL("DROP ROLE {}").format(role))


def grant_app_role(conn: Connection, plan: Plan) -> None:
    """Re-grant what --no-privileges dropped: the app role's table privileges."""
    role = sql.Identifier(plan.app_role)
    for schema in ("public", *plan.schemas):  # and each schema the plan names tables in (app.case_notes)
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), role))
    privileges = sql.SQL(", ").join(sql.SQL(p) for p in plan.app_privileges if p.isalpha())
    tables = sql.SQL(", ").join(map(table_sql, plan.table_names))
    conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(privileges, tables, role))
    static = sql.SQL(", ").join(map(table_sql, plan.static_tables))
    conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(static, role))


def restore(path: Path, url: str, plan: Plan, jobs: int = 1, log: Log = quiet,
            tools: ClientTools | None = None, create_roles: bool = False) -> RestoreResult:
    """Validate, then restore ``path`` into the empty database at ``url``; report the wall-clock.

    Before anything is written: the extensions it creates must be on the server, and the roles it names
    are created as NOLOGIN roles when ``create_roles`` (a sandbox), else refused when missing."""
    begun = time.monotonic()
    tools = tools or ClientTools()
    extensions = required_extensions(path, tools)
    if extensions:
        with db.connection(url, autocommit=True) as conn:
            refuse_missing_extensions(conn, path, extensions, url)
    fmt = validate(path, plan, tools, log)
    needs = dump_needs(path, tools)
    with db.connection(url, autocommit=True) as conn:
        _require_empty(conn, url)
        created = provide_roles(conn, path, plan, needs.roles, url, create_roles, log)
        ensure_roles(conn, plan)
        superuser_for = _needs_a_superuser(conn, needs, extensions)
    if superuser_for:
        log(f"snapshot: {path.name} {superuser_for}: its SQL runs as the restoring login, a superuser; "
            "make it with pg_dump --no-owner (and create such extensions in the target first) to restore it "
            "as a non-superuser")
    started = time.monotonic()
    with unprivileged_owner(url, enabled=not superuser_for) as load_url:
        if fmt == "custom":
            _pg_restore(path, load_url, jobs, tools)
        else:
            _psql_stream(path, fmt, load_url, tools, log)
    seconds = time.monotonic() - started
    with db.connection(url, autocommit=True) as conn:
        grant_app_role(conn, plan)
        conn.execute("ANALYZE")
        rows = sum(sum(t.values()) for t in count_rows(conn, plan).values())
    total = time.monotonic() - begun
    made = f"; created the NOLOGIN roles it names: {', '.join(created)}" if created else ""
    log(f"snapshot: restored {path.name} ({fmt}) into {mask_url(url)}: {rows:,} rows in {total:.1f} s "
        f"(load {seconds:.1f} s){made}")
    return RestoreResult(format=fmt, seconds=seconds, rows=rows, total_seconds=total, created_roles=created)


def _pg_restore(path: Path, url: str, jobs: int, tools: ClientTools) -> None:
    """pg_restore a custom archive: in one transaction from a stream, or with -j from a seekable file."""
    options = ["--no-owner", "--no-privileges", "--exit-on-error"]
    if jobs <= 1:
        if tools.container is None:
            argv, env = tools.command("pg_restore", url, *options, "--single-transaction", str(path))
            _run(argv, env, "pg_restore")
            return
        argv, env = tools.command("pg_restore", url, *options, "--single-transaction", stdin=True)
        _stream(path, "custom", argv, env, "pg_restore")
        return
    inside = tools.copy_in(path)  # -j needs a file it can seek in
    try:
        argv, env = tools.command("pg_restore", url, *options, "-j", str(jobs), inside)
        _run(argv, env, "pg_restore")
    finally:
        tools.remove_copy(inside)


def _psql_stream(path: Path, fmt: str, url: str, tools: ClientTools, log: Log = quiet) -> None:
    """psql fed through the meta-command guard again (the file could have changed since it was
    validated), in psql's own restricted mode with our key where psql knows ``\\restrict``."""
    argv, env = tools.command("psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                              "-o", os.devnull, stdin=True)
    preamble = restricted_preamble() if _psql_knows_restrict(tools) else b""
    _stream(path, fmt, argv, env, "psql restore", log, guard=MetaCommandGuard(), preamble=preamble)


def _psql_knows_restrict(tools: ClientTools) -> bool:
    argv, env = tools.command("psql", None, "--version")
    return psql_restricts(subprocess.run(argv, capture_output=True, text=True, check=False, env=env).stdout)


def _stream(path: Path, fmt: str, argv: list[str], env: dict[str, str], what: str, log: Log = quiet,
            guard: MetaCommandGuard | None = None, preamble: bytes = b"") -> None:
    """Feed the snapshot to ``argv`` on stdin (plain files decompressed on the way, through ``guard``).

    Whatever stops the feeding early (the guard's refusal, Ctrl-C) kills the tool instead of closing its
    input: psql --single-transaction commits at the end of its input, so a closed pipe would commit
    the part already fed."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()) if proc.stderr else None)
    reader.start()
    started = shown = time.monotonic()
    fed = 0
    try:
        proc.stdin.write(preamble)
        for chunk in _plain_chunks(path, fmt if fmt != "custom" else "plain"):
            proc.stdin.write(chunk if guard is None else guard.feed(chunk))
            fed += len(chunk)
            if time.monotonic() - shown >= PROGRESS_EVERY_S:  # a real snapshot loads for minutes
                shown = time.monotonic()
                tool = what.split()[0]
                log(f"snapshot: loading: {fed / CHUNK:,.0f} MB of {'SQL' if tool == 'psql' else 'archive'} fed to "
                    f"{tool} in {shown - started:.0f} s")
        if guard is not None:
            proc.stdin.write(guard.finish())
    except BrokenPipeError:
        pass
    except BaseException:
        proc.kill()
        proc.wait()
        reader.join()
        raise
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    code = proc.wait()
    reader.join()
    if code != 0:
        why = _tool_error(b"".join(errors).decode(errors="replace"), code)
        raise SetupError(f"{what} failed (rolled back): {why}")


def cache_key(plan: Plan, tools: ClientTools, server_version: str = "") -> str:
    """What a generated snapshot depends on besides (scale, seed): the plan, the schema, the generator's
    code, this module's manifest format, and the server and pg_dump that write it (their versions shape
    the file: a 15.20 server dumped by a 15.18 pg_dump gave SQL a 15.18 server refuses)."""
    argv, env = tools.command("pg_dump", None, "--version")
    dumper = subprocess.run(argv, capture_output=True, text=True, check=False, env=env).stdout.strip()
    digest = hashlib.sha256()
    for part in (plan.path.read_bytes(), (REFERENCE_DIR / "schema.sql").read_bytes(),
                 Path(generator.__file__).read_bytes(), f"manifest {MANIFEST_VERSION}".encode(), dumper.encode(),
                 server_version.encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:12]


def usable_manifest(out: Path, plan: Plan) -> bool:
    """A cached snapshot is reused only with a manifest of this format naming the plan's own tenants."""
    try:
        manifest = json.loads(manifest_path(out).read_text())
    except (OSError, ValueError):
        return False
    if not out.exists() or not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        return False
    rows = manifest.get("rows")
    return isinstance(rows, dict) and any(plan.source in per_tenant for per_tenant in rows.values())


def default_snapshot(cache_dir: Path, plan: Plan, admin_url: str, scale: float, seed: int,
                     log: Log = quiet, tools: ClientTools | None = None) -> Path:
    """The generated default snapshot for (scale, seed), made once and cached across runs and workers."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    tools = tools or ClientTools()
    version = generator.GENERATOR_VERSION
    with db.connection(admin_url, purpose="the sandbox") as conn:
        row = conn.execute("SHOW server_version").fetchone()
    server_version = str(row[0]) if row else ""
    out = cache_dir / f"snapshot-s{scale}-seed{seed}-g{version}-{cache_key(plan, tools, server_version)}.sql.gz"
    with FileLock(str(out) + ".lock"):
        if not usable_manifest(out, plan):
            log(f"snapshot: generating the default snapshot (scale {scale}, seed {seed}) into {out}")
            make(out, plan, admin_url, scale=scale, seed=seed, log=log, tools=tools)
    return out
