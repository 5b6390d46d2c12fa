"""What a snapshot needs from the server besides its schema: the extensions it creates and the roles
its policies (and, where the dump kept them, its owners and grants) name. Read from the file before
anything is written; real dumps made by pg_dump on real servers, restored on a real PostgreSQL 15."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cutover.core import db
from cutover.core.errors import SetupError
from cutover.core.plan import Plan
from cutover.core.redact import split_password
from cutover.sandbox import backends, dumpneeds, snapshot
from cutover.sandbox.backends import SandboxSpec, ServerInfo
from cutover.sandbox.pgbin import ClientTools
from cutover.sandbox.server import SessionSandbox, release
from tests.support import REHEARSAL, ROOT, operator_log

SCALE = 0.05
POLICY_ROLES = ("analytics_ro", "authenticated")


def needs_of(text: str) -> dumpneeds.DumpNeeds:
    """The parser on a dump's text, fed in small pieces so that every boundary case is crossed."""
    data = text.encode()
    return dumpneeds.scan_sql(data[i:i + 7] for i in range(0, len(data), 7))


# -- reading the dump ----------------------------------------------------------------------------------

DUMP_TEXT = """\\restrict AbC123
SET client_encoding = 'UTF8';
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public;
COMMENT ON EXTENSION pgcrypto IS 'CREATE EXTENSION fake_in_comment; GRANT x TO y';
CREATE FUNCTION public.f(a timestamp with time zone) RETURNS integer
    LANGUAGE plpgsql
    AS $_$
BEGIN
GRANT SELECT ON t TO fake_in_body;
CREATE EXTENSION fake_ext_in_body;
RETURN 1;
END$_$;
CREATE TABLE public.t (
    id integer,
    tenant text
);
ALTER TABLE public.t OWNER TO "Owner Role";
COPY public.t (id, tenant) FROM stdin;
1\tGRANT SELECT ON t TO fake_in_rows;
2\tCREATE POLICY p ON t TO fake_in_rows USING (true);
\\.

COPY public.empty (id) FROM stdin;
\\.

CREATE POLICY p1 ON public.t FOR SELECT TO "Weird ""Role", analytics_ro USING ((tenant = 'x; TO fake_in_string'::text));
CREATE POLICY "to" ON public.t AS RESTRICTIVE TO authenticated, PUBLIC, CURRENT_USER, SESSION_USER, CURRENT_ROLE
  USING (true) WITH CHECK (true);
CREATE POLICY p3 ON public.t USING (true);
CREATE POLICY "CREATE POLICY q ON t TO fake_in_name" ON public.t TO "public" USING (true);
GRANT ALL ON FUNCTION public.f(a timestamp with time zone) TO reporting WITH GRANT OPTION;
GRANT SELECT(id) ON TABLE public.t TO "MixedCase";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON TABLE public.t FROM old_app GRANTED BY granter;
ALTER DEFAULT PRIVILEGES FOR ROLE migrator IN SCHEMA public GRANT SELECT ON TABLES TO readers;
SET SESSION AUTHORIZATION 'session_owner';
SET SESSION AUTHORIZATION DEFAULT;
\\unrestrict AbC123
"""


def test_the_roles_a_dump_names_are_read_from_policies_owners_and_grants_only() -> None:
    assert needs_of(DUMP_TEXT).roles == ("MixedCase", "Owner Role", "Weird \"Role", "analytics_ro", "authenticated",
                                         "granter", "migrator", "old_app", "readers", "reporting",
                                         "session_owner")


def test_the_extensions_a_dump_creates_are_read_from_its_create_extension_statements() -> None:
    assert needs_of(DUMP_TEXT).extensions == ("pgcrypto", "uuid-ossp")


def test_nothing_in_rows_bodies_strings_or_quoted_names_counts() -> None:
    needs = needs_of(DUMP_TEXT)
    assert not [n for n in (*needs.roles, *needs.extensions) if "fake" in n]


def test_the_extensions_alone_stop_reading_at_the_first_rows() -> None:
    """pg_dump creates extensions before any data: a GB snapshot is not read through to find them."""
    head, _, _ = DUMP_TEXT.partition("1\tGRANT")
    chunks = iter([head.encode(), b"this is never read"])
    needs = dumpneeds.scan_sql(chunks, stop_at_data=True)
    assert needs.extensions == ("pgcrypto", "uuid-ossp")
    assert next(chunks) == b"this is never read"


