"""Hypothesis strategies for row mixes of the reference schema, an oracle, and SQL that reproduces them.

The oracle restates the spec's ownership rules (cutover-reference.md §2) in plain Python on purpose:
it does not read the plan file or call the cutover's SQL, so a wrong plan or a wrong predicate
cannot make it agree. A world is loaded with the very INSERT statements a failing example prints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from psycopg import sql

from cutover.core import db
from cutover.core.plan import table_sql

SOURCE = "tenant-apollo-001"
TARGET = "tenant-curaway-patients"
FORTIS = "tenant-fortis-002"

# §2 of the reference, restated: what moves when it sits on the source.
PATIENT_EVENTS = ("intake.started", "case.created", "message.sent", "document.uploaded", "document.processed",
                  "match.requested")
PROVIDER_EVENTS = ("quote.issued", "provider.profile_updated")
SYSTEM_EVENTS = ("tenant.settings_updated",)
PATIENT_ROUTES = ("POST /api/v1/cases", "POST /api/v1/cases/{case_id}/messages", "POST /api/v1/documents",
                  "POST /api/v1/match-requests")
PROVIDER_ROUTES = ("POST /api/v1/provider/quotes", "PUT /api/v1/provider/profile")
ALWAYS_PATIENT = ("patients", "cases", "case_shares", "messages", "document_references", "match_requests")
ORDER = ("organizations", "users", "patients", "cases", "case_shares", "messages", "document_references",
         "match_requests", "idempotency_keys", "events", "provider_profiles", "quotes")
KEY = {t: ("key" if t == "idempotency_keys" else "id") for t in ORDER}

# Edge values: ids with quotes, backslashes, LIKE wildcards and unicode; timestamps at the edges.
SUFFIXES = ("", "'", '"', "\\", "%_", "ü", "患者", "😀", " x", "'; --")
TIMES = (None, "2026-04-30T12:00:00+00:00", "-infinity", "infinity", "1970-01-01T00:00:00+00:00")


def must_move(rows: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """The spec's rule per row: which rows on the source are patient-owned and must move."""
    out: dict[str, set[str]] = {t: set() for t in ORDER}
    for table, items in rows.items():
        for row in items:
            if row["tenant_id"] != SOURCE:
                continue
            if (table in ALWAYS_PATIENT
                    or (table == "organizations" and row["kind"] == "patient")
                    or (table == "users" and row["role"] == "patient")
                    or (table == "idempotency_keys" and row["route"] in PATIENT_ROUTES)
                    or (table == "events" and row["event_type"] in PATIENT_EVENTS)):
                out[table].add(row[KEY[table]])
    return out


