"""Snapshots against a real PostgreSQL: determinism, both formats, manifest, RLS, and bad input."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg import sql

from cutover.core import db
from cutover.core.errors import SetupError
from cutover.core.plan import Plan
from cutover.sandbox import dumpneeds, snapshot
from cutover.sandbox.backends import ServerInfo
from cutover.sandbox.pgbin import ClientTools
from tests.support import execute_sql, reference_database, scalar

SCALE = 0.05


@pytest.fixture(scope="session")
def snapshots(tmp_path_factory: pytest.TempPathFactory, cutover_server: ServerInfo, cutover_plan: Plan) -> Path:
    """Two plain makes and one custom make of the same (scale, seed)."""
    out = tmp_path_factory.mktemp("snapshots")
    for name, fmt in (("one.sql.gz", "plain"), ("two.sql.gz", "plain"), ("one.dump", "custom")):
        snapshot.make(out / name, cutover_plan, cutover_server.admin_url, scale=SCALE, seed=99, fmt=fmt)
    return out


def relation_count(url: str) -> int:
    with db.connection(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname = 'public'").fetchone()
    assert row is not None
    return int(row[0])


def test_same_seed_and_scale_make_identical_files(snapshots: Path) -> None:
    assert (snapshots / "one.sql.gz").read_bytes() == (snapshots / "two.sql.gz").read_bytes()
    one = json.loads(snapshot.manifest_path(snapshots / "one.sql.gz").read_text())
    two = json.loads(snapshot.manifest_path(snapshots / "two.sql.gz").read_text())
    assert one == two


def test_plain_snapshot_is_the_runbook_format(snapshots: Path) -> None:
    text = gzip.decompress((snapshots / "one.sql.gz").read_bytes()).decode()
    assert text.startswith("--\n-- PostgreSQL database dump\n--")
    assert "OWNER TO" not in text and "GRANT " not in text  # --no-owner --no-privileges


def test_other_seed_makes_other_data(snapshots: Path, cutover_server: ServerInfo, cutover_plan: Plan,
                                     tmp_path: Path) -> None:
    snapshot.make(tmp_path / "s.sql.gz", cutover_plan, cutover_server.admin_url, scale=SCALE, seed=100)
    assert (tmp_path / "s.sql.gz").read_bytes() != (snapshots / "one.sql.gz").read_bytes()


@pytest.mark.parametrize("name", ["one.sql.gz", "one.dump"])
def test_both_formats_restore_with_counts_equal_to_the_manifest(
    snapshots: Path, name: str, empty_db: str, cutover_plan: Plan
) -> None:
    result = snapshot.restore(snapshots / name, empty_db, cutover_plan)
    manifest = json.loads(snapshot.manifest_path(snapshots / name).read_text())
    with db.connection(empty_db) as conn:
        assert snapshot.count_rows(conn, cutover_plan) == manifest["rows"]
    assert result.rows == manifest["total_rows"] > 1000
    assert set(manifest["rows"]["events"]) == {"tenant-apollo-001", "tenant-fortis-002", "tenant-curaway-patients"}


def test_custom_format_restores_in_parallel(snapshots: Path, empty_db: str, cutover_plan: Plan) -> None:
    result = snapshot.restore(snapshots / "one.dump", empty_db, cutover_plan, jobs=2)
    assert result.format == "custom" and result.rows > 1000


def _as_app_user(url: str, plan: Plan, tenant: str | None, query: sql.Composed) -> int:
    """What the application sees: as its role, with row security on (the suite's connections have it off)."""
    with db.connection(url) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(plan.app_role)))
        conn.execute("SET row_security = on")
        if tenant is not None:
            conn.execute("SELECT set_config(%s, %s, false)", (plan.tenant_setting, tenant))
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def test_rls_hides_other_tenants_rows_from_the_app_role(fresh_db: str, cutover_plan: Plan) -> None:
    count = sql.SQL("SELECT count(*) FROM {}")
    events = count.format(sql.Identifier("events"))
    patients = count.format(sql.Identifier("patients"))
    with db.connection(fresh_db) as conn:
        per_tenant = dict(conn.execute("SELECT tenant_id, count(*) FROM events GROUP BY 1").fetchall())
        bypass = conn.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = %s",
                              (cutover_plan.app_role,)).fetchone()
        shared_to_fortis = conn.execute(
            "SELECT count(DISTINCT case_id) FROM case_shares WHERE target_tenant_id = 'tenant-fortis-002'").fetchone()
    assert bypass == (False,)
    assert _as_app_user(fresh_db, cutover_plan, None, events) == 0
    for tenant, n in per_tenant.items():
        assert _as_app_user(fresh_db, cutover_plan, tenant, events) == n
    assert _as_app_user(fresh_db, cutover_plan, "tenant-fortis-002", patients) == 0
    assert shared_to_fortis is not None and shared_to_fortis[0] > 0
    cases = count.format(sql.Identifier("cases"))
    assert _as_app_user(fresh_db, cutover_plan, "tenant-fortis-002", cases) == shared_to_fortis[0]


