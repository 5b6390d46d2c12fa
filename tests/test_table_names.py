"""Any table name (issue 23, point 6): names that need quoting, written into a plan and read back.

``"Case Notes"`` (a space and capitals), a name holding a quote and a newline (which, written bare,
would start a TOML section of its own), and a non-ASCII name: ``plan draft`` writes a plan that loads
with each name exactly, and the unplanned-table blocker's fix is a section header that parses to it.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from psycopg import sql

from cutover.core.errors import SetupError
from cutover.core.plan import Plan, load_plan, toml_key
from cutover.sandbox import snapshot
from cutover.sandbox.pgbin import ClientTools
from tests.support import execute_sql, run_cutover

ODD_NAMES = ("Case Notes", 'note"s\n[plan]\nname = "x"', "Behandlungsnotizen_ä")


def _create(url: str, name: str) -> None:
    """A patient table of that name: keyed by id, on a case, carrying the tenant column."""
    execute_sql(url, sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants (id), "
                             "case_id text NOT NULL REFERENCES cases (id), body text)").format(sql.Identifier(name)))


@pytest.fixture
def odd_db(fresh_db: str) -> str:
    for name in ODD_NAMES:
        _create(fresh_db, name)
    return fresh_db


def test_plan_draft_writes_a_plan_that_loads_with_any_table_name(odd_db: str, tmp_path: Path) -> None:
    out = tmp_path / "draft.toml"
    done = run_cutover(odd_db, "plan", "draft", f"--db-url={odd_db}", f"--out={out}")
    assert done.returncode == 0, done.stderr
    draft = load_plan(out)
    for name in ODD_NAMES:
        rule = draft.table(name)
        assert rule.key == ("id",) and rule.owner == "patient", name
        assert [(r.column, r.table) for r in rule.references] == [("case_id", "cases")]
    assert draft.name == "drafted-cutover"  # the newline in a name started no section of its own


def test_the_unplanned_table_fix_is_a_section_that_names_the_table(odd_db: str) -> None:
    dry = run_cutover(odd_db, "dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    lines = [ln for ln in dry.stdout.splitlines() if "unplanned-table:" in ln]
    assert len(lines) == len(ODD_NAMES), dry.stdout  # one line each: no name breaks its line
    fixed = set()
    for line in lines:
        header = re.search(r"add (\[tables\..*\]) \(key, owner", line)
        assert header is not None, line
        parsed = tomllib.loads(f"{header.group(1)}\nkey = \"id\"\n")
        fixed |= set(parsed["tables"])
    assert fixed == set(ODD_NAMES)


@pytest.mark.parametrize("name", ["cases", "Case Notes", 'a"b', "a\\b", "x\ny", "tab\there", "del\x7f", "ä", "😀",
                                  "a.b", ""])
def test_toml_key_reads_back_as_the_name(name: str) -> None:
    assert tomllib.loads(f"[tables.{toml_key(name)}]\nk = 1\n")["tables"] == {name: {"k": 1}}


# -- snapshot validation: the plan's tables found in plain dumps and custom archives --------------------

SNAPSHOT_NAMES = ("Case Notes", 'note"s\n[plan]', "Behandlungsnotizen_ä", "reminders")


@pytest.fixture
def odd_dumps(empty_db: str, tmp_path: Path) -> dict[str, Path]:
    """A plain gzip'd dump and a custom archive of tables pg_dump must quote, one in schema ``app``."""
    execute_sql(empty_db, "CREATE SCHEMA app", "CREATE TABLE app.reminders (id bigint PRIMARY KEY)",
                *[sql.SQL("CREATE TABLE {} (id text PRIMARY KEY)").format(sql.Identifier(name))
                  for name in SNAPSHOT_NAMES[:3]])
    tools = ClientTools()
    plain, custom = tmp_path / "odd.sql.gz", tmp_path / "odd.dump"
    argv, env = tools.command("pg_dump", empty_db, "--no-owner", "--no-privileges")
    done = subprocess.run(argv, env=env, capture_output=True, check=True)
    plain.write_bytes(gzip.compress(done.stdout))
    argv, env = tools.command("pg_dump", empty_db, "--no-owner", "--no-privileges", "-Fc", "-f", str(custom))
    subprocess.run(argv, env=env, capture_output=True, check=True)
    return {"plain": plain, "custom": custom}


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_snapshot_validation_finds_quoted_non_ascii_and_non_public_tables(odd_dumps: dict[str, Path], fmt: str,
                                                                          cutover_plan: Plan) -> None:
    plan = dataclasses.replace(cutover_plan, static_tables=SNAPSHOT_NAMES, tables=())
    assert snapshot.validate(odd_dumps[fmt], plan) == ("custom" if fmt == "custom" else "plain-gz")
    wrong = dataclasses.replace(plan, static_tables=(*SNAPSHOT_NAMES, "Case notes"))
    with pytest.raises(SetupError, match=r"missing tables: Case notes;"):
        snapshot.validate(odd_dumps[fmt], wrong)
