"""Before any check: the database under check holds the schema the plan describes, and a sandbox
restore brought back every row the snapshot's manifest lists (the sandbox, or the --db-url database).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cutover.core import db
from cutover.core.plan import Plan
from cutover.sandbox import snapshot
from cutover.sandbox.server import SessionSandbox


@pytest.mark.setA
def test_the_database_holds_the_plan_schema(cutover_db: str, cutover_plan: Plan) -> None:
    with db.connection(cutover_db, read_only=True) as conn:
        present = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()}
    missing = sorted(set(cutover_plan.all_tables) - present)
    assert not missing, f"tables the plan names are missing from the target: {missing}"


@pytest.mark.setA
@pytest.mark.sandbox
def test_sandbox_rows_match_the_snapshot_manifest(
    cutover_db: str, cutover_plan: Plan, cutover_sandbox: SessionSandbox
) -> None:
    if cutover_sandbox.is_url:
        pytest.skip("a --db-url target has no manifest to compare with")
    manifest_file = snapshot.manifest_path(Path(str(cutover_sandbox.restore_info()["snapshot"])))
    if not manifest_file.exists():
        pytest.skip(f"no manifest next to the snapshot ({manifest_file})")
    expected = json.loads(manifest_file.read_text())["rows"]
    with db.connection(cutover_db, read_only=True) as conn:
        found = snapshot.count_rows(conn, cutover_plan)
    assert found == expected
