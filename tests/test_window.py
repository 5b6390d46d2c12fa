"""The go/no-go's items, each shown failing on a broken input and passing on a correct one.

The evidence items run on a bundle made here the way the suite makes one (operator log, plan copy,
evidence.json), then broken one way at a time; the service items against the fake Bot API and
drain-streams route on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cutover.core import evidence
from cutover.core.options import Settings, resolve
from cutover.core.plan import DEFAULT_PLAN, Plan, load_plan
from cutover.sandbox.backends import ServerInfo
from cutover.sandbox.pgbin import major_of
from cutover.suite import bundle, window
from cutover.suite.catalogue import AUTOMATED, REHEARSAL_PROOFS
from cutover.suite.manual.answers import Answer
from cutover.suite.under_check import server_version
from tests import fakes
from tests.support import ssh_signer

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(DEFAULT_PLAN)


def make_bundle(directory: Path, plan: Plan, settings: Settings, *, results: dict[str, str] | None = None,
                started: datetime = NOW - timedelta(days=2), restore_s: float | None = 42.0,
                command: str | None = None, rehearsal: bool = True, postgres: dict[str, str] | None = None) -> Path:
    """A rehearsal's artifacts directory as oplog and bundle write it: every one of the 21 passed by default."""
    directory.mkdir(parents=True, exist_ok=True)
    automated = [c.id for c in AUTOMATED]
    checks = [{"check": c, "result": "passed" if c in automated else "pass"} for c in [*automated, *plan.manual]]
    checks += [{"check": c, "result": "passed", "kind": "rehearsal"} for c in REHEARSAL_PROOFS]  # content, rollback
    for c in checks:
        c["result"] = (results or {}).get(c["check"], c["result"])
    log: dict[str, Any] = {"verdict": "REHEARSAL READY: 21 of 21 checks passed", "checks": checks,
                           "rehearsal": {"restore_s": restore_s} if rehearsal else None,
                           "started_at": started.isoformat()}
    (directory / "operator-log.json").write_text(json.dumps(log))
    (directory / "operator-log.md").write_text("# Operator log\n")
    shutil.copy(settings.plan_path, directory / "plan.toml")
    evidence.write(directory, {"operator_log_json": directory / "operator-log.json",
                               "operator_log_md": directory / "operator-log.md", "plan": directory / "plan.toml"},
                   {"verdict": log["verdict"], "plan": {"name": plan.name, "sha256": bundle.plan_sha256(settings)},
                    "cutover_command": command or bundle.cutover_command(settings),
                    "snapshot": {"timestamp": (started - timedelta(hours=1)).isoformat()},
                    "times": {"started_at": started.isoformat(), "restore_s": restore_s},
                    **({"postgres": postgres} if postgres is not None else {})})
    return directory


def items(directory: Path, plan: Plan, settings: Settings) -> dict[str, window.Item]:
    return {i.id: i for i in window.evidence_items(directory, plan, settings, NOW)}


def test_a_good_rehearsal_passes_every_evidence_item(tmp_path: Path, plan: Plan) -> None:
    settings = resolve({}, {}, {})
    found = items(make_bundle(tmp_path, plan, settings), plan, settings)
    assert all(i.ok for i in found.values()), [i.line() for i in found.values()]
    assert "READY: 21 of 21 passed" in found["evidence-ready"].detail
    assert "0.7 min of the runbook's 8 min" in found["restore-budget"].detail


Break = Callable[[Path, Plan, Settings], Settings]


def _edited(d: Path, p: Plan, s: Settings) -> Settings:
    make_bundle(d, p, s)
    (d / "operator-log.md").write_text("# Operator log: tidied up afterwards\n")
    return s


def _other_plan(d: Path, p: Plan, s: Settings) -> Settings:
    make_bundle(d, p, s)
    other = d.parent / "other-plan.toml"
    other.write_text(DEFAULT_PLAN.read_text() + "\n# edited since the rehearsal\n")
    return resolve({"plan": str(other)}, {}, {})


def _other_command(d: Path, p: Plan, s: Settings) -> Settings:
    make_bundle(d, p, s)
    return resolve({"cutover_cmd": "python scripts/cutover_patient_tenant.py --execute --operator-confirmed"}, {}, {})


