"""The billing model: a schema shaped like an open-source billing SaaS (organization_id uuid tenants,
Rails-style versions, no RLS, no share or events table, customer_id without foreign keys), and its
data generator. It has no plan of its own: what a plan for it needs is what `cutover plan draft`
writes plus the operator's ownership decisions, and the tests draft it."""

from __future__ import annotations

from pathlib import Path

from cutover.sandbox.snapshot import Model
from tests.billing_model import generator

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "schema.sql"
MODEL = Model(SCHEMA, generator.generate, generator.GENERATOR_VERSION)
SOURCE, TARGET, OTHER = generator.SOURCE, generator.TARGET, generator.OTHER
