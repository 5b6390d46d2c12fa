"""The production window's go/no-go (``pytest -m prereq``): the runbook's quick prerequisites, checked.

Each prerequisite becomes one :class:`Item`: PASS, FAIL, or UNANSWERED (an operator item nobody
answered). The window is GO only when every expected item passed; anything else, a skipped or an
unrun item included, is NO-GO and names which. The machine-checked items compare the rehearsal's
evidence bundle with the present (the plan file and cutover command that production will use, the
clock), probe production's drain-streams route and deliver a Telegram test message; none of them
writes to the database. The items a machine cannot see (the backend image staged, the maintenance
rewrite rehearsed, drain-streams baked for a day) are manual checks answered like A11-A19.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from cutover.core import evidence
from cutover.core.db import Connection
from cutover.core.errors import CutoverError
from cutover.core.options import Settings, seconds
from cutover.core.plan import ManualCheck, Plan
from cutover.core.redact import mask_url, redact, register_secret
from cutover.reference import alerts, preflight
from cutover.sandbox.pgbin import major_of
from cutover.suite import bundle, forecast, timeline, verdicts
from cutover.suite.catalogue import REHEARSAL_PROOFS, SCHEMA_HEAD, TARGET_TENANT, Catalogue
from cutover.suite.manual.answers import Answer
from cutover.suite.rehearsals import REVERT_DEPLOYS_S, SMOKE_S

MAX_AGE = timedelta(days=7)
RESTORE_BUDGET_S = 8 * 60  # the runbook's rollback bound: 8 min snapshot restore + 4 deploys + 3 smoke
DRAIN_PATH = "/api/v1/admin/system/drain-streams"
DRAIN_URL_ENV = "CUTOVER_DRAIN_URL"
DRAIN_TOKEN_ENV = "CUTOVER_DRAIN_TOKEN"
PROPERTY = "cutover_prereq"
NOT_SET = "NOT SET"

# The go/no-go's lines, in the runbook's order; every one must PASS for WINDOW GO.
TITLES_BY_ID: dict[str, str] = {
    SCHEMA_HEAD.id: "schema head on production",
    TARGET_TENANT.id: "patient tenant row on production",
    "evidence-verifies": "the rehearsal's evidence bundle verifies",
    "evidence-ready": "the rehearsal says READY, 21 of 21",
    "evidence-fresh": "the rehearsal is younger than 7 days",
    "same-plan": "the rehearsal used this plan file",
    "same-cutover": "the rehearsal used this cutover command",
    "restore-budget": "the rehearsal's restore fits the 8-minute budget",
    "same-major": "the rehearsal ran on production's PostgreSQL major",
    "forecast-execute": "the execute fits its slot at production's size",
    "forecast-writers-blocked": "writers are held off within the execute's slot",
    "forecast-wal": "the WAL the execute will write (informational)",
    "forecast-setb": "Set B fits its slot at production's size",
    "forecast-reverse": "the reverse (rollback option 2) fits the rollback bound",
    "forecast-restore": "the snapshot restore (rollback option 1) fits the rollback bound",
    "drain-streams": "the drain-streams endpoint answers on production",
    "alerts": "alerts configured and a test message delivered",
    "drain-baked": "drain-streams shipped and baked at least 24 h",
    "backend-image": "backend image with the new default tenant staged",
    "maintenance-rewrite": "maintenance rewrite rehearsed on a preview",
}


def operator_items(plan: Plan) -> dict[str, ManualCheck]:
    """The prerequisites only a person can confirm, asked like the manual checks (prompt, answers, journal)."""
    return {
        "drain-baked": ManualCheck("drain-baked", TITLES_BY_ID["drain-baked"],
                                   f"Confirm POST {DRAIN_PATH} has been deployed to production for at least 24 h "
                                   "without incident (deploy log, error tracker)."),
        "backend-image": ManualCheck("backend-image", TITLES_BY_ID["backend-image"],
                                     f"Confirm the backend image with default_tenant_id='{plan.target}' and the "
                                     f"flipped _ORG_TENANT_MAP_FALLBACK patient-org row (-> {plan.target}) is built "
                                     "and staged on the post-cutover branch, ready to deploy at T+0:09."),
        "maintenance-rewrite": ManualCheck("maintenance-rewrite", TITLES_BY_ID["maintenance-rewrite"],
                                           "Confirm the rewrite to /maintenance.html was rehearsed on a preview "
                                           "deployment of the patient app and can be switched on at T+0:00."),
    }


@dataclass(frozen=True)
class Item:
    """One prerequisite's outcome: ``status`` PASS, FAIL or UNANSWERED, and what was found."""

    id: str
    status: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == "PASS"

    def line(self) -> str:
        return redact(f"{self.status:<10} {self.id:<19} {TITLES_BY_ID.get(self.id, '')}: {self.detail}")

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "status": self.status, "detail": redact(self.detail)})

    @classmethod
    def from_json(cls, raw: str) -> Item:
        data = json.loads(raw)
        return cls(str(data["id"]), str(data["status"]), str(data["detail"]))


