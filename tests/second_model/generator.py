"""Synthetic pre-cutover data for the second model (schema.sql beside it).

Identity keys are left to the database (COPY without the column), so they come out 1..n in the
order rows are written here, which is how the rows below point at them; uuid keys are drawn from
the seeded generator. Output is a pure function of (scale, seed).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from cutover.model.generator import TableData

GENERATOR_VERSION = "second-1"
SOURCE = "tenant-apollo-001"
TARGET = "tenant-curaway-patients"
OTHER = "tenant-fortis-002"
SCHEMA_HEAD = "b7e1c2d3a4f5"
MIRRORED = {"region": "eu-west-1", "language": "en", "currency": "EUR", "digest": "weekly"}
START = datetime(2026, 1, 1, tzinfo=UTC)
PATIENT_EVENTS = ("intake.started", "case.created", "document.uploaded")
PROVIDER_EVENTS = ("note.added",)
PATIENT_ROUTES = ("POST /v2/cases", "POST /v2/documents")


def generate(scale: float, seed: int) -> Iterator[TableData]:
    rng = random.Random(seed)

    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def when(days: int = 85) -> datetime:
        return START + timedelta(seconds=rng.randrange(days * 86400))

    n_patients = max(4, int(40 * scale))
    yield TableData("alembic_version", ("version_num",), [(SCHEMA_HEAD,)])
    yield TableData("tenants", ("id", "name", "settings", "is_active", "is_protected"), [
        (SOURCE, "Apollo", json.dumps(MIRRORED), True, True),
        (TARGET, "Curaway patients", json.dumps(MIRRORED), True, True),
        (OTHER, "Fortis", json.dumps({"region": "eu-west-1"}), True, False),
    ])
    accounts: list[tuple[Any, ...]] = []
    for i in range(n_patients):
        accounts.append((SOURCE, "patient", f"p{i}@example.test", None if i % 9 else when()))
    staff_at = len(accounts)
    for i in range(6):
        accounts.append((SOURCE if i < 4 else OTHER, "provider" if i % 2 else "staff", f"s{i}@example.test", None))
    yield TableData("accounts", ("tenant_id", "kind", "email", "deleted_at"), accounts)
    assert staff_at == n_patients

    profiles = [(uid(), SOURCE, i + 1, f"Patient {i}", None if i % 11 else when()) for i in range(n_patients)]
    yield TableData("patient_profiles", ("id", "tenant_id", "account_id", "full_name", "deleted_at"), profiles)

    cases = [(uid(), SOURCE, rng.choice(profiles)[0], rng.choice(("open", "closed")), None)
             for _ in range(int(n_patients * 1.5))]
    yield TableData("cases", ("id", "tenant_id", "patient_profile_id", "status", "deleted_at"), cases)

    shared = [c for c in cases if rng.random() < 0.3]
    yield TableData("case_shares", ("tenant_id", "case_id", "target_tenant_id"),
                    [(SOURCE, c[0], OTHER) for c in shared])

    tags = []
    for c in cases:
        for tag in rng.sample(("urgent", "cardio", "ortho", "vip", "follow-up"), rng.randrange(0, 4)):
            tags.append((c[0], tag, SOURCE))
    yield TableData("case_tags", ("case_id", "tag", "tenant_id"), tags)

    owner = {p[0]: p for p in profiles}
    docs = []
    for c in cases:
        for _ in range(rng.randrange(0, 3)):
            docs.append((SOURCE, c[0], owner[c[2]][0], f"s3://docs/{uid()}", None if rng.random() < 0.9 else when()))
    yield TableData("documents", ("tenant_id", "case_id", "patient_profile_id", "storage_key", "deleted_at"), docs)

    providers = [(SOURCE, "Dr Apollo A"), (SOURCE, "Dr Apollo B"), (OTHER, "Dr Fortis")]
    yield TableData("provider_profiles", ("tenant_id", "display_name"), providers)

    appts = [(uid(), SOURCE, c[0], rng.randrange(1, len(providers) + 1), when()) for c in cases if rng.random() < 0.6]
    yield TableData("appointments", ("id", "tenant_id", "case_id", "provider_profile_id", "starts_at"), appts)

    notes = [(OTHER, c[0], "reviewed") for c in shared for _ in range(rng.randrange(1, 3))]
    yield TableData("provider_notes", ("tenant_id", "case_id", "body"), notes)

    keys = []
    for i, c in enumerate(cases[: len(cases) // 2]):
        keys.append((f"idk-{i}", SOURCE, rng.choice(PATIENT_ROUTES), json.dumps({"case_id": c[0]}), when()))
    for i, c in enumerate(shared[:5]):
        keys.append((f"idk-p{i}", OTHER, "POST /v2/provider/notes", json.dumps({"case_id": c[0]}), when()))
    yield TableData("idempotency_keys", ("key", "tenant_id", "route", "response_body", "created_at"), keys)

    events: list[tuple[Any, ...]] = []
    for c in cases:
        for _ in range(rng.randrange(1, 4)):
            events.append((SOURCE, rng.choice(PATIENT_EVENTS), json.dumps({"case_id": c[0]}), "api", when()))
    for _c in shared:
        events.append((OTHER, "note.added", None, "provider-portal", when()))
    events.append((SOURCE, "tenant.settings_updated", None, "admin", when()))
    yield TableData("events", ("tenant_id", "event_type", "payload", "source_service", "created_at"), events)