BROKEN: dict[str, tuple[Break, str, str]] = {
    "edited": (_edited, "evidence-verifies", "operator-log.md: differs"),
    "a12-failed": (lambda d, p, s: (make_bundle(d, p, s, results={"A12": "fail", "A13": "skipped"}), s)[1],
                   "evidence-ready", "19 of 21 passed; not passed: A12 FAIL, A13 SKIPPED"),
    "a-set-b-run": (lambda d, p, s: (make_bundle(d, p, s, rehearsal=False), s)[1], "evidence-ready",
                    "is not a rehearsal's"),
    "rollback-failed": (lambda d, p, s: (make_bundle(d, p, s, results={"rollback": "failed"}), s)[1],
                        "evidence-ready", "21 of 21 passed; not passed: rollback FAILED"),
    "content-changed": (lambda d, p, s: (make_bundle(d, p, s, results={"A5-content": "failed"}), s)[1],
                        "evidence-ready", "not passed: A5-content FAILED"),
    "eight-days-old": (lambda d, p, s: (make_bundle(d, p, s, started=NOW - timedelta(days=8)), s)[1],
                       "evidence-fresh", "older than 7 days"),
    "other-plan": (_other_plan, "same-plan", "differs from"),
    "other-command": (_other_command, "same-cutover", "production would run '--cutover-cmd python scripts/"),
    "slow-restore": (lambda d, p, s: (make_bundle(d, p, s, restore_s=9 * 60.0), s)[1], "restore-budget",
                     "over budget"),
    "no-restore-time": (lambda d, p, s: (make_bundle(d, p, s, restore_s=None), s)[1], "restore-budget",
                        "documents no restore time"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_evidence_item_fails_on_its_broken_input(tmp_path: Path, plan: Plan, case: str) -> None:
    breaker, item_id, fragment = BROKEN[case]
    settings = breaker(tmp_path / "run", plan, resolve({}, {}, {}))
    found = items(tmp_path / "run", plan, settings)
    assert found[item_id].status == "FAIL" and fragment in found[item_id].detail, found[item_id].line()
    others = [i for i in found.values() if i.id != item_id and not i.ok]
    assert not others, [i.line() for i in others]  # the break is named where it belongs, nowhere else


def test_an_edited_claim_in_evidence_json_fails_verification(tmp_path: Path, plan: Plan) -> None:
    settings = resolve({}, {}, {})
    make_bundle(tmp_path, plan, settings, restore_s=900.0)
    body = json.loads((tmp_path / "evidence.json").read_text())
    body["times"]["restore_s"] = 60.0
    (tmp_path / "evidence.json").write_text(json.dumps(body))
    found = items(tmp_path, plan, settings)
    assert not found["evidence-verifies"].ok and "evidence.json" in found["evidence-verifies"].detail


def test_no_bundle_fails_every_evidence_item(tmp_path: Path, plan: Plan) -> None:
    found = items(tmp_path, plan, resolve({}, {}, {}))
    assert len(found) == 6 and all(i.status == "FAIL" and "no evidence.json" in i.detail for i in found.values())


def test_a_signed_rehearsal_verifies_with_its_signer_named(tmp_path: Path, plan: Plan) -> None:
    key, line = ssh_signer(tmp_path / "keys", "rehearsal-lead@example.com")
    (tmp_path / "allowed").write_text(line)
    settings = resolve({"allowed_signers": str(tmp_path / "allowed")}, {}, {})
    evidence.sign(make_bundle(tmp_path / "run", plan, settings), key)
    found = items(tmp_path / "run", plan, settings)
    assert all(i.ok for i in found.values()), [i.line() for i in found.values()]
    assert "signed by rehearsal-lead@example.com with ED25519 key" in found["evidence-verifies"].detail


def test_with_signers_an_unsigned_or_forged_rehearsal_is_no_go(tmp_path: Path, plan: Plan) -> None:
    """A NOT READY rehearsal whose log was edited into READY and every hash recomputed: with hashes alone
    the go/no-go's evidence items all pass; with --allowed-signers the signature gives it away."""
    key, line = ssh_signer(tmp_path / "keys", "rehearsal-lead@example.com")
    (tmp_path / "allowed").write_text(line)
    plain, checked = resolve({}, {}, {}), resolve({"allowed_signers": str(tmp_path / "allowed")}, {}, {})
    run = make_bundle(tmp_path / "run", plan, plain, results={"A12": "fail"})
    evidence.sign(run, key)
    assert items(run, plan, checked)["evidence-ready"].status == "FAIL"
    signature = (run / evidence.SIGNATURE).read_bytes()
    make_bundle(run, plan, plain)  # the forger's rewrite: READY, every hash recomputed
    assert all(i.ok for i in items(run, plan, plain).values())
    unsigned = items(run, plan, checked)["evidence-verifies"]
    assert unsigned.status == "FAIL" and "the bundle is not signed" in unsigned.detail, unsigned.line()
    (run / evidence.SIGNATURE).write_bytes(signature)  # ... keeping the old signature does not help either
    forged = items(run, plan, checked)["evidence-verifies"]
    assert forged.status == "FAIL" and "its signature does not verify" in forged.detail, forged.line()


@pytest.fixture
def services() -> Iterator[fakes.FakeBot]:
    with fakes.telegram() as fake:
        yield fake


def drain_env(fake: fakes.FakeBot) -> dict[str, str]:
    return {window.DRAIN_URL_ENV: fake.url, window.DRAIN_TOKEN_ENV: "eyJhbGciOi.drain-token.sig"}


def test_drain_streams_is_probed_without_firing_it(services: fakes.FakeBot) -> None:
    item = window.drain_streams(drain_env(services))
    assert item.ok and "405" in item.detail, item.line()
    assert [r["method"] for r in services.requests] == ["GET"]  # a POST would drain production's streams
    assert services.requests[0]["auth"] == "Bearer eyJhbGciOi.drain-token.sig"
    assert "drain-token" not in item.line()


@pytest.mark.parametrize(("status", "fragment"), [(404, "not deployed"), (502, "502")])
def test_drain_streams_fails_when_the_route_does_not_answer(services: fakes.FakeBot, status: int,
                                                            fragment: str) -> None:
    services.state["drain_status"] = status
    item = window.drain_streams(drain_env(services))
    assert item.status == "FAIL" and fragment in item.detail, item.line()


def test_drain_streams_unconfigured_is_not_a_pass() -> None:
    item = window.drain_streams({})
    assert item.status == window.NOT_SET and not item.ok and window.DRAIN_URL_ENV in item.detail


def test_alerts_deliver_a_test_message(services: fakes.FakeBot, plan: Plan) -> None:
    item = window.alerts_item(plan, services.env())
    assert item.ok, item.line()
    assert services.events() == ["cutover_test"] and services.token not in item.line()


@pytest.mark.parametrize(("env", "fragment"), [
    ({}, "alerts are not configured"),
    ({"CUTOVER_TELEGRAM_CHAT_ID": "42"}, "chat not found"),
])
def test_alerts_fail_when_not_configured_or_not_delivered(services: fakes.FakeBot, plan: Plan,
                                                          env: dict[str, str], fragment: str) -> None:
    item = window.alerts_item(plan, services.env(**env) if env else {})
    assert item.status == "FAIL" and fragment in item.detail, item.line()


@pytest.mark.parametrize(("result", "status"), [("pass", "PASS"), ("fail", "FAIL"), ("skip", "SKIP")])
def test_only_a_pass_answer_passes(result: str, status: str) -> None:
    answer = Answer("backend-image", result, "seen on the branch", "op", "2026-11-25T10:00:00+00:00", "answers file")
    assert window.answered("backend-image", answer, "").status == status
    assert window.answered("backend-image", None, "no terminal").status == "UNANSWERED"


def test_the_verdict_is_go_only_when_every_expected_item_passed() -> None:
    good = {i: window.passed(i, "ok") for i in ("A1", "A2")}
    assert window.verdict(good, ["A1", "A2"]) == (True, "WINDOW GO: 2 of 2 prerequisites hold")
    assert window.verdict(good, ["A1", "A2", "alerts"]) == (False, "WINDOW NO-GO: alerts not run")
    bad = {**good, "A2": window.failed("A2", "missing")}
    assert window.verdict(bad, ["A1", "A2"]) == (False, "WINDOW NO-GO: A2 FAIL")


@pytest.mark.parametrize(("recorded", "ok", "said"), [
    ({"server": "{prod}", "snapshot_source": "{prod}"}, True, "rehearsed on PostgreSQL {prod}, production runs"),
    ({"server": "18.6", "snapshot_source": "18.6"}, False, "rehearse again on PostgreSQL {major}"),
    ({"server": "18.6", "snapshot_source": "{prod}", "newer_server_note": "rehearsed on 18 for a PostgreSQL {major} "
      "production"}, True, "rehearsed on 18 for a PostgreSQL {major} production (--allow-newer-server)"),
    ({"server": "18.6", "snapshot_source": "18.6", "newer_server_note": "x"}, False, "rehearse again"),
    ({}, False, "records no server version"),
])
def test_the_go_no_go_holds_the_rehearsals_major_to_productions(
    tmp_path: Path, plan: Plan, cutover_server: ServerInfo, recorded: dict[str, str], ok: bool, said: str
) -> None:
    """Production here is a real server, read the way -m prereq reads it (read-only SHOW server_version)."""
    prod = server_version(cutover_server.admin_url)
    major = str(major_of(prod))
    facts = {k: v.format(prod=prod, major=major) for k, v in recorded.items()}
    settings = resolve({}, {}, {})
    found = window.same_major(make_bundle(tmp_path, plan, settings, postgres=facts), prod)
    assert found.ok is ok, found.line()
    assert said.format(prod=prod, major=major) in found.detail


def test_a_check_the_plan_declares_not_applicable_is_named_and_never_read_as_passed(tmp_path: Path,
                                                                                  plan: Plan) -> None:
    """A rehearsal of a plan without row-level security: READY over its 20 applicable checks, A21 named. The
    same evidence does not make a plan that has RLS ready: A21's "not applicable" is no pass."""
    no_rls = tmp_path / "no-rls.toml"
    no_rls.write_text(DEFAULT_PLAN.read_text().replace("row_level_security = true", "row_level_security = false", 1))
    settings = resolve({"plan": str(no_rls)}, {}, {})
    declared = load_plan(no_rls)
    made = make_bundle(tmp_path / "bundle", declared, settings, results={"A21": "not applicable"})
    ready = items(made, declared, settings)["evidence-ready"]
    assert ready.ok, ready.line()
    assert "READY: 20 of 20 applicable passed" in ready.detail
    assert ready.detail.endswith("not applicable, as the plan declares: A21 no row-level security"), ready.detail
    reference = resolve({}, {}, {})
    held = items(made, plan, reference)
    assert not held["evidence-ready"].ok and "A21 NOT APPLICABLE" in held["evidence-ready"].detail
    assert not held["same-plan"].ok