def passed(item_id: str, detail: str) -> Item:
    return Item(item_id, "PASS", detail)


def failed(item_id: str, detail: str) -> Item:
    return Item(item_id, "FAIL", detail)


def answered(item_id: str, answer: Answer | None, why_none: str) -> Item:
    """An operator's answer as an item: only "pass" passes; a skip is not a pass, nor is no answer."""
    if answer is None:
        return Item(item_id, "UNANSWERED", f"needs operator: {why_none}")
    said = f"{answer.operator} at {answer.at}: {answer.observation or 'no observation'}"
    if answer.result == "pass":
        return passed(item_id, said)
    return Item(item_id, "FAIL" if answer.result == "fail" else "SKIP", said)


def verdict(items: Mapping[str, Item], expected: list[str]) -> tuple[bool, str]:
    """``WINDOW GO`` only when every expected item is there and passed; else NO-GO naming each one."""
    bad = []
    for item_id in expected:
        item = items.get(item_id)
        if item is None:
            bad.append(f"{item_id} not run")
        elif not item.ok:
            bad.append(f"{item_id} {item.status}")
    if bad:
        return False, f"WINDOW NO-GO: {', '.join(bad)}"
    return True, f"WINDOW GO: {len(expected)} of {len(expected)} prerequisites hold"


# --- the evidence ---------------------------------------------------------------------------------


@dataclass
class Bundle:
    """The rehearsal's evidence as the go/no-go reads it: verified once, then asked about."""

    directory: Path
    body: dict[str, Any]
    verification: evidence.Verification
    log: dict[str, Any]

    @classmethod
    def open(cls, directory: Path, allowed_signers: Path | None = None) -> Bundle:
        found = evidence.verify(directory, allowed_signers)
        root = found.directory
        entry = found.body["files"].get("operator_log_json")
        log: dict[str, Any] = {}
        if entry is not None and (root / str(entry.get("path"))).is_file():
            try:
                log = json.loads((root / str(entry["path"])).read_text())
            except ValueError:
                log = {}
        return cls(root.resolve(), found.body, found, log)


def evidence_verifies(b: Bundle) -> Item:
    v = b.verification
    if v.ok:
        return passed("evidence-verifies", f"{len(v.checked)} files match {b.directory / evidence.FILE}; {v.trust()}")
    return failed("evidence-verifies", f"{len(v.problems)} problems in {b.directory}: {'; '.join(v.problems)}")


def required_checks(plan: Plan) -> list[str]:
    """The runbook's 21: the 12 automated checks and the plan's manual checks."""
    return [c.id for c in Catalogue.for_plan(plan).counted()]


def evidence_ready(b: Bundle, plan: Plan) -> Item:
    """READY is read from the verified operator log's rows, not from the bundle's own claim."""
    if not b.log:
        return failed("evidence-ready", "the bundle has no readable operator-log.json to read the checks from")
    if b.log.get("run") == verdicts.STEP_5A:
        return failed("evidence-ready", f"{b.directory} is step 5a's evidence (the SQL checks only), not a "
                                        "rehearsal's: pass the full rehearsal's artifacts/<timestamp> to --evidence")
    if b.log.get("rehearsal") is None:
        return failed("evidence-ready", f"{b.directory} is not a rehearsal's (no rehearsal record): pass the "
                                        "rehearsal's artifacts/<timestamp> directory to --evidence")
    required = required_checks(plan)
    checks = bundle.checks_of(b.log)
    count, missing = bundle.readiness(checks, required)
    _, proofs = bundle.readiness(checks, list(REHEARSAL_PROOFS))  # content unchanged, the rollback rehearsed
    na = Catalogue.for_plan(plan).not_applicable  # from this plan (same-plan holds it to the rehearsal's)
    said = f"; not applicable, as the plan declares: {', '.join(f'{c} {w}' for c, w in na.items())}" if na else ""
    if missing or proofs:
        return failed("evidence-ready", f"{count} of {len(required)} passed; not passed: "
                                        f"{', '.join([*missing, *proofs])} (verdict was {b.log.get('verdict')!r})"
                                        + said)
    return passed("evidence-ready", f"READY: {count} of {len(required)} {'applicable ' if na else ''}passed, content "
                                    f"unchanged, rollback rehearsed ({b.log.get('verdict')}){said}")