@dataclass
class World:
    """Rows per table, in foreign-key order; ``late`` rows arrive after the cutover's commit."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in ORDER})
    late: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in ORDER})

    def count(self) -> int:
        return sum(len(v) for v in self.rows.values())


class Ids:
    """Globally unique ids with a drawn edge-value suffix."""

    def __init__(self, draw: Any) -> None:
        self.draw, self.n = draw, 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}{self.draw(st.sampled_from(SUFFIXES))}"


def _payload(draw: Any, case_id: str | None) -> Any:
    return draw(st.sampled_from([None, {}, {"case_id": case_id} if case_id else {}, {"actor": "x'ü\\"},
                                 {"case_id": case_id, "note": "😀"} if case_id else None]))


@st.composite
def worlds(draw: Any, stragglers: bool = False) -> World:
    """A consistent pre-cutover world: every share, quote and key points where the spec allows."""
    w, new = World(), Ids(draw)

    def at() -> str | None:
        value = draw(st.sampled_from(TIMES))
        return None if value is None else str(value)
    orgs = [("org-patients", SOURCE, "patient"), ("org-apollo", SOURCE, "provider"),
            ("org-coord", SOURCE, "coordinator"), ("org-fortis", FORTIS, "provider")]
    if draw(st.booleans()):
        orgs.append((new("org"), draw(st.sampled_from((SOURCE, FORTIS))),
                     draw(st.sampled_from(("patient", "provider", "coordinator")))))
    for oid, tenant, kind in orgs:
        w.rows["organizations"].append({"id": oid, "tenant_id": tenant, "clerk_org_id": f"clerk-{oid}",
                                        "name": oid, "kind": kind, "created_at": at()})

    def user(role: str, tenant: str, org: str | None) -> str:
        uid = new(f"usr-{role}")
        w.rows["users"].append({"id": uid, "tenant_id": tenant, "clerk_user_id": f"clerk-{uid}",
                                "email": f"{uid}@example.test", "role": role, "organization_id": org,
                                "created_at": at()})
        return uid

    patient_users = [user("patient", SOURCE, "org-patients") for _ in range(draw(st.integers(0, 3)))]
    staff = {SOURCE: [user("provider", SOURCE, "org-apollo") for _ in range(draw(st.integers(1, 2)))],
             FORTIS: [user("provider", FORTIS, "org-fortis")]}
    coordinator = user("coordinator", SOURCE, "org-coord")
    if draw(st.booleans()):
        user("super_admin", SOURCE, None)

    cases: list[str] = []
    shared: dict[str, list[str]] = {}
    for _ in range(draw(st.integers(0, 3))):
        uid = draw(st.sampled_from([None, *patient_users]))
        if uid is not None:
            patient_users.remove(uid)  # one patient per user
        pid = new("pat")
        w.rows["patients"].append({"id": pid, "tenant_id": SOURCE, "user_id": uid, "created_at": at()})
        for _ in range(draw(st.integers(0, 2))):
            cid = new("case")
            cases.append(cid)
            w.rows["cases"].append({"id": cid, "tenant_id": SOURCE, "patient_id": pid, "status": "open",
                                    "specialty": "cardiology", "created_at": at()})
            targets = draw(st.lists(st.sampled_from((SOURCE, FORTIS)), unique=True, max_size=2))
            shared[cid] = targets
            for target in targets:
                w.rows["case_shares"].append({"id": new("shr"), "tenant_id": SOURCE, "case_id": cid,
                                              "target_tenant_id": target, "shared_by_user_id": coordinator,
                                              "created_at": at()})
                if draw(st.booleans()):
                    qid = new("quo")
                    w.rows["quotes"].append({"id": qid, "tenant_id": target, "case_id": cid, "amount": "100.00",
                                             "currency": "INR", "created_at": at()})
                    w.rows["idempotency_keys"].append(_key(draw, new, target, "POST /api/v1/provider/quotes",
                                                           {"case_id": cid, "quote_id": qid}))
            for _ in range(draw(st.integers(0, 2))):
                w.rows["messages"].append({"id": new("msg"), "tenant_id": SOURCE, "case_id": cid,
                                           "sender_user_id": uid, "sender_role": "patient",
                                           "body": draw(st.sampled_from(("", "hi 'there'", "ü😀"))),
                                           "created_at": at()})
            for _ in range(draw(st.integers(0, 1))):
                w.rows["document_references"].append({"id": new("doc"), "tenant_id": SOURCE, "case_id": cid,
                                                      "patient_id": pid, "storage_key": "s3://k", "status": "uploaded",
                                                      "created_at": at()})
            if draw(st.booleans()):
                w.rows["match_requests"].append({"id": new("mtr"), "tenant_id": SOURCE, "case_id": cid,
                                                 "status": "pending", "created_at": at()})
    for _ in range(draw(st.integers(0, 3))):
        route = draw(st.sampled_from(PATIENT_ROUTES))
        w.rows["idempotency_keys"].append(_key(draw, new, SOURCE, route, _payload(draw, draw(
            st.sampled_from([None, *cases])))))
    for tenant, uids in staff.items():
        for uid in uids:
            w.rows["provider_profiles"].append({"id": f"prof-{uid}", "tenant_id": tenant, "display_name": uid,
                                                "specialty": "oncology", "created_at": at()})
            if draw(st.booleans()):
                w.rows["idempotency_keys"].append(_key(draw, new, tenant, "PUT /api/v1/provider/profile",
                                                       {"profile_id": f"prof-{uid}"}))
    for _ in range(draw(st.integers(0, 5))):
        w.rows["events"].append(_event(draw, new, cases, at(), target_own=True))
    if stragglers:
        _late(draw, new, w, cases)
    return w


def _key(draw: Any, new: Ids, tenant: str, route: str, body: Any) -> dict[str, Any]:
    return {"key": new("idk"), "tenant_id": tenant, "route": route, "request_hash": "sha256:00",
            "response_status": draw(st.sampled_from((200, 201, 409))), "response_body": body,
            "created_at": draw(st.sampled_from(TIMES))}


def _event(draw: Any, new: Ids, cases: list[str], created: str | None,
           kinds: tuple[str, ...] = PATIENT_EVENTS + PROVIDER_EVENTS + SYSTEM_EVENTS,
           target_own: bool = False) -> dict[str, Any]:
    """An event; ``target_own``: before the cutover, so patient and provider events may be the
    target's own (a tenant with rows of its own: they stay, and no check counts them as a fault)."""
    etype = draw(st.sampled_from(kinds))
    own = (TARGET,) if target_own else ()
    if etype in PATIENT_EVENTS:
        tenant = draw(st.sampled_from((SOURCE, *own)))
    elif etype in PROVIDER_EVENTS:
        tenant = draw(st.sampled_from((SOURCE, FORTIS, *own)))
    else:
        tenant = draw(st.sampled_from((SOURCE, FORTIS, TARGET)))
    return {"id": new("evt"), "tenant_id": tenant, "event_type": etype,
            "payload": _payload(draw, draw(st.sampled_from([None, *cases]))), "source_service": "api",
            "created_at": created}