def _truncate(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) * 2 // 3])
    return dst


def _other_schema(url: str, tmp_path: Path) -> Path:
    with db.connection(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE widgets (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO widgets VALUES (1, 'a')")
    out = tmp_path / "widgets.sql.gz"
    argv, env = ClientTools().command("pg_dump", url, "--no-owner", "--no-privileges")
    import subprocess

    dump = subprocess.run(argv, env=env, capture_output=True, check=True)
    out.write_bytes(gzip.compress(dump.stdout))
    return out


BAD_INPUTS = ["missing", "not-a-snapshot", "truncated-gzip", "truncated-custom", "other-schema", "failing-sql",
              "cut-at-a-line"]
TRAILER = b"\n--\n-- PostgreSQL database dump complete\n--\n"


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_snapshot_is_refused_and_nothing_is_written(
    case: str, snapshots: Path, empty_db: str, cutover_server: ServerInfo, cutover_plan: Plan, tmp_path: Path
) -> None:
    expected = {
        "missing": "not found",
        "not-a-snapshot": "neither gzip'd SQL nor a pg_dump custom archive",
        "truncated-gzip": "corrupt or truncated",
        "truncated-custom": "corrupt or truncated|not a readable pg_dump archive",
        "other-schema": "does not hold the plan's schema",
        "failing-sql": "rolled back",
        "cut-at-a-line": "cut short",
    }[case]
    if case == "missing":
        path = tmp_path / "nope.sql.gz"
    elif case == "not-a-snapshot":
        path = tmp_path / "notes.txt"
        path.write_text("hello\n")
    elif case == "truncated-gzip":
        path = _truncate(snapshots / "one.sql.gz", tmp_path / "t.sql.gz")
    elif case == "truncated-custom":
        path = _truncate(snapshots / "one.dump", tmp_path / "t.dump")
    elif case == "other-schema":
        other = db.create_database(cutover_server.admin_url, f"other_{uuid.uuid4().hex[:8]}")
        try:
            path = _other_schema(other, tmp_path)
        finally:
            db.drop_database(cutover_server.admin_url, db.database_name(other))
    elif case == "cut-at-a-line":  # gzip intact, every table there, the constraints and RLS section missing
        text = gzip.decompress((snapshots / "one.sql.gz").read_bytes())
        path = tmp_path / "cut.sql.gz"
        cut = text.rindex(b"\n", 0, text.index(b" ADD CONSTRAINT ")) + 1
        path.write_bytes(gzip.compress(text[:cut]))
    else:  # a valid snapshot whose last statement fails: the restore must roll back entirely
        head, trailer, tail = gzip.decompress((snapshots / "one.sql.gz").read_bytes()).partition(TRAILER)
        path = tmp_path / "fails.sql.gz"
        path.write_bytes(gzip.compress(head + b"\nSELECT 1/0;\n" + trailer + tail))
    with pytest.raises(SetupError, match=expected) as info:
        snapshot.restore(path, empty_db, cutover_plan)
    assert "\n" not in str(info.value)
    assert relation_count(empty_db) == 0


def test_a_non_empty_target_is_refused(snapshots: Path, fresh_db: str, cutover_plan: Plan) -> None:
    before = relation_count(fresh_db)
    with pytest.raises(SetupError, match="is not empty"):
        snapshot.restore(snapshots / "one.sql.gz", fresh_db, cutover_plan)
    assert relation_count(fresh_db) == before


def test_make_writes_nothing_on_bad_input(cutover_server: ServerInfo, cutover_plan: Plan, tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="does not exist"):
        snapshot.make(tmp_path / "no" / "dir.sql.gz", cutover_plan, cutover_server.admin_url, scale=SCALE)
    with pytest.raises(SetupError, match="must be positive"):
        snapshot.make(tmp_path / "x.sql.gz", cutover_plan, cutover_server.admin_url, scale=0)
    assert list(tmp_path.iterdir()) == []
    with db.connection(cutover_server.admin_url) as conn:
        builds = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'cutover_build_%'").fetchone()
    assert builds == (0,)


def test_default_snapshot_is_cached(cutover_server: ServerInfo, cutover_plan: Plan, tmp_path: Path) -> None:
    first = snapshot.default_snapshot(tmp_path, cutover_plan, cutover_server.admin_url, 1, 5)
    stamp = first.stat().st_mtime_ns
    again = snapshot.default_snapshot(tmp_path, cutover_plan, cutover_server.admin_url, 1, 5)
    assert again == first and first.stat().st_mtime_ns == stamp
    shutil.rmtree(tmp_path)


def test_uncompressed_plain_sql_restores(snapshots: Path, empty_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    """Regression: plain .sql (not gzip'd) was once read in text mode and crashed the validation."""
    plain = tmp_path / "one.sql"
    plain.write_bytes(gzip.decompress((snapshots / "one.sql.gz").read_bytes()))
    result = snapshot.restore(plain, empty_db, cutover_plan)
    manifest = json.loads(snapshot.manifest_path(snapshots / "one.sql.gz").read_text())
    assert (result.format, result.rows) == ("plain", manifest["total_rows"])


# -- a snapshot is data, never code -------------------------------------------------------------------------

def _edited(snapshots: Path, tmp_path: Path, edit: Callable[[bytes], bytes]) -> Path:
    path = tmp_path / "edited.sql.gz"
    path.write_bytes(gzip.compress(edit(gzip.decompress((snapshots / "one.sql.gz").read_bytes()))))
    return path


def _restrict_line_becomes(command: bytes) -> Callable[[bytes], bytes]:
    def edit(text: bytes) -> bytes:
        start = text.index(b"\n\\restrict ") + 1
        return text[:start] + command + text[text.index(b"\n", start):]
    return edit


def _before_first_copy(command: bytes) -> Callable[[bytes], bytes]:
    def edit(text: bytes) -> bytes:
        at = text.index(b"\nCOPY ") + 1
        return text[:at] + command + b"\n" + text[at:]
    return edit


@pytest.mark.parametrize("where", ["restrict-line", "own-line", "after-sql-on-a-line"])
def test_a_psql_meta_command_in_a_snapshot_is_refused_before_anything_runs(
    where: str, snapshots: Path, empty_db: str, cutover_plan: Plan, tmp_path: Path
) -> None:
    """Reproduces issue 24: the dump's ``\\restrict`` line edited into ``\\! touch FILE`` ran the shell."""
    planted = tmp_path / "planted"
    shell = b"\\! touch " + str(planted).encode()
    edit = {"restrict-line": _restrict_line_becomes(shell), "own-line": _before_first_copy(shell),
            "after-sql-on-a-line": _before_first_copy(b"SELECT 1; " + shell)}[where]
    path = _edited(snapshots, tmp_path, edit)
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    line = next(n for n, text in enumerate(lines, 1) if shell in text)
    with pytest.raises(SetupError) as info:
        snapshot.restore(path, empty_db, cutover_plan)
    assert not planted.exists(), "the snapshot ran a shell command"
    assert str(info.value).startswith(f"snapshot line {line}: psql meta-command '\\!' refused: "
                                      "a snapshot is data, never code")
    assert "\n" not in str(info.value)
    assert relation_count(empty_db) == 0


def test_psql_itself_refuses_what_the_guard_reads_differently(
    snapshots: Path, empty_db: str, cutover_plan: Plan, tmp_path: Path
) -> None:
    """SQL that switches standard_conforming_strings off changes how psql reads quotes: ``'a\\''`` is then
    a whole string to psql and an open one to the guard, which so misses the ``\\!`` after it. psql runs
    in its own restricted mode under our key, and refuses it itself."""
    planted = tmp_path / "planted"
    hidden = (b"SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false);\n"
              b"SELECT 'a\\'' \\! touch " + str(planted).encode() + b" #'\n;\n")
    path = _edited(snapshots, tmp_path, _before_first_copy(hidden))
    with pytest.raises(SetupError, match=r"rolled back.*backslash commands are restricted"):
        snapshot.restore(path, empty_db, cutover_plan)
    assert not planted.exists(), "the snapshot ran a shell command"
    assert relation_count(empty_db) == 0


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the server's own user can write in: where a dump's ``COPY ... TO PROGRAM`` would
    leave its mark."""
    path = Path(tempfile.mkdtemp(prefix="cutover-test-program-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _dump_running_a_program(server: ServerInfo, plan: Plan, planted: Path, out: Path, fmt: str) -> Path:
    """A pg_dump of a database whose CHECK constraint calls a function that runs ``COPY ... TO PROGRAM``:
    loading the table's rows runs it as whoever restores them, in either format, and no meta-command
    is involved."""
    url = reference_database(server, plan, 0.02, 1, prefix="program")
    try:
        execute_sql(url, sql.SQL(
            "CREATE FUNCTION public.mark(x integer) RETURNS integer LANGUAGE plpgsql AS $$ BEGIN "
            "EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', {cmd}); RETURN x; END $$").format(
                cmd=sql.Literal(f"touch {planted}")),
            "CREATE TABLE public.marked (a integer CHECK (public.mark(a) = a))",
            "INSERT INTO public.marked VALUES (1)")
        planted.unlink()  # the row was checked once here, as the superuser who inserted it
        argv, env = server.tools().command("pg_dump", url, "--no-owner", "--no-privileges",
                                           *(["-Fc"] if fmt == "custom" else []), "-f", str(out))
        subprocess.run(argv, env=env, check=True, capture_output=True)
    finally:
        db.drop_database(server.admin_url, db.database_name(url))
    return out


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_a_dump_runs_as_a_non_superuser_so_copy_to_program_fails(
    fmt: str, cutover_server: ServerInfo, cutover_plan: Plan, empty_db: str, shared_dir: Path
) -> None:
    """Reproduces issue 24: the dump's SQL ran as the sandbox superuser, so COPY ... TO PROGRAM ran."""
    planted = shared_dir / "planted"
    path = _dump_running_a_program(cutover_server, cutover_plan, planted, shared_dir / f"dump.{fmt}", fmt)
    with pytest.raises(SetupError, match=r"failed.*ERROR: must be superuser.* to COPY to or from an external program"):
        snapshot.restore(path, empty_db, cutover_plan)
    assert not planted.exists(), "the dump ran a program on the server"
    assert relation_count(empty_db) == 0
    leftover = scalar(cutover_server.admin_url, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'cutover_restore_%'")
    assert leftover == 0


def test_a_file_changed_after_its_check_is_stopped_before_the_line_and_rolled_back(
    snapshots: Path, empty_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream into psql is guarded too, and a refused feed kills psql: closing its input would make
    ``--single-transaction`` commit the tables and rows already fed (small chunks, so that they are)."""
    planted = tmp_path / "planted"

    def after_the_last_copy(text: bytes) -> bytes:
        at = text.index(b"\n\\.\n", text.rindex(b"\nCOPY ")) + 4
        assert at > 4 * 4096
        return text[:at] + b"\\! touch " + str(planted).encode() + b"\n" + text[at:]

    path = _edited(snapshots, tmp_path, after_the_last_copy)
    monkeypatch.setattr(snapshot, "CHUNK", 4096)
    with pytest.raises(SetupError, match=r"^snapshot line \d+: psql meta-command '\\!' refused"):
        snapshot._psql_stream(path, "plain-gz", empty_db, ClientTools())  # as if validation had passed
    assert not planted.exists()
    assert relation_count(empty_db) == 0


@pytest.mark.parametrize(("needs", "why"), [
    (dumpneeds.DumpNeeds(roles=("report_owner",), owners=("report_owner",)), "keeps its owners (report_owner"),
    (dumpneeds.DumpNeeds(extensions=("dblink",)), "creates extensions only a superuser may create (dblink)"),
    (dumpneeds.DumpNeeds(extensions=("pgcrypto",), roles=("analytics_ro",)), ""),
])
def test_only_a_dump_that_keeps_owners_or_needs_an_untrusted_extension_loads_as_the_superuser(
    needs: dumpneeds.DumpNeeds, why: str, cutover_server: ServerInfo
) -> None:
    """The exceptions to the non-superuser restore, each named in the restore's line; policies and grants
    naming roles, and trusted extensions, load as the restore role."""
    with db.connection(cutover_server.admin_url) as conn:
        assert snapshot._needs_a_superuser(conn, needs, needs.extensions).startswith(why)
        assert bool(snapshot._needs_a_superuser(conn, needs, needs.extensions)) is bool(why)