def evidence_fresh(b: Bundle, now: datetime) -> Item:
    times = b.body.get("times") or {}
    when = timeline.parse(times.get("started_at"))
    if when is None:
        return failed("evidence-fresh", "the bundle records no run time (times.started_at)")
    age = now - when
    text = f"rehearsed {when.isoformat(timespec='minutes')}, {age.days} d {age.seconds // 3600} h ago"
    snap = (b.body.get("snapshot") or {}).get("timestamp")
    text += f"; snapshot taken {snap}" if snap else ""
    if age > MAX_AGE:
        return failed("evidence-fresh", f"{text}: older than 7 days, rehearse again on a fresh snapshot")
    if age < timedelta(0):
        return failed("evidence-fresh", f"{text}: in the future, check this machine's clock")
    return passed("evidence-fresh", text)


def same_plan(b: Bundle, settings: Settings) -> Item:
    now = bundle.plan_sha256(settings)
    then = (b.body.get("plan") or {}).get("sha256")
    if then == now:
        return passed("same-plan", f"sha256 {now[:16]}... ({settings.plan_path.name})")
    return failed("same-plan", f"the rehearsal's plan sha256 {str(then)[:16]}... differs from {settings.plan_path} "
                               f"({now[:16]}...): rehearse with this plan, or pass the rehearsed one with --plan")


def same_cutover(b: Bundle, settings: Settings) -> Item:
    now = bundle.cutover_command(settings)
    then = b.body.get("cutover_command")
    if then == now:
        return passed("same-cutover", now)
    return failed("same-cutover", f"rehearsed with {then!r}, production would run {now!r}: rehearse with the "
                                  "cutover command the window will run (--cutover-cmd)")


def restore_budget(b: Bundle) -> Item:
    restore = (b.body.get("times") or {}).get("restore_s")
    if restore is None:
        return failed("restore-budget", "the rehearsal documents no restore time (the target was restored "
                                        "beforehand): restore the snapshot in the rehearsal so it is timed")
    where = (b.body.get("times") or {}).get("restore_measured_on")
    text = f"restore {float(restore) / 60:.1f} min of the runbook's {RESTORE_BUDGET_S // 60} min" + (
        f", measured on {where}" if where else "")
    if float(restore) > RESTORE_BUDGET_S:
        return failed("restore-budget", f"{text}: over budget, rollback option 1 cannot hold 15 minutes")
    return passed("restore-budget", text)


def same_major(directory: Path, production: str) -> Item:
    """Was the rehearsal's evidence made on production's major? Planner, locking and catalogs differ between
    majors, so a rehearsal on another one is not the runbook's. A newer server passes only when the
    rehearsal ran with --allow-newer-server for a snapshot of production's major, and then the line says so."""
    try:
        b = Bundle.open(directory)
    except CutoverError as exc:
        return failed("same-major", str(exc))
    recorded = b.body.get("postgres") or {}
    server, source = str(recorded.get("server") or ""), str(recorded.get("snapshot_source") or "")
    if not server:
        return failed("same-major", "the rehearsal's evidence records no server version (made before the suite "
                                    "recorded one): rehearse again")
    try:
        prod, rehearsed = major_of(production), major_of(server)
    except CutoverError:
        return failed("same-major", f"production's server version could not be read ({production}): check --db-url")
    said = f"rehearsed on PostgreSQL {server}, production runs {production}"
    if rehearsed == prod:
        return passed("same-major", said)
    note = str(recorded.get("newer_server_note") or "")
    if rehearsed > prod and note and source and major_of(source) == prod:
        return passed("same-major", f"{note} (--allow-newer-server): {said}")
    return failed("same-major", f"{said}: rehearse again on PostgreSQL {prod} (a snapshot of production names its "
                                "major, and the sandbox runs it)")


