"""The `cutover` command as an operator runs it: exit codes, one-line errors, no secret in output."""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from cutover.cli import build_parser
from cutover.core.plan import DEFAULT_PLAN
from cutover.sandbox.backends import ServerInfo, free_port
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import execute_sql, machine_python

CANARY = "canary-Pw-" + uuid.uuid4().hex[:8]


def cutover(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cutover.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env, check=False)


def assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("cutover: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert CANARY not in done.stdout + done.stderr


def test_make_then_restore_prints_the_wall_clock(tmp_path: Path, empty_db: str) -> None:
    out = tmp_path / "snap.sql.gz"
    made = cutover("snapshot", "make", "--out", str(out), "--scale", "0.02", "--seed", "3")
    assert made.returncode == 0, made.stderr
    manifest = json.loads((tmp_path / "snap.sql.gz.manifest.json").read_text())
    restored = cutover("snapshot", "restore", str(out), "--db-url", empty_db)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith("restore wall-clock: ")
    assert f"({manifest['total_rows']} rows, plain-gz; load " in restored.stdout


def _tiny(tmp_path: Path) -> tuple[Path, Path]:
    """A hand-written snapshot and a plan naming only its three tables, to get past validation."""
    plan = DEFAULT_PLAN.read_text()
    head, _, rest = plan.partition("# Tables in the order")
    head = re.sub(r"move_steps = \[.*?\n\]", 'move_steps = [["organizations"], ["events"]]', head, flags=re.S)
    head = re.sub(r'(case_table|patient_table|document_table|key_table) = "\w+"', r'\1 = "organizations"', head)
    head = re.sub(r'(share_table|idempotency_table) = "\w+"', r"\1 = false", head)  # neither table is left
    events = rest[rest.index("[tables.events]"):rest.index("[tables.provider_profiles]")]
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(head.replace('tables = ["tenants", "alembic_version"]', 'tables = ["tenants"]')
                         + '[tables.organizations]\nkey = "id"\nowner = "patient"\n' + events
                         + rest[rest.index("# EVENT_TYPE_CLASSIFICATION"):])
    snap = tmp_path / "s.sql"
    snap.write_text("--\nCREATE TABLE public.tenants (\n);\nCREATE TABLE public.organizations (\n);\n"
                    "CREATE TABLE public.events (\n);\n--\n-- PostgreSQL database dump complete\n--\n")
    return snap, plan_file


def test_wrong_password_is_named_but_never_shown(tmp_path: Path, cutover_server: ServerInfo) -> None:
    snap, plan = _tiny(tmp_path)
    url = f"postgresql://postgres:{CANARY}@127.0.0.1:{urlsplit(cutover_server.admin_url).port}/postgres"
    done = cutover("snapshot", "restore", str(snap), "--db-url", url, "--plan", str(plan))
    assert_one_line_error(done, "authentication failed for user 'postgres'", "password not shown", "--db-url")


def test_unreachable_host_is_a_one_line_error(tmp_path: Path) -> None:
    snap, plan = _tiny(tmp_path)
    url = f"postgresql://ops:{CANARY}@127.0.0.1:{free_port()}/prod"
    done = cutover("snapshot", "restore", str(snap), "--db-url", url, "--plan", str(plan))
    assert_one_line_error(done, "cannot reach PostgreSQL at 127.0.0.1:", "--db-url")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "not found"), (b"\x1f\x8b\x08\x00garbage", "corrupt or truncated"), (b"PK\x03\x04", "neither gzip"),
     (gzip.compress(b"--\n-- PostgreSQL database dump\n--\nCREATE TABLE public.tenants (\n);\n"), "cut short")],
)
def test_bad_snapshot_files(tmp_path: Path, empty_db: str, content: bytes | None, fragment: str) -> None:
    snap = tmp_path / "snap.sql.gz"
    if content is not None:
        snap.write_bytes(content)
    done = cutover("snapshot", "restore", str(snap), "--db-url", empty_db)
    assert_one_line_error(done, fragment, "snapshot")


def test_a_meta_command_in_a_snapshot_is_one_line_exit_2_and_runs_nothing(tmp_path: Path, empty_db: str) -> None:
    snap, plan = _tiny(tmp_path)
    planted = tmp_path / "planted"
    snap.write_text(snap.read_text().replace("CREATE TABLE public.events",
                                             f"\\! touch {planted}\nCREATE TABLE public.events"))
    done = cutover("snapshot", "restore", str(snap), "--db-url", empty_db, "--plan", str(plan))
    assert_one_line_error(done, "snapshot line 6: psql meta-command '\\!' refused: a snapshot is data, never code")
    assert not planted.exists()


def test_restore_without_a_target_names_the_option(tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("CUTOVER_DB_URL", "DATABASE_URL")}
    done = cutover("snapshot", "restore", str(tmp_path / "x.sql.gz"), env=env)
    assert_one_line_error(done, "--db-url")


def test_usage_errors_exit_2_and_write_nothing(tmp_path: Path) -> None:
    done = cutover("snapshot", "make", "--out", str(tmp_path / "x.sql.gz"), "--format", "zip")
    assert done.returncode == 2 and "invalid choice" in done.stderr
    done = cutover("snapshot", "make", "--out", str(tmp_path / "x.sql.gz"), "--scale", "-1")
    assert_one_line_error(done, "--scale must be positive")
    assert list(tmp_path.iterdir()) == []


