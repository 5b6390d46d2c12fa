"""Tenant ids in their own type: text, uuid, bigint, whatever the tenant table's key is.

The plan names the tenants as text (``source = "bbbbbbbb-…"``); the database holds them typed. A
value read back is a ``UUID`` or an ``int``, and never equals the plan's string, so comparing them in
Python said "tenant 'bbbbbbbb-…' does not exist" of a tenant that does. Here the key column's type is
read from the catalog once, where a command (or the checks) first connects, and the plan's ids are
written as the database writes them (its own text of the typed value: a uuid in lower case, a bigint
without leading zeros).
Every tenant the SQL names is then a literal cast to that type (:func:`literal`), and every count or
report keyed by tenant uses the same text, so the two always agree.
"""

from __future__ import annotations

import dataclasses

import psycopg
from psycopg import sql

from cutover.core.db import Connection
from cutover.core.errors import PlanError
from cutover.core.plan import Plan, table_regclass

TENANT_KEY = "id"  # the tenant table's key column (A2 and A7 read it by this name too)


def column_type(conn: Connection, table: str, column: str) -> tuple[str, str] | None:
    """(schema, type name) of ``table.column`` from the catalog; None when there is no such column."""
    row = conn.execute("SELECT n.nspname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                       "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE a.attrelid = to_regclass(%s) "
                       "AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped",
                       (table_regclass(table), column)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def typed(conn: Connection, plan: Plan) -> Plan:
    """``plan`` with its tenants' type from the catalog and its ids as the database writes them.

    Unchanged when already typed, or when the tenant table or its key column is missing (the
    pre-flight names that as a blocker). An id the type refuses is a one-line :class:`PlanError`.
    """
    if plan.tenant_type is not None:
        return plan
    kind = column_type(conn, plan.tenant_table, TENANT_KEY)
    if kind is None:
        return plan
    cast = sql.Identifier(*kind)

    def canonical(key: str, value: str) -> str:
        try:
            with conn.transaction():  # a savepoint: a refused id leaves the caller's transaction usable
                row = conn.execute(sql.SQL("SELECT CAST({} AS {})::text").format(sql.Literal(value), cast)).fetchone()
        except psycopg.DataError:
            raise PlanError(f"plan [tenants].{key}: '{value}' is not a {kind[1]}, the type of "
                            f"{plan.tenant_table}.{TENANT_KEY}; write the tenant's id as the database holds it"
                            ) from None
        assert row is not None
        return str(row[0])

    return dataclasses.replace(plan, tenant_type=kind, source=canonical("source", plan.source),
                               target=canonical("target", plan.target),
                               protected=tuple(canonical("protected", p) for p in plan.protected))


def literal(plan: Plan, tenant: str) -> sql.Composable:
    """A tenant id for SQL, cast to the tenant key's own type once :func:`typed` has read it."""
    if plan.tenant_type is None:
        return sql.Literal(tenant)
    return sql.SQL("CAST({} AS {})").format(sql.Literal(tenant), sql.Identifier(*plan.tenant_type))

