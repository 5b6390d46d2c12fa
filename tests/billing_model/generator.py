"""Synthetic pre-cutover data for the billing model (schema.sql beside it).

Three organizations: A (the source, whose customers move), B (the target, which already has a
billing entity, a plan and an API key of its own) and C (another organization, untouched). Every key
is a uuid drawn from the seeded generator, so the output is a pure function of (scale, seed).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from cutover.model.generator import TableData

GENERATOR_VERSION = "billing-1"
SOURCE = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
TARGET = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
OTHER = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
N_MIGRATIONS = 140  # Rails keeps one row per applied migration
SCHEMA_HEAD = "20261103094512"  # the newest of them
START = datetime(2026, 1, 1)
USAGE_CODES = ("api_calls", "storage_gb", "seats")


def migrations() -> list[tuple[str]]:
    """Rails' applied versions: timestamps, oldest first, ending with SCHEMA_HEAD."""
    first = datetime(2022, 3, 14, 9, 30)
    versions = [(first + timedelta(days=7 * i, minutes=i)).strftime("%Y%m%d%H%M%S") for i in range(N_MIGRATIONS - 1)]
    return [(v,) for v in [*versions, SCHEMA_HEAD]]


def generate(scale: float, seed: int) -> Iterator[TableData]:
    rng = random.Random(seed)

    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def when(days: int = 85) -> datetime:
        return START + timedelta(seconds=rng.randrange(days * 86400))

    yield TableData("schema_migrations", ("version",), migrations())
    yield TableData("ar_internal_metadata", ("key", "value", "created_at", "updated_at"),
                    [("environment", "production", START, START)])
    orgs = {SOURCE: "Acme Analytics", TARGET: "Borealis Billing", OTHER: "Cobalt Cloud"}
    yield TableData("organizations", ("id", "name", "default_currency", "timezone", "created_at", "updated_at"),
                    [(o, name, "EUR" if o == TARGET else "USD", "UTC", START, START) for o, name in orgs.items()])

    users = [(uid(), f"admin{i}@example.test", START, START) for i in range(6)]
    yield TableData("users", ("id", "email", "created_at", "updated_at"), users)
    members = [(uid(), org, users[i][0], i % 2, START, START)
               for i, org in enumerate((SOURCE, SOURCE, SOURCE, TARGET, TARGET, OTHER))]
    yield TableData("memberships", ("id", "organization_id", "user_id", "role", "created_at", "updated_at"), members)
    yield TableData("api_keys", ("id", "organization_id", "value", "created_at", "updated_at"),
                    [(uid(), org, f"key_{uid()}", START, START) for org in orgs])

    entities = {org: uid() for org in orgs}  # one billing entity each; B's is the target's own
    yield TableData("billing_entities", ("id", "organization_id", "code", "name", "invoice_prefix", "created_at",
                                         "updated_at"),
                    [(e, org, f"{orgs[org].split()[0].lower()}-main", orgs[org], orgs[org][:3].upper(), START, START)
                     for org, e in entities.items()])

    providers = [(uid(), org, kind, kind.split("::")[1].lower(), f"{orgs[org]} {kind}", START, START)
                 for org, kind in ((SOURCE, "PaymentProviders::StripeProvider"),
                                   (SOURCE, "PaymentProviders::GocardlessProvider"),
                                   (TARGET, "PaymentProviders::AdyenProvider"),
                                   (OTHER, "PaymentProviders::StripeProvider"))]
    yield TableData("payment_providers", ("id", "organization_id", "type", "code", "name", "created_at", "updated_at"),
                    providers)

    plans: list[tuple[Any, ...]] = []
    base_plans: dict[str, list[str]] = {org: [] for org in orgs}
    for org, n in ((SOURCE, 3), (TARGET, 1), (OTHER, 1)):
        for i in range(n):
            pid = uid()
            base_plans[org].append(pid)
            plans.append((pid, org, f"plan_{i}", f"{orgs[org]} plan {i}", i % 3, 1000 * (i + 1), "USD", None,
                          START, START))
    overrides = []
    for i in range(2):  # a customer's override of one of A's plans
        pid = uid()
        overrides.append(pid)
        plans.append((pid, SOURCE, f"plan_0_override_{i}", f"Override {i}", 0, 900 - 100 * i, "USD",
                      base_plans[SOURCE][0], START, START))
    yield TableData("plans", ("id", "organization_id", "code", "name", "interval", "amount_cents", "amount_currency",
                              "parent_id", "created_at", "updated_at"), plans)

    n_customers = max(4, int(30 * scale))
    customers: list[tuple[Any, ...]] = []
    for org, n in ((SOURCE, n_customers), (OTHER, 3)):
        for i in range(n):
            deleted = when() if i % 13 == 12 else None
            customers.append((uid(), org, entities[org], f"cust_{i:05d}", f"Customer {i}", f"c{i}@example.test",
                              "USD", deleted, START, START))
    yield TableData("customers", ("id", "organization_id", "billing_entity_id", "external_id", "name", "email",
                                  "currency", "deleted_at", "created_at", "updated_at"), customers)

    subs: list[tuple[Any, ...]] = []
    for c in customers:
        org = c[1]
        previous = None
        for k in range(rng.choice((1, 1, 2))):
            sid = uid()
            plan = rng.choice(base_plans[org] + (overrides if org == SOURCE else []))
            started = when(40)
            subs.append((sid, org, c[0], plan, previous, f"sub_{len(subs):05d}", 2 if k else 1, started,
                         None, started, started))
            previous = sid
    yield TableData("subscriptions", ("id", "organization_id", "customer_id", "plan_id", "previous_subscription_id",
                                      "external_id", "status", "started_at", "terminated_at", "created_at",
                                      "updated_at"), subs)

    invoices: list[tuple[Any, ...]] = []
    fees: list[tuple[Any, ...]] = []
    by_customer: dict[str, list[str]] = {}
    for s in subs:
        org, customer = s[1], s[2]
        for _ in range(rng.randrange(1, 4)):
            iid = uid()
            parent = by_customer[customer][-1] if by_customer.get(customer) and rng.random() < 0.2 else None
            total = 0
            for _f in range(rng.randrange(1, 4)):
                amount = rng.randrange(100, 10000)
                total += amount
                fees.append((uid(), org, iid, s[0], rng.randrange(0, 3), amount, "USD", START, START))
            issued = when()
            invoices.append((iid, org, customer, entities[org], parent, f"{orgs[org][:3].upper()}-{len(invoices):06d}",
                             1, "USD", total, issued.date(), issued, issued))
            by_customer.setdefault(customer, []).append(iid)
        if rng.random() < 0.3:  # pay in advance: a fee not on any invoice yet
            fees.append((uid(), org, None, s[0], 1, rng.randrange(100, 1000), "USD", START, START))
    yield TableData("invoices", ("id", "organization_id", "customer_id", "billing_entity_id", "parent_invoice_id",
                                 "number", "status", "currency", "total_amount_cents", "issuing_date", "created_at",
                                 "updated_at"), invoices)
    yield TableData("fees", ("id", "organization_id", "invoice_id", "subscription_id", "fee_type", "amount_cents",
                             "amount_currency", "created_at", "updated_at"), fees)

    notes = [(uid(), i[1], i[2], i[0], rng.randrange(0, 4), i[8] // 2, START, START)
             for i in invoices if rng.random() < 0.15]
    yield TableData("credit_notes", ("id", "organization_id", "customer_id", "invoice_id", "reason",
                                     "total_amount_cents", "created_at", "updated_at"), notes)

    wallets = [(uid(), c[1], c[0], 0, rng.randrange(0, 50000), START, START) for c in customers if rng.random() < 0.5]
    yield TableData("wallets", ("id", "organization_id", "customer_id", "status", "balance_cents", "created_at",
                                "updated_at"), wallets)
    yield TableData("wallet_transactions", ("id", "organization_id", "wallet_id", "transaction_type", "amount",
                                            "created_at", "updated_at"),
                    [(uid(), w[1], w[0], rng.randrange(0, 2), f"{rng.randrange(1, 500)}.00000", START, START)
                     for w in wallets for _ in range(rng.randrange(1, 4))])

    events = []
    for s in subs:
        for _ in range(rng.randrange(0, 6)):
            at = when(110)  # January to April: the last month lands in the default partition
            events.append((uid(), s[1], s[2], s[0], f"tx_{uid()}", rng.choice(USAGE_CODES),
                           json.dumps({"amount": rng.randrange(1, 100)}), at, at))
    yield TableData("usage_events", ("id", "organization_id", "customer_id", "subscription_id", "transaction_id",
                                     "code", "properties", "timestamp", "created_at"), events)
