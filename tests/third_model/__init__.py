"""The third model: the reference schema changed the ways operators' schemas differ from it (issue 23).

Tenant-keyed foreign keys of each kind the cutover moves rows under (ON UPDATE CASCADE; DEFERRABLE
INITIALLY IMMEDIATE and DEFERRED), a ``(tenant_id, id)`` key, a table outside ``public``
(``clinical.match_requests``), a quoted mixed-case name (``"Document References"``), a materialized
view the cutover refreshes, an audit trigger on ``messages`` writing into ``audit."Message Changes"``
(tenant-scoped, outside ``public``, a quoted name; declared with ``written_by``) and, after a restore,
an owner role under FORCE ROW LEVEL SECURITY.
Built on the reference schema and its generator, so that the Hypothesis row mixes' oracle (written
for the reference schema) applies to it unchanged, under the names in ``RENAMED``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from psycopg import sql

from cutover.core.plan import Plan, table_sql
from cutover.model.generator import TableData
from cutover.model.generator import generate as reference_rows
from cutover.sandbox.snapshot import REFERENCE, Model
from tests.support import execute_sql

HERE = Path(__file__).resolve().parent
PLAN = HERE / "plan.toml"
CHANGES = HERE / "schema.sql"  # run after the reference schema
GENERATOR_VERSION = "third-1"
# The reference tables this model names differently: the reference name -> the plan's.
RENAMED = {"document_references": "Document References", "match_requests": "clinical.match_requests"}
# The table the audit trigger on messages writes, as the plan names it (the generator leaves it empty).
AUDIT = "audit.Message Changes"


def generate(scale: float, seed: int) -> Iterator[TableData]:
    """The reference generator's rows under this model's table names."""
    for data in reference_rows(scale, seed):
        yield dataclasses.replace(data, table=RENAMED.get(data.table, data.table))


def model(directory: Path) -> Model:
    """The model, its schema file written into ``directory``: the reference schema, then ``CHANGES``
    (one file, as a snapshot's model takes it)."""
    schema = directory / "third_model.sql"
    schema.write_text(REFERENCE.schema.read_text() + "\n" + CHANGES.read_text())
    return Model(schema, generate, GENERATOR_VERSION)


def owned_by_a_forced_role(url: str, plan: Plan, role: str) -> None:
    """Hand every table of ``plan`` (and their schemas) to ``role``, a login without BYPASSRLS: FORCE ROW
    LEVEL SECURITY binds it, as it binds an application's migration role that owns its tables."""
    who = sql.Identifier(role)
    execute_sql(url, *(sql.SQL("GRANT ALL ON SCHEMA {} TO {}").format(sql.Identifier(s), who)
                       for s in ("public", *plan.schemas)),
                *(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table_sql(t), who) for t in plan.all_tables))
