"""Shared helpers for the cutover tests: run the CLI as an operator would, and fingerprint a database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from psycopg import sql

from cutover.core import db
from cutover.core.plan import Plan

ROOT = Path(__file__).resolve().parent.parent


def run_cutover(url: str, *args: str, actor: str | None = "test:pytest", extra_env: dict[str, str] | None = None,
                script: bool = False, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``cutover ARGS`` (or the runbook script) with DATABASE_URL and CUTOVER_ACTOR in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    env["DATABASE_URL"] = url
    if actor is not None:
        env["CUTOVER_ACTOR"] = actor
    env.update(extra_env or {})
    argv = ([sys.executable, str(ROOT / "scripts" / "cutover_patient_tenant.py")] if script
            else [sys.executable, *_command(env)])
    return subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False,
                          cwd=ROOT)


# Set in extra_env, they run the command through tests/pausing_cutover.py: held after that step, or
# with an audit part of that many bytes.
PAUSE_ENV = "CUTOVER_TEST_PAUSE_AFTER_STEP"
PART_BYTES_ENV = "CUTOVER_TEST_AUDIT_PART_BYTES"


def _command(env: dict[str, str]) -> list[str]:
    hooked = PAUSE_ENV in env or PART_BYTES_ENV in env
    return [str(ROOT / "tests" / "pausing_cutover.py")] if hooked else ["-m", "cutover.cli"]


def spawn_cutover(url: str, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    env.update(DATABASE_URL=url, CUTOVER_ACTOR="test:pytest", **(extra_env or {}))
    return subprocess.Popen([sys.executable, *_command(env), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def audit_filter(plan: Plan) -> sql.Composable:
    a = plan.audit
    return sql.SQL("NOT ({ty} = ANY({kinds}) AND {src} = {sv})").format(
        ty=sql.Identifier(a.type_column), src=sql.Identifier(a.source_column), sv=sql.Literal(a.source_value),
        kinds=sql.Literal([a.started, a.completed, a.swept, a.reversed, a.allow_list_part]))


def checksum(url: str, plan: Plan, *, include_audit: bool = False) -> dict[str, str]:
    """An md5 over every row of every table (ordered by key); the cutover's own audit rows optionally left out."""
    out = {}
    with db.connection(url, read_only=True) as conn:
        for table in plan.all_tables:
            where: sql.Composable = sql.SQL("TRUE")
            if table == plan.audit.table and not include_audit:
                where = audit_filter(plan)
            row = conn.execute(sql.SQL("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                                       "FROM {} t WHERE {}").format(sql.Identifier(table), where)).fetchone()
            assert row is not None
            out[table] = str(row[0])
    return out


def scalar(url: str, query: Any, params: Any = None) -> Any:
    with db.connection(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def execute_sql(url: str, *statements: Any) -> None:
    with db.connection(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def machine_python() -> str:
    """The interpreter the venv was made from: the project's dependencies are not installed there."""
    python = str(getattr(sys, "_base_executable", "") or "python3")
    probe = subprocess.run([python, "-c", "import psycopg"], capture_output=True, check=False)
    assert probe.returncode != 0, f"{python} can import psycopg: this test needs a python without the project"
    return python