def test_an_archives_table_of_contents_names_its_extensions() -> None:
    toc = ("; Archive created at 2026-12-04\n;\n2; 3079 16385 EXTENSION - pgcrypto \n"
           "3398; 0 0 COMMENT - EXTENSION pgcrypto \n3; 3079 16422 EXTENSION - uuid-ossp \n"
           "216; 1259 16436 TABLE public t postgres\n")
    assert dumpneeds.extensions_in_toc(toc) == ("pgcrypto", "uuid-ossp")


# -- real dumps on real servers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dump_server() -> Iterator[ServerInfo]:
    """A server of this module's own: roles are cluster-wide, so making and dropping them here cannot race
    another test (or xdist worker) on the session's shared server."""
    info = backends.start(SandboxSpec(backend="local"))
    yield info
    backends.stop(info)


def _pg_dump(url: str, out: Path, *options: str) -> Path:
    argv, env = ClientTools().command("pg_dump", url, *options)
    done = subprocess.run(argv, env=env, capture_output=True, check=True)
    if "-Fc" in options:
        out.write_bytes(done.stdout)
    else:
        out.write_bytes(gzip.compress(done.stdout))
    return out


@pytest.fixture(scope="module")
def dumps(dump_server: ServerInfo, cutover_plan: Plan, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real pg_dump snapshots of the plan's schema: with policies naming roles the restoring server lacks
    (the runbook's way, and custom format); with owners and grants kept; with extensions this server has."""
    out = tmp_path_factory.mktemp("needs")
    base = snapshot.make(out / "base.sql.gz", cutover_plan, dump_server.admin_url, scale=SCALE, seed=7)
    assert base["total_rows"] > 0
    admin = dump_server.admin_url
    url = db.create_database(admin, "with_needs")
    try:
        snapshot.restore(out / "base.sql.gz", url, cutover_plan)
        with db.connection(url, autocommit=True) as conn:
            for role in (*POLICY_ROLES, "report_owner"):
                conn.execute(f'CREATE ROLE "{role}" NOLOGIN')
            conn.execute("CREATE POLICY analytics_read ON events FOR SELECT TO analytics_ro USING (true)")
            conn.execute("CREATE POLICY own_rows ON patients TO authenticated USING (true)")
            conn.execute('CREATE EXTENSION pgcrypto; CREATE EXTENSION "uuid-ossp"')
        found = {
            "policies.sql.gz": _pg_dump(url, out / "policies.sql.gz", "--no-owner", "--no-privileges"),
            "policies.dump": _pg_dump(url, out / "policies.dump", "--no-owner", "--no-privileges", "-Fc"),
        }
        with db.connection(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE events OWNER TO report_owner")
            conn.execute("GRANT SELECT ON patients TO analytics_ro")
        found["owners.sql.gz"] = _pg_dump(url, out / "owners.sql.gz")
        with db.connection(url, autocommit=True) as conn:  # a dry run that is BLOCKED: the rehearsal stops early
            conn.execute("ALTER TABLE events OWNER TO postgres")
            conn.execute("INSERT INTO events (id, tenant_id, event_type, payload, source_service) "
                         "VALUES ('ev-mystery', 'tenant-apollo-001', 'mystery.happened', '{}', 'test')")
        found["blocked.sql.gz"] = _pg_dump(url, out / "blocked.sql.gz", "--no-owner", "--no-privileges")
    finally:
        db.drop_database(admin, "with_needs")
        with db.connection(admin, autocommit=True) as conn:
            for role in (*POLICY_ROLES, "report_owner"):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    found["base.sql.gz"] = out / "base.sql.gz"
    return found


def _with_extension(src: Path, dst: Path, name: str) -> Path:
    """The dump as pg_dump would have written it on a server with ``name`` installed: its CREATE EXTENSION
    where pg_dump puts extensions, before the first object."""
    text = gzip.decompress(src.read_bytes())
    at = text.index(b"\nCREATE ")
    line = f"\nCREATE EXTENSION IF NOT EXISTS {name} WITH SCHEMA public;\n".encode()
    dst.write_bytes(gzip.compress(text[:at] + line + text[at:]))
    return dst


def roles_on(url: str, names: tuple[str, ...]) -> dict[str, bool]:
    """name -> can it log in, for those of ``names`` that exist on the server."""
    with db.connection(url) as conn:
        rows = conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)", (list(names),))
        return {str(name): bool(login) for name, login in rows}


def relation_count(url: str) -> int:
    with db.connection(url) as conn:
        row = db.one(conn, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname = 'public'")
    return int(row[0])


@pytest.fixture
def own_sandbox(tmp_path: Path, cutover_plan: Plan) -> Iterator[tuple[Path, list[str]]]:
    """A shared directory and a log for a SessionSandbox of the test's own (its own local server)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    lines: list[str] = []
    yield shared, lines
    release(shared)


def _session(shared: Path, lines: list[str], plan: Plan, snapshot_path: Path) -> SessionSandbox:
    spec = SandboxSpec(backend="local", snapshot=str(snapshot_path))
    return SessionSandbox(spec, plan, shared, "gw0", os.getpid(), lines.append)


@pytest.mark.parametrize("name", ["policies.sql.gz", "policies.dump"])
def test_a_dump_whose_policies_name_unknown_roles_restores_in_the_sandbox(
        name: str, dumps: dict[str, Path], cutover_plan: Plan, own_sandbox: tuple[Path, list[str]]) -> None:
    shared, lines = own_sandbox
    provider = _session(shared, lines, cutover_plan, dumps[name])
    assert roles_on(provider.server().admin_url, POLICY_ROLES) == {}
    provider.template()
    assert roles_on(provider.server().admin_url, POLICY_ROLES) == {"analytics_ro": False, "authenticated": False}
    assert provider.restore_info()["created_roles"] == list(POLICY_ROLES)
    (restored,) = [ln for ln in lines if ln.startswith("snapshot: restored ")]
    assert "NOLOGIN roles" in restored and "analytics_ro, authenticated" in restored
    clone = provider.clone("roles")
    with db.connection(clone) as conn:
        policies = dict(conn.execute("SELECT policyname, roles::text FROM pg_policies "
                                     "WHERE policyname IN ('analytics_read', 'own_rows')").fetchall())
    assert policies == {"analytics_read": "{analytics_ro}", "own_rows": "{authenticated}"}


def test_a_dump_that_kept_owners_and_grants_restores_with_those_roles(
        dumps: dict[str, Path], cutover_plan: Plan, own_sandbox: tuple[Path, list[str]]) -> None:
    shared, lines = own_sandbox
    provider = _session(shared, lines, cutover_plan, dumps["owners.sql.gz"])
    provider.template()
    created = provider.restore_info()["created_roles"]
    assert created == ["analytics_ro", "authenticated", "report_owner"]
    with db.connection(provider.clone("owners")) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'events'").fetchone()
        granted = conn.execute("SELECT has_table_privilege('analytics_ro', 'patients', 'SELECT')").fetchone()
    assert owner == ("report_owner",) and granted == (True,)


def test_on_a_db_url_target_missing_roles_are_named_and_never_created(
        dumps: dict[str, Path], dump_server: ServerInfo, cutover_plan: Plan) -> None:
    url = db.create_database(dump_server.admin_url, f"target_{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(SetupError) as info:
            snapshot.restore(dumps["policies.sql.gz"], url, cutover_plan)
        assert relation_count(url) == 0
    finally:
        db.drop_database(dump_server.admin_url, db.database_name(url))
    message = str(info.value)
    assert "analytics_ro, authenticated" in message and "CREATE ROLE" in message and "\n" not in message
    assert roles_on(dump_server.admin_url, POLICY_ROLES) == {}
    with db.connection(dump_server.admin_url) as conn:
        app = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (cutover_plan.app_role,)).fetchone()
    assert app is not None, "the plan's app role was there before (the dump was made here): not a write"


def test_cutover_snapshot_restore_names_missing_roles_in_one_line_and_exits_2(
        dumps: dict[str, Path], dump_server: ServerInfo) -> None:
    url = db.create_database(dump_server.admin_url, f"cli_{uuid.uuid4().hex[:8]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_") and k != "DATABASE_URL"}
    try:
        done = subprocess.run([sys.executable, "-m", "cutover.cli", "snapshot", "restore",
                               str(dumps["policies.dump"]), "--db-url", url],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
        assert relation_count(url) == 0
    finally:
        db.drop_database(dump_server.admin_url, db.database_name(url))
    assert done.returncode == 2, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("cutover: error:")]
    assert "analytics_ro, authenticated" in line
    password = split_password(url)[1]
    assert password is not None and password not in done.stderr + done.stdout


def test_a_dump_with_an_extension_no_server_here_has_is_refused_naming_it(
        dumps: dict[str, Path], cutover_plan: Plan, own_sandbox: tuple[Path, list[str]], tmp_path: Path) -> None:
    """Debian's PostgreSQL 15 on this machine has pgcrypto and uuid-ossp but not pgvector's ``vector``: the
    15 dump's server is refused before it starts (its share/extension has no vector.control)."""
    shared, lines = own_sandbox
    path = _with_extension(dumps["base.sql.gz"], tmp_path / "vector.sql.gz", "vector")
    provider = _session(shared, lines, cutover_plan, path)
    with pytest.raises(SetupError) as info:
        provider.template()
    message = str(info.value)
    assert "vector" in message and "\n" not in message
    assert "postgresql-15-pgvector" in message and "--docker-image" in message
    assert "uuid-ossp" not in message and "pgcrypto" not in message
    assert not [ln for ln in lines if ln.startswith("snapshot: restored ") or "initdb" in ln], lines


def test_a_predefined_role_of_a_newer_postgresql_is_refused_not_created(
        dumps: dict[str, Path], dump_server: ServerInfo, cutover_plan: Plan, tmp_path: Path) -> None:
    """pg_use_reserved_connections is PostgreSQL 16's; no CREATE ROLE may make a pg_ role on 15."""
    text = gzip.decompress(dumps["base.sql.gz"].read_bytes())
    at = text.index(b"\n--\n-- PostgreSQL database dump complete")
    policy = b"\nCREATE POLICY reserved ON public.events TO pg_use_reserved_connections USING (true);\n"
    path = tmp_path / "reserved.sql.gz"
    path.write_bytes(gzip.compress(text[:at] + policy + text[at:]))
    url = db.create_database(dump_server.admin_url, f"pg_{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(SetupError, match="predefined roles .*pg_use_reserved_connections.*newer PostgreSQL"):
            snapshot.restore(path, url, cutover_plan, create_roles=True)
        assert relation_count(url) == 0
    finally:
        db.drop_database(dump_server.admin_url, db.database_name(url))


def test_a_refused_extension_writes_nothing_into_a_db_url_target(
        dumps: dict[str, Path], dump_server: ServerInfo, cutover_plan: Plan, tmp_path: Path) -> None:
    path = _with_extension(dumps["base.sql.gz"], tmp_path / "vector.sql.gz", "vector")
    url = db.create_database(dump_server.admin_url, f"ext_{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(SetupError, match="vector"):
            snapshot.restore(path, url, cutover_plan)
        assert relation_count(url) == 0
    finally:
        db.drop_database(dump_server.admin_url, db.database_name(url))


@pytest.mark.parametrize("name", ["policies.sql.gz", "policies.dump"])
def test_extensions_the_server_has_pass_the_check(name: str, dumps: dict[str, Path], dump_server: ServerInfo) -> None:
    required = snapshot.required_extensions(dumps[name])
    assert required == ("pgcrypto", "uuid-ossp")
    assert dumpneeds.missing_extensions(dump_server.admin_url, required) == []
    with db.connection(dump_server.admin_url) as conn:
        assert dumpneeds.missing_extensions(conn, (*required, "vector")) == ["vector"]


def test_the_rehearsal_names_the_roles_it_created_in_its_output_and_operator_log(
        pytester: pytest.Pytester, example: Callable[..., list[str]], dumps: dict[str, Path]) -> None:
    args = example(**REHEARSAL)
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", f"--snapshot={dumps['blocked.sql.gz']}",
                                           *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 2 and "mystery.happened" in out, out  # restored, then stopped by the dry run
    assert "created the NOLOGIN roles it names: analytics_ro, authenticated" in out
    log = operator_log(pytester.path)
    assert log["rehearsal"]["created_roles"] == list(POLICY_ROLES)
    restore = next(t for t in log["timeline"] if t["step"] == "restore the snapshot")
    assert restore["status"] == "ok" and "analytics_ro, authenticated" in restore["detail"]
    markdown = (pytester.path / "artifacts" / "latest" / "operator-log.md").read_text()
    assert "roles created for the restore (NOLOGIN, sandbox only" in markdown


def test_the_rehearsal_refuses_a_missing_extension_as_a_setup_error(
        pytester: pytest.Pytester, example: Callable[..., list[str]], dumps: dict[str, Path], tmp_path: Path) -> None:
    path = _with_extension(dumps["base.sql.gz"], tmp_path / "vector.sql.gz", "vector")
    args = example(**REHEARSAL)
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", f"--snapshot={path}", *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 2, out
    (verdict,) = [ln for ln in out.splitlines() if ln.startswith("REHEARSAL NOT READY")]
    assert "setup error" in verdict and "vector" in verdict and "postgresql-15-pgvector" in verdict
    log = operator_log(pytester.path)
    assert "vector" in log["setup_error"] and log["exit_status"] == 2
    assert "sandbox: initdb" not in out and "restore the snapshot" not in out, out  # before any server starts
