"""The billing model is what issue 27 met on a billing SaaS: its shape, checked on the loaded database,
so a later edit of schema.sql or the generator cannot quietly turn it back into a schema the suite
already knew."""

from __future__ import annotations

from tests.billing_model import OTHER, SOURCE, TARGET, generator
from tests.support import scalar


def test_the_billing_model_has_the_shape_the_issue_describes(billing_db: str) -> None:
    scoped = scalar(billing_db, "SELECT count(*) FROM information_schema.columns c JOIN pg_class r ON "
                                "r.relname = c.table_name WHERE c.table_schema = 'public' AND c.column_name = "
                                "'organization_id' AND c.data_type = 'uuid' AND NOT r.relispartition")
    assert scoped == 13
    assert scalar(billing_db, "SELECT count(*) FROM schema_migrations") == generator.N_MIGRATIONS > 1
    assert scalar(billing_db, "SELECT max(version) FROM schema_migrations") == generator.SCHEMA_HEAD
    assert scalar(billing_db, "SELECT count(*) FROM pg_class WHERE relrowsecurity") == 0
    assert scalar(billing_db, "SELECT count(*) FROM pg_policy") == 0
    assert scalar(billing_db, "SELECT relkind FROM pg_class WHERE relname = 'usage_events'") == "p"
    # customer_id columns with no foreign key behind them (Rails' belongs_to), and self-references
    no_fk = scalar(billing_db, "SELECT array_agg(c.table_name::text ORDER BY c.table_name) FROM "
                               "information_schema.columns c JOIN pg_class r ON r.relname = c.table_name WHERE "
                               "c.column_name = 'customer_id' AND NOT r.relispartition AND NOT EXISTS (SELECT 1 "
                               "FROM pg_constraint f WHERE f.contype = 'f' AND f.conrelid = r.oid AND "
                               "f.conkey = ARRAY[c.ordinal_position::int2])")
    assert no_fk == ["credit_notes", "invoices", "subscriptions", "usage_events"]
    selfref = scalar(billing_db, "SELECT array_agg(conrelid::regclass::text ORDER BY conrelid::regclass::text) "
                                 "FROM pg_constraint WHERE contype = 'f' AND conrelid = confrelid")
    assert selfref == ["invoices", "plans", "subscriptions"]
    assert scalar(billing_db, "SELECT count(*) FROM invoices WHERE parent_invoice_id IS NOT NULL") > 0
    # the target organization has rows of its own; the other one too
    assert scalar(billing_db, "SELECT count(*) FROM billing_entities WHERE organization_id = %s", (TARGET,)) == 1
    assert scalar(billing_db, "SELECT count(*) FROM customers WHERE organization_id = %s", (SOURCE,)) >= 4
    assert scalar(billing_db, "SELECT count(*) FROM customers WHERE organization_id = %s", (OTHER,)) > 0
    assert scalar(billing_db, "SELECT count(*) FROM customers WHERE organization_id NOT IN (%s, %s)",
                  (SOURCE, OTHER)) == 0