def evidence_items(directory: Path, plan: Plan, settings: Settings, now: datetime | None = None) -> list[Item]:
    """The six evidence prerequisites; a bundle that cannot be read fails all six, each saying so."""
    ids = ["evidence-verifies", "evidence-ready", "evidence-fresh", "same-plan", "same-cutover", "restore-budget"]
    signers = Path(settings.allowed_signers) if settings.allowed_signers is not None else None
    try:
        b = Bundle.open(directory, signers)
    except CutoverError as exc:
        return [failed(i, str(exc)) for i in ids]
    return [evidence_verifies(b), evidence_ready(b, plan), evidence_fresh(b, now or datetime.now(UTC)),
            same_plan(b, settings), same_cutover(b, settings), restore_budget(b)]


# --- the forecast ---------------------------------------------------------------------------------

FORECAST_IDS = tuple(i for i in TITLES_BY_ID if i.startswith("forecast-"))


def forecast_items(conn: Connection, plan: Plan, directory: Path, settings: Settings) -> list[Item]:
    """The window's times at production's size: the rehearsal's measurements (its evidence) scaled by
    production's planned counts, counted read-only as the dry run counts them. Past its slot: FAIL."""
    try:
        raw = Bundle.open(directory).body.get("forecast_basis")
    except CutoverError as exc:
        return [failed(i, str(exc)) for i in FORECAST_IDS]
    if not raw:
        return [failed(i, "the rehearsal's evidence records no forecast basis (made before forecasts, or no "
                          "cutover executed): rehearse again") for i in FORECAST_IDS]
    try:
        production = preflight.run(conn, plan).planned
    except psycopg.Error as exc:
        why = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return [failed(i, f"production's planned counts could not be read ({why}); raise "
                          "--check-statement-timeout or run the dry run to see them") for i in FORECAST_IDS]
    lines = forecast.forecast(forecast.Basis.from_json(raw), production,
                              execute_slot=seconds(settings.execute_slot), setb_slot=seconds(settings.setb_slot),
                              rollback_bound=seconds(settings.rollback_bound),
                              rollback_fixed=float(REVERT_DEPLOYS_S + SMOKE_S))
    found = forecast.described(lines)
    return [(passed if found[i.removeprefix("forecast-")][0] else failed)(i, found[i.removeprefix("forecast-")][1])
            for i in FORECAST_IDS]


# --- services -------------------------------------------------------------------------------------


def drain_streams(env: Mapping[str, str] | None = None, timeout: float = 10.0) -> Item:
    """Does production serve the drain-streams route? NOT SET when its URL and token are not configured.

    The probe is a GET, never the POST: a POST would drain every live stream in production. A
    POST-only route answers a GET with 405, which proves it is deployed; 404 means it is not.
    """
    environ = os.environ if env is None else env
    base = (environ.get(DRAIN_URL_ENV) or "").strip().rstrip("/")
    token = (environ.get(DRAIN_TOKEN_ENV) or "").strip()
    if not base or not token:
        return Item("drain-streams", NOT_SET, f"not probed: set {DRAIN_URL_ENV} and {DRAIN_TOKEN_ENV} (production's "
                                              "API and an admin token); drain-baked stands for it meanwhile")
    register_secret(token)
    url = base if base.endswith(DRAIN_PATH) else base + DRAIN_PATH
    shown = mask_url(url)
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    except httpx.HTTPError as exc:
        return failed("drain-streams", f"no answer from {shown} ({type(exc).__name__})")
    if response.status_code == 405 or response.is_success:
        return passed("drain-streams", f"GET {shown} -> {response.status_code} (route deployed; not fired)")
    if response.status_code == 404:
        return failed("drain-streams", f"GET {shown} -> 404: the endpoint is not deployed on production")
    return failed("drain-streams", f"GET {shown} -> {response.status_code}")


def alerts_item(plan: Plan, env: Mapping[str, str] | None = None) -> Item:
    """The alerts the cutover will send are configured, and a test message reaches the chat."""
    config = alerts.AlertConfig.from_env(env)
    if not config.configured:
        return failed("alerts", f"{config.problem}: the cutover would send no alert")
    done = alerts.send(config, "cutover_test", f"cutover_test: go/no-go for plan '{plan.name}' from "
                                               f"{socket.gethostname()}; the window's alerts will arrive here")
    if done.ok:
        return passed("alerts", f"test message delivered ({done.detail})")
    return failed("alerts", f"test message not delivered: {done.detail}")