def test_the_runbooks_command_works_with_the_machines_python(tmp_path: Path) -> None:
    """`python scripts/cutover_patient_tenant.py --dry-run`, as the runbook writes it, finds the project's .venv."""
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("CUTOVER_DB_URL", "DATABASE_URL")}
    script = Path(__file__).resolve().parent.parent / "scripts" / "cutover_patient_tenant.py"
    done = subprocess.run([machine_python(), str(script), "--dry-run"], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path, check=False)
    assert "ModuleNotFoundError" not in done.stderr
    assert_one_line_error(done, "dry-run needs a database", "--db-url")


@pytest.fixture
def unprivileged(cut_over_db: DatabaseUnderCheck, cutover_server: ServerInfo) -> Iterator[str]:
    """The cut-over database's URL as a role that may log in and read nothing: every read is refused.
    BYPASSRLS, so that row security (a blocker of its own, tests/test_row_security.py) is not what stops it."""
    role = f"noread_{uuid.uuid4().hex[:8]}"
    execute_sql(cutover_server.admin_url, f"CREATE ROLE {role} LOGIN BYPASSRLS PASSWORD '{CANARY}'")
    parts = urlsplit(cut_over_db.url)
    yield urlunsplit(parts._replace(netloc=f"{role}:{CANARY}@{parts.hostname}:{parts.port}"))
    execute_sql(cutover_server.admin_url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


@pytest.mark.parametrize(("command", "code", "head"), [
    (["dry-run"], 2, "cutover: error: dry-run: the database refused it: the role in the database URL lacks a"),
    (["plan", "check"], 2, "cutover: error: plan check: the database refused it: the role in the database URL"),
    (["report", "--rebuild", "--report-path=REPORT"], 2, "cutover: error: report: the database refused it: the role "),
    (["reverse", "--dry-run", "--report-path=REPORT"], 4, "cutover: ROLLED BACK: reverse dry run failed: the role "),
    (["plan", "draft"], 2, "cutover: error: plan draft: the database refused it: the role in the database URL"),
    (["snapshot", "make", "--out=OUT", "--scale=0.01"], 2, "cutover: error: snapshot make: the database refused "),
])
def test_a_database_error_is_one_line_and_its_exit_code_never_a_traceback(
    unprivileged: str, cut_over_db: DatabaseUnderCheck, tmp_path: Path, command: list[str], code: int, head: str
) -> None:
    """Issue 24's ninth finding: a permission the dry run lacked printed a traceback and exited 1 (BLOCKED).
    The reverse's dry run runs in the reverse's own transaction: 4, rolled back, as its README line says."""
    rebuilt = tmp_path / "rebuilt.json"
    report = str(rebuilt if "--rebuild" in command else cut_over_db.report_path)
    out = tmp_path / "snap.sql.gz"
    done = cutover(*[part.replace("REPORT", report).replace("OUT", str(out)) for part in command],
                   f"--db-url={unprivileged}")
    assert "Traceback" not in done.stderr
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(head), lines
    assert "(permission denied " in lines[0] and "; SQLSTATE 42501)" in lines[0], lines
    assert CANARY not in done.stdout + done.stderr
    assert not rebuilt.exists() and not out.exists()


def _leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from _leaf_parsers(sub, (*path, name))


def test_every_command_registers_one_documented_handler_with_its_parser() -> None:
    """One dispatch style: a command is found by the handler its parser carries, never by an if-chain on its
    name, and that handler says what the command is for."""
    leaves = dict(_leaf_parsers(build_parser()))
    assert {" ".join(p) for p in leaves} >= {"dry-run", "execute", "sweep", "reverse", "report", "snapshot make",
                                             "snapshot restore", "evidence verify", "plan draft", "plan check",
                                             "plan upgrade"}
    for path, parser in leaves.items():
        handler = parser.get_default("handler")
        assert callable(handler), f"cutover {' '.join(path)} registers no handler"
        assert handler.__doc__, f"cutover {' '.join(path)}: {handler.__name__} has no docstring"


def test_plan_check_of_a_plan_that_does_not_load_is_bad_plan_and_a_snapshots_is_a_setup_error(tmp_path: Path) -> None:
    """4 for plan check and plan upgrade (operators' scripts branch on it), 2 for every other command's bad plan."""
    broken = tmp_path / "plan.toml"
    broken.write_text(DEFAULT_PLAN.read_text().replace('[tables.quotes]\nkey = "id"', '[tables.quotes]\nkye = "id"', 1))
    unreachable = f"postgresql://ops@127.0.0.1:{free_port()}/prod"
    checked = cutover("plan", "check", f"--plan={broken}", f"--db-url={unreachable}")
    assert checked.returncode == 4, checked.stderr
    (line,) = checked.stderr.strip().splitlines()
    assert line.startswith("cutover: error: ") and "unknown key 'kye'" in line
    restored = cutover("snapshot", "restore", str(tmp_path / "none.sql.gz"), f"--plan={broken}",
                       f"--db-url={unreachable}")
    assert_one_line_error(restored, "unknown key 'kye'")
