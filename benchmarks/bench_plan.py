"""Wall time of ``cutover plan draft`` and ``cutover plan check`` on a schema with hundreds of tables.

The reference model is loaded into a sandbox database, then N extra tenant-scoped tables (each with a
primary key, a foreign key to the previous one and a classified column) are added, so the catalog
has N + 14 tables. Both commands run as an operator runs them (a `cutover` process). The catalog is
read in one query, so the time should barely grow with N. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_plan.py [--tables 100,300,1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from psycopg import sql

from cutover.core import db
from cutover.core.options import resolve
from cutover.core.plan import load_plan
from cutover.sandbox import backends, snapshot

ROOT = Path(__file__).resolve().parent.parent


def timed(args: list[str]) -> tuple[float, int]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "cutover.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, env={k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")})
    return time.monotonic() - started, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tables", default="100,300,1000", help="extra tables per run (default 100,300,1000)")
    args = parser.parse_args()
    settings = resolve({"sandbox": "local"}, {})
    plan = load_plan(settings.plan_path)
    info = backends.start(backends.SandboxSpec.of(settings))
    try:
        print(f"{'tables':>7} {'draft s':>8} {'check s':>8}  exit codes (draft, check)", flush=True)
        for extra in (int(n) for n in args.tables.split(",")):
            url = db.create_database(info.admin_url, f"bench_plan_{extra}")
            try:
                with db.connection(url, autocommit=True) as conn:
                    snapshot.ensure_roles(conn, plan)
                snapshot.load_reference(url, plan, 0.05, 1)
                with db.connection(url, autocommit=True) as conn:
                    for i in range(extra):
                        parent = sql.SQL(", parent_id bigint REFERENCES {}").format(
                            sql.Identifier(f"extra_{i - 1}")) if i else sql.SQL("")
                        conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, tenant_id text NOT NULL "
                                             "REFERENCES tenants (id), kind text{})").format(
                            sql.Identifier(f"extra_{i}"), parent))
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "draft.toml"
                    draft_s, draft_rc = timed(["plan", "draft", f"--db-url={url}", f"--out={out}"])
                    check_s, check_rc = timed(["plan", "check", f"--db-url={url}", f"--plan={out}"])
                print(f"{extra + 14:>7} {draft_s:>8.2f} {check_s:>8.2f}  ({draft_rc}, {check_rc})", flush=True)
            finally:
                db.drop_database(info.admin_url, f"bench_plan_{extra}")
    finally:
        backends.stop(info)


if __name__ == "__main__":
    main()
