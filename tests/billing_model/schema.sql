-- The billing model: a schema shaped like an open-source multi-tenant billing SaaS (a Rails
-- application), unlike the reference one in every way the cutover used to assume:
-- - the tenant is an organization: `organization_id uuid` in every tenant-scoped table, and the
--   tenants table is `organizations` (no settings to mirror, no active/protected flags);
-- - Rails-style versions: `schema_migrations(version)` holds every applied migration, one row each;
-- - no row-level security, no case-share table, no events table of the kind the cutover writes to;
-- - Rails conventions: single-table inheritance (payment_providers.type), `customer_id` columns with no foreign key behind them (subscriptions,
--   invoices, credit_notes, usage_events), self-references (plans.parent_id,
--   invoices.parent_invoice_id, subscriptions.previous_subscription_id);
-- - usage_events partitioned by month (its key is (id, "timestamp"));
-- - the target organization has rows of its own: its own billing entity, plan and API key.
-- The scenario: organization A hands all its customers' data to organization B. Which tables belong
-- to the customers and which stay with A is the operator's decision, not something the schema says.

CREATE TABLE schema_migrations (version character varying PRIMARY KEY);

CREATE TABLE ar_internal_metadata (
    key character varying PRIMARY KEY,
    value character varying,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE TABLE organizations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name character varying NOT NULL,
    default_currency character varying NOT NULL DEFAULT 'USD',
    timezone character varying NOT NULL DEFAULT 'UTC',
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

-- Not tenant-scoped: a user may belong to several organizations (through memberships).
CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email character varying NOT NULL UNIQUE,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE TABLE memberships (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    user_id uuid NOT NULL REFERENCES users (id),
    role integer NOT NULL DEFAULT 0,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    value character varying NOT NULL UNIQUE,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE TABLE billing_entities (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    code character varying NOT NULL,
    name character varying NOT NULL,
    invoice_prefix character varying,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

-- Rails single-table inheritance: `type` names the subclass.
CREATE TABLE payment_providers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    type character varying NOT NULL,
    code character varying NOT NULL,
    name character varying NOT NULL,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE TABLE plans (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    code character varying NOT NULL,
    name character varying NOT NULL,
    interval integer NOT NULL,
    amount_cents bigint NOT NULL,
    amount_currency character varying NOT NULL,
    parent_id uuid REFERENCES plans (id),  -- a customer's override of a plan
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE TABLE customers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    billing_entity_id uuid NOT NULL REFERENCES billing_entities (id),
    external_id character varying NOT NULL,
    name character varying,
    email character varying,
    currency character varying,
    deleted_at timestamp(6) without time zone,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

-- customer_id without a foreign key, as Rails models leave it (belongs_to :customer).
CREATE TABLE subscriptions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    customer_id uuid NOT NULL,
    plan_id uuid NOT NULL REFERENCES plans (id),
    previous_subscription_id uuid REFERENCES subscriptions (id),
    external_id character varying NOT NULL,
    status integer NOT NULL,
    started_at timestamp(6) without time zone,
    terminated_at timestamp(6) without time zone,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE TABLE invoices (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    customer_id uuid NOT NULL,
    billing_entity_id uuid NOT NULL REFERENCES billing_entities (id),
    parent_invoice_id uuid REFERENCES invoices (id),  -- a progressive-billing invoice's original
    number character varying NOT NULL,
    status integer NOT NULL,
    currency character varying NOT NULL,
    total_amount_cents bigint NOT NULL DEFAULT 0,
    issuing_date date,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE TABLE fees (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    invoice_id uuid REFERENCES invoices (id),
    subscription_id uuid REFERENCES subscriptions (id),
    fee_type integer NOT NULL,
    amount_cents bigint NOT NULL,
    amount_currency character varying NOT NULL,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE TABLE credit_notes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    customer_id uuid NOT NULL,
    invoice_id uuid NOT NULL REFERENCES invoices (id),
    reason integer NOT NULL,
    total_amount_cents bigint NOT NULL,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE TABLE wallets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    customer_id uuid NOT NULL REFERENCES customers (id),
    status integer NOT NULL,
    balance_cents bigint NOT NULL DEFAULT 0,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE TABLE wallet_transactions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id),
    wallet_id uuid NOT NULL REFERENCES wallets (id),
    transaction_type integer NOT NULL,
    amount numeric(30, 5) NOT NULL,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

-- Usage events, partitioned by month; the customer named without a foreign key.
CREATE TABLE usage_events (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL,
    customer_id uuid,
    subscription_id uuid,
    transaction_id character varying NOT NULL,
    code character varying NOT NULL,
    properties jsonb NOT NULL DEFAULT '{}'::jsonb,
    "timestamp" timestamp(6) without time zone NOT NULL,
    created_at timestamp(6) without time zone NOT NULL,
    PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");
CREATE TABLE usage_events_2026_01 PARTITION OF usage_events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE usage_events_2026_02 PARTITION OF usage_events FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE TABLE usage_events_2026_03 PARTITION OF usage_events FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;

CREATE INDEX index_memberships_on_organization_id ON memberships (organization_id);
CREATE INDEX index_customers_on_organization_id ON customers (organization_id);
CREATE UNIQUE INDEX index_customers_on_external_id_and_organization_id ON customers (external_id, organization_id)
    WHERE deleted_at IS NULL;
CREATE INDEX index_subscriptions_on_customer_id ON subscriptions (customer_id);
CREATE INDEX index_invoices_on_customer_id ON invoices (customer_id);
CREATE INDEX index_invoices_on_organization_id ON invoices (organization_id);
CREATE INDEX index_fees_on_invoice_id ON fees (invoice_id);
CREATE INDEX index_credit_notes_on_customer_id ON credit_notes (customer_id);
CREATE INDEX index_wallets_on_customer_id ON wallets (customer_id);
CREATE INDEX index_wallet_transactions_on_wallet_id ON wallet_transactions (wallet_id);
CREATE INDEX index_usage_events_on_organization_id_and_code ON usage_events (organization_id, code, "timestamp");
