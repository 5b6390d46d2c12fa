"""The reference model with its tenant ids in another type: uuid or bigint instead of text.

Many multi-tenant schemas key their tenants by uuid (and the runbook's Phase 2b converts ours), some
by bigint. Here the reference schema is rewritten column by column (``tenants.id`` and every column
that references it become that type; the policies read ``app.tenant_id`` as that type) and the
generated rows carry mapped tenant ids, so every test that runs on the reference model can run on
these copies: same rows, same plan, only the tenant ids' type differs.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from cutover.core import db
from cutover.core.plan import DEFAULT_PLAN, Plan, load_plan
from cutover.model import generator
from cutover.sandbox import snapshot
from cutover.sandbox.backends import ServerInfo

TENANT_COLUMNS = {"tenant_id", "target_tenant_id"}

# The reference tenants' ids in each type; the plan's source and target are rewritten to them.
IDS = {
    "uuid": {generator.SOURCE: "aaaaaaaa-0000-4000-8000-000000000001",
             generator.TARGET: "bbbbbbbb-0000-4000-8000-000000000002",
             generator.OTHER_PROVIDER: "cccccccc-0000-4000-8000-000000000003"},
    "bigint": {generator.SOURCE: "9000000001", generator.TARGET: "9000000002",
               generator.OTHER_PROVIDER: "9000000003"},
}


def schema(kind: str) -> str:
    """schema.sql with the tenant id columns of type ``kind``; the policies compare their text with the setting."""
    text = (snapshot.REFERENCE_DIR / "schema.sql").read_text()
    text, n = re.subn(r"\b(id|tenant_id|target_tenant_id) text (PRIMARY KEY,\n    slug|NOT NULL REFERENCES tenants)",
                      rf"\1 {kind} \2", text)
    assert n == 14, n  # tenants.id, 12 tenant columns, case_shares.target_tenant_id
    text, n = re.subn(r"\b(tenant_id|target_tenant_id) = current_setting", r"\1::text = current_setting", text)
    assert n == 4, n
    return text


def _mapped(kind: str, data: Iterable[generator.TableData]) -> Iterator[generator.TableData]:
    ids = IDS[kind]
    for table in data:
        where = [i for i, c in enumerate(table.columns) if c in TENANT_COLUMNS or (table.table == "tenants"
                                                                                  and c == "id")]
        rows = [tuple(ids[v] if i in where else v for i, v in enumerate(row)) for row in table.rows]
        yield dataclasses.replace(table, rows=rows)


def model(kind: str, directory: Path) -> snapshot.Model:
    path = directory / f"schema-{kind}.sql"
    path.write_text(schema(kind))
    return snapshot.Model(path, lambda scale, seed: _mapped(kind, generator.generate(scale, seed)),
                          f"{generator.GENERATOR_VERSION}-{kind}")


def plan_file(kind: str, directory: Path, target: str | None = None) -> Path:
    """The reference plan with the tenants' ids of type ``kind`` (``target``: as the operator wrote it)."""
    ids = IDS[kind]
    text = DEFAULT_PLAN.read_text()
    text = text.replace(f'target = "{generator.TARGET}"', f'target = "{target or ids[generator.TARGET]}"')
    for old, new in ids.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    path = directory / f"plan-{kind}.toml"
    path.write_text(text)
    return path


def database(server: ServerInfo, kind: str, directory: Path, scale: float = 0.05, seed: int = 5) -> tuple[str, Plan]:
    """A new database of the reference model with ``kind`` tenant ids, roles and grants as a restore
    leaves them, and its plan; the caller drops the database."""
    plan = load_plan(plan_file(kind, directory))
    url = db.create_database(server.admin_url, f"tenants_{kind}_{uuid.uuid4().hex[:8]}")
    with db.connection(url, autocommit=True) as conn:
        snapshot.ensure_roles(conn, plan)
    snapshot.load_reference(url, plan, scale, seed, model=model(kind, directory))
    with db.connection(url, autocommit=True) as conn:
        snapshot.grant_app_role(conn, plan)
    return url, plan