def _late(draw: Any, new: Ids, w: World, cases: list[str]) -> None:
    """Writes that land on the source after the commit: patient ones are stragglers, the rest are not."""
    for _ in range(draw(st.integers(0, 3))):
        w.late["events"].append(_event(draw, new, cases, draw(st.sampled_from(("now", *TIMES[1:])))))
    for cid in draw(st.lists(st.sampled_from(cases), max_size=2)) if cases else []:
        w.late["messages"].append({"id": new("msg"), "tenant_id": SOURCE, "case_id": cid, "sender_user_id": None,
                                   "sender_role": "patient", "body": "late", "created_at": None})
    for _ in range(draw(st.integers(0, 1))):
        w.late["idempotency_keys"].append(_key(draw, new, SOURCE, draw(st.sampled_from(PATIENT_ROUTES)), None))


def insert_sql(conn: Any, rows: dict[str, list[dict[str, Any]]], names: Mapping[str, str] | None = None) -> str:
    """The INSERT statements for ``rows``: what a failing example prints, and what loads it. ``names``:
    a model's own names for the reference tables (the third model's ``clinical.match_requests``)."""
    out = []
    for table in ORDER:
        for row in rows.get(table, []):
            cols = [c for c, v in row.items() if v is not None or c != "created_at"]
            vals = [sql.SQL("now()") if row[c] == "now" else
                    sql.Literal(json.dumps(row[c]) if isinstance(row[c], dict) else row[c]) for c in cols]
            out.append(sql.SQL("INSERT INTO {} ({}) VALUES ({});").format(
                table_sql((names or {}).get(table, table)), sql.SQL(", ").join(map(sql.Identifier, cols)),
                sql.SQL(", ").join(vals)).as_string(conn))
    return "\n".join(out)


@contextmanager
def loaded(admin_url: str, template: str, name: str, world: World,
           names: Mapping[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """A fresh database cloned from the empty reference template, with the world inserted; dropped after."""
    url = db.create_database(admin_url, name, template=template)
    try:
        with db.connection(url) as conn:
            text = insert_sql(conn, world.rows, names)
            if text:
                conn.execute(text.encode())
            conn.commit()
        yield url, text
    finally:
        db.drop_database(admin_url, name)


def tenants_of(url: str, names: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """{table: {key: tenant}} for every row of the world's tables (by the reference's names)."""
    out: dict[str, dict[str, str]] = {}
    with db.connection(url, read_only=True) as conn:
        for table in ORDER:
            audit = sql.SQL("source_service IS DISTINCT FROM 'cutover'" if table == "events" else "true")
            rows = conn.execute(sql.SQL("SELECT {}::text, tenant_id FROM {} WHERE {}").format(
                sql.Identifier(KEY[table]), table_sql((names or {}).get(table, table)), audit)).fetchall()
            out[table] = {k: t for k, t in rows}
    return out
