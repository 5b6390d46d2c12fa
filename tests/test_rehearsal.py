"""The rehearsal as operators run it: pytester projects with the real smoke and rehearsal tests.

The full flow leaves an operator log with every field and the single-file HTML report; answers
files drive the manual checks and the journal replays; a BLOCKED dry run stops before execute;
--cutover-cmd runs the operator's command; A20-active cleans up even when the sweep fails; and a
secret canary appears in no artifact of a failing run.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from cutover.core.plan import Plan
from cutover.sandbox.backends import ServerInfo
from cutover.suite.under_check import DatabaseUnderCheck
from tests.fakes import dev_branch
from tests.support import REHEARSAL, ROOT, execute_sql, machine_python, operator_log, rehearse_on, scalar

MARKER = "rehearsal:synthetic-straggler"


def test_the_full_rehearsal_leaves_a_complete_operator_log_and_answers_replay(
    pytester: pytest.Pytester, example: Callable[..., list[str]]
) -> None:
    args = example(**REHEARSAL)
    answers = pytester.path / "answers.yaml"
    answers.write_text("A11: {result: pass, observation: 'chat, upload and match request all fine'}\n"
                       "A12:\n  result: fail\n  observation: body differed from the cached one\n"
                       "A13: {result: skip, observation: 'the dev-branch app was down'}\n")
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", "--operator", "op-alice",
                                           "--answers=answers.yaml", *args)
    out = result.stdout.str()
    assert result.ret == 1, out  # A12 failed on the operator's word
    assert "ALL 12 CHECKS PASSED" in out and "A20-active PASS" in out
    # progress while it works: the restore and each of the execute's steps, as they start
    assert "rehearsal: restore the snapshot ..." in out and "rehearsal: execute [ 1/" in out
    assert "manual checks: 1 of 9 passed, 3 answered; 6 need an operator: A14, A15, A16, A17, A18, A19" in out
    verdict = "REHEARSAL NOT READY: A12 FAIL, A13 SKIP, 6 unanswered"
    assert verdict in out and "ANSWERED" not in out and "checks passed" not in out, out
    log = operator_log(pytester.path)
    r = log["rehearsal"]
    for key in ("target", "postgres", "snapshot", "snapshot_timestamp", "restore_s", "dry_run", "execute_s",
                "execute_via", "report_path", "captured", "timeline"):
        assert r[key] not in ("", None, [], {}), key
    assert r["dry_run"] == "READY" and Path(r["report_path"]).is_file()
    assert log["rollback_time_bound"]["within_budget"] is True
    assert "fsync and full_page_writes off" in log["rollback_time_bound"]["restore_measured_on"]
    assert [t["step"] for t in r["timeline"]][:4] == ["provision the sandbox", "restore the snapshot",
                                                      "pre-flight dry run", "execute the cutover"]
    checks = {c["check"]: c for c in log["checks"]}
    assert len(checks) == 24 and all(checks[f"A{i}"]["result"] == "passed" for i in (1, 2, 3, 10, 20, 21))
    assert checks["A11"]["result"] == "pass" and checks["A11"]["operator"] == "op-alice"
    assert checks["A12"]["observation"] == "body differed from the cached one"
    assert checks["A14"]["result"] == "skipped" and "needs operator" in checks["A14"]["observation"]
    assert checks["A20-active"]["result"] == "passed"
    latest = pytester.path / "artifacts" / "latest"
    html = latest / log["allure"]["html"]
    assert html.is_file() and html.stat().st_size > 100_000
    results = latest / "allure-results"
    props = (results / "environment.properties").read_text()
    assert "postgres=15" in props and "git_sha=" in props and "snapshot=" in props
    assert (results / "executor.json").is_file() and (results / "categories.json").is_file()
    seen: dict[str, list[tuple[str, str, str]]] = {}  # check → (title, status, parent suite), from Allure's results
    for found in (json.loads(p.read_text()) for p in results.glob("*-result.json")):
        labels = {label["name"]: label["value"] for label in found["labels"]}
        seen.setdefault(labels.get("check_id", ""), []).append((found["name"], found["status"], labels["parentSuite"]))
    assert {status for _, status, _ in seen["A12"]} == {"failed"}  # a failed manual check shows as failed
    assert {status for _, status, _ in seen["A14"]} == {"skipped"}  # unanswered: never a pass
    assert ("A3 nothing patient-owned remains on the source [events]", "passed", "Set A + Set B") in seen["A3"]
    assert {suite for _, _, suite in seen["A5"]} == {"Set A"}
    assert "body differed from the cached one" in "".join(p.read_text() for p in results.glob("*-attachment.json"))
    steps = "".join(p.read_text() for p in results.glob("*-attachment.txt"))
    # the prompt says where the app must point: the sandbox, how to reach it, and what an answer is worth
    clone = urlsplit(r["target"])
    assert (f"Point the application at the rehearsal's database, the embedded sandbox on this machine: host "
            f"{clone.hostname}, port {clone.port}, database {clone.path.lstrip('/')}, user {clone.username}, "
            "password ***") in steps, steps
    assert "server.json" in steps and "the sandbox stops when this run ends" in steps
    assert "Manual answers count only if the application really ran against this database" in steps
    assert 'curl -X POST "$CUTOVER_API_URL/api/' in steps  # pasteable as it is
    md = (latest / "operator-log.md").read_text()
    assert "chat, upload and match request all fine" in md and "allure-report/index.html" in md
    assert md.startswith(f"# Operator log: {verdict}\n") and log["verdict"] == verdict
    assert json.loads((latest / "journal.jsonl").read_text().splitlines()[0])["verdict"] == verdict
    assert json.loads((results / "executor.json").read_text())["reportName"] == verdict
    assert "restore measured on the sandbox with fsync and full_page_writes off" in md
    journal = latest / "journal.jsonl"
    lines = [json.loads(x) for x in journal.read_text().splitlines()[1:]]
    assert {x["check"] for x in lines} == {"A11", "A12", "A13"}

    replay = pytester.runpytest_subprocess("-m", "manual", "-p", "no:randomly", f"--answers={journal}", *args)
    replay.assert_outcomes(passed=1, failed=1, skipped=7)


def test_the_answers_template_is_written_and_accepted_back(pytester: pytest.Pytester,
                                                           example: Callable[..., list[str]]) -> None:
    args = example(**REHEARSAL)
    made = pytester.runpytest_subprocess("--answers-template", "fill.yaml", *args)
    assert made.ret == 0 and "wrote the answers template" in made.stdout.str()
    text = (pytester.path / "fill.yaml").read_text()
    assert all(f"A{i}:" in text for i in range(11, 20)) and "X-Idempotency-Key" in text
    again = pytester.runpytest_subprocess("--answers-template", "fill.yaml", *args)
    assert again.ret == 4 and "refusing to overwrite" in again.stderr.str()
    filled = text.replace("result:        # pass | fail | skip", "result: pass", 1)
    (pytester.path / "fill.yaml").write_text(filled)
    ok = pytester.runpytest_subprocess("-m", "manual", "--answers=fill.yaml", "-k", "A11", *args)
    ok.assert_outcomes(passed=1)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("a.yaml", "A11: maybe\n", "A11.result must be pass, fail or skip, got 'maybe'"),
    ("a.json", '{"A99": "pass"}', "'A99' is not a manual check"),
    ("a.yaml", "A11: [unclosed\n", "is not valid YAML"),
    ("a.jsonl", '{"result": "pass"}\n', "line 1 has no 'check'"),
    ("a.yaml", "A11: {result: pass, observaton: 'chat fine'}\n", "A11 has unknown key 'observaton'"),
    ("a.yaml", "A12: fail\n", "A12 is fail without an observation"),
    ("a.json", '{"A13": {"result": "skip", "observation": " "}}', "A13 is skip without an observation"),
])
def test_a_bad_answers_file_is_one_line_and_nothing_runs(pytester: pytest.Pytester, example: Callable[..., list[str]],
                                                       name: str, content: str, message: str) -> None:
    args = example(**REHEARSAL)
    (pytester.path / name).write_text(content)
    result = pytester.runpytest_subprocess("-m", "setA", f"--answers={name}", *args)
    assert result.ret == 4
    assert message in result.stderr.str() and "fix" in result.stderr.str()
    assert not (pytester.path / "artifacts").exists()


def straggler_rows(url: str) -> int:
    return int(scalar(url, f"SELECT count(*) FROM events WHERE payload->>'actor' = '{MARKER}'")  # noqa: S608
               or 0)


def test_a20_active_leaves_no_synthetic_row_when_the_sweep_fails(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str
) -> None:
    """A trigger refuses to move the synthetic row, so the sweep really fails; the cleanup still runs."""
    execute_sql(fresh_db, f"""
        CREATE FUNCTION refuse_synthetic() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'test: the sweep is refused'; END $$;
        CREATE TRIGGER refuse_synthetic BEFORE UPDATE ON events FOR EACH ROW
        WHEN (OLD.payload->>'actor' = '{MARKER}') EXECUTE FUNCTION refuse_synthetic();""")
    args = example(**REHEARSAL)
    result = pytester.runpytest_subprocess("-m", "setA", *rehearse_on(fresh_db), "-p", "no:randomly",
                                           *args)
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "A20-active FAIL" in out and "the sweep failed" in out and "ALL 12 CHECKS PASSED" in out
    assert "REHEARSAL NOT READY: A20-active FAIL, rollback SKIP, 9 unanswered" in out
    assert straggler_rows(fresh_db) == 0
    log = operator_log(pytester.path)
    assert {c["check"]: c["result"] for c in log["checks"]}["A20-active"] == "failed"
    assert log["rehearsal"]["execute_via"] == "bundled cutover module" and log["rehearsal"]["sandbox"] is False


def test_a_db_url_without_rehearse_is_only_read(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck
) -> None:
    args = example(**REHEARSAL)
    before = scalar(cut_over_db.url, "SELECT count(*) FROM events")
    result = pytester.runpytest_subprocess("-m", "setA", "--db-url", cut_over_db.url, "-p", "no:randomly",
                                           f"--report-path={cut_over_db.report_path}", *args)
    out = result.stdout.str()
    assert result.ret == 6, out  # nothing failed, but nothing manual was answered: not a pass
    assert "REHEARSAL NOT READY: A5-content SKIP, A20-active SKIP, rollback SKIP, 9 unanswered" in out
    assert "A20-active SKIP" in out and "needs --rehearse" in out
    assert "rehearsal: execute" not in out
    assert scalar(cut_over_db.url, "SELECT count(*) FROM events") == before
    assert operator_log(pytester.path)["rehearsal"] is None


def test_a_blocked_dry_run_stops_before_execute_and_names_the_blocker(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str
) -> None:
    execute_sql(fresh_db, "INSERT INTO events (id, tenant_id, event_type, payload, source_service) "
                          "VALUES ('ev-mystery', 'tenant-apollo-001', 'mystery.happened', '{}', 'test')")
    args = example(**REHEARSAL)
    result = pytester.runpytest_subprocess("-m", "setA", *rehearse_on(fresh_db), *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 2, out
    assert "BLOCKED" in out and "mystery.happened" in out
    assert scalar(fresh_db, "SELECT count(*) FROM events WHERE event_type LIKE 'cutover.%'") == 0
    log = operator_log(pytester.path)
    assert log["rehearsal"]["dry_run"] == "BLOCKED" and log["rehearsal"]["blockers"]
    assert log["verdict"].startswith("REHEARSAL NOT READY: setup error: pre-flight dry run is BLOCKED")
    assert log["setup_error"].startswith("pre-flight dry run is BLOCKED") and log["exit_status"] == 2
    assert [t["status"] for t in log["timeline"]][-1] == "failed"


def test_the_operators_cutover_command_is_used_when_given(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str
) -> None:
    args = example(**REHEARSAL)
    # As an operator writes it: the machine's python, the runbook's relative path.
    cmd = (f'cd {ROOT} && {machine_python()} scripts/cutover_patient_tenant.py --execute --operator-confirmed '
           '--report-path "$CUTOVER_REPORT_PATH"')
    result = pytester.runpytest_subprocess("-m", "setA and sql", *rehearse_on(fresh_db),
                                           f"--cutover-cmd={cmd}", *args)
    assert result.ret == 0, result.stdout.str()  # exactly the 12 SQL checks: the runbook's step 5a
    assert "ALL 12 CHECKS PASSED (step 5a): the rehearsal is READY only after step 5b" in result.stdout.str()
    assert operator_log(pytester.path)["rehearsal"]["execute_via"] == "--cutover-cmd"


def test_a_failing_cutover_command_stops_the_rehearsal(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str
) -> None:
    args = example(**REHEARSAL)
    failing = pytester.runpytest_subprocess("-m", "setA", *rehearse_on(fresh_db),
                                            "--cutover-cmd=echo boom; exit 7", *args)
    text = failing.stdout.str() + failing.stderr.str()
    assert failing.ret == 2 and "--cutover-cmd exited 7" in text and "cutover-cmd: boom" in text


def test_a_secret_canary_appears_in_no_artifact_of_a_failing_run(
    pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str, cutover_server: ServerInfo,
    cutover_plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = f"Canary-{uuid.uuid4().hex}"
    role = f"canary_{uuid.uuid4().hex[:8]}"
    execute_sql(cutover_server.admin_url, f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
    parts = urlsplit(fresh_db)
    url = urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))
    jwt = "eyJhbGciOiJIUzI1NiJ9." + base64.urlsafe_b64encode(f'{{"canary":"{password}"}}'.encode()).decode().rstrip(
        "=") + ".c2lnbmF0dXJlY2FuYXJ5"
    with dev_branch() as fake:
        fake.state["send_drained"] = False  # A19's assist fails: its evidence goes to Allure
        for key, value in {"CUTOVER_API_URL": fake.http_url, "CUTOVER_WS_URL": fake.ws_url,
                           "CUTOVER_PATIENT_JWT": jwt, "CUTOVER_ADMIN_JWT": jwt, "CUTOVER_PROVIDER_JWT": jwt}.items():
            monkeypatch.setenv(key, value)
        args = example(**REHEARSAL)
        (pytester.path / "answers.json").write_text(json.dumps({"A11": {"result": "fail", "observation":
                                                                         f"token {jwt} and {url}"}}))
        result = pytester.runpytest_subprocess("-m", "setA", *rehearse_on(url), "-p", "no:randomly",
                                               "--answers=answers.json", "-l", "--tb=long", *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1 and "A19  FAIL" in out and "A11  FAIL" in out, out
    assert password not in out and jwt not in out
    latest = (pytester.path / "artifacts" / "latest").resolve()
    steps = "".join(p.read_text() for p in (latest / "allure-results").glob("*-attachment.txt"))
    assert (f"Point the application at the rehearsal's database, the dev branch given with --db-url: host "
            f"{parts.hostname}, port {parts.port}, database {parts.path.lstrip('/')}, user {role}, password ***") \
        in steps, steps
    assert "Manual answers count only if the application really ran against this database" in steps
    files = [p for p in latest.rglob("*") if p.is_file()]
    assert any(p.name == "index.html" for p in files) and len(files) > 50
    encoded = [base64.b64encode(password.encode()[i:]).decode()[4:24] for i in range(3)]
    for path in files:
        data = path.read_bytes()
        assert password.encode() not in data and jwt.encode() not in data, path
        if path.name == "index.html":
            assert not any(e.encode() in data for e in encoded), "the HTML embeds the password encoded"


def test_a_re_run_on_a_restored_dev_branch_keeps_the_first_runs_restore_figures(
    pytester: pytest.Pytester, example: Callable[..., list[str]], empty_db: str
) -> None:
    args = example(**REHEARSAL)
    # The first run restores the snapshot, then its cutover command fails: the dev branch stays restored.
    first = pytester.runpytest_subprocess("-m", "setA and sql", *rehearse_on(empty_db),
                                          "--cutover-cmd=exit 7", *args)
    assert first.ret == 2, first.stdout.str()
    restored = operator_log(pytester.path)
    stamp = (pytester.path / "artifacts" / "latest").resolve().name
    assert restored["rehearsal"]["restore_s"] is not None and restored["rehearsal"]["snapshot_timestamp"]
    again = pytester.runpytest_subprocess("-m", "setA and sql", *rehearse_on(empty_db), *args)
    out = again.stdout.str()
    assert "ALL 12 CHECKS PASSED" in out, out
    log = operator_log(pytester.path)
    assert (pytester.path / "artifacts" / "latest").resolve().name != stamp
    r = log["rehearsal"]
    assert r["restored_by_run"] == stamp
    for field in ("restore_s", "snapshot_timestamp", "restore_measured_on"):
        assert r[field] == restored["rehearsal"][field], field
    assert r["snapshot"] == restored["rehearsal"]["snapshot"]
    assert log["rollback_time_bound"]["restore_s"] == restored["rehearsal"]["restore_s"]
    md = (pytester.path / "artifacts" / "latest" / "operator-log.md").read_text()
    assert f"restored by the earlier run {stamp}" in md, md
    assert f"- snapshot timestamp: {restored['rehearsal']['snapshot_timestamp']}" in md


def test_a_re_run_on_a_dev_branch_restored_by_hand_says_the_figures_are_unknown(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck
) -> None:
    args = example(**REHEARSAL)
    # restored by hand (runbook step 2), never by this suite: no earlier run in artifacts/ to take figures from
    result = pytester.runpytest_subprocess("-m", "setA and sql", *rehearse_on(cut_over_db.url), *args)
    log = operator_log(pytester.path)
    assert "restored before this run, not by an earlier run in artifacts/" in log["rehearsal"]["snapshot"], \
        result.stdout.str()
    assert log["rehearsal"]["restored_by_run"] == ""


def test_an_answers_file_records_its_rehearsal_and_warns_when_applied_to_another(
    pytester: pytest.Pytester, example: Callable[..., list[str]]
) -> None:
    args = example(**REHEARSAL)
    written = pytester.runpytest_subprocess("--answers-template=mine.yaml", *args)
    assert written.ret == 0, written.stdout.str()
    template = (pytester.path / "mine.yaml").read_text()
    assert "rehearsal:" in template and "plan_sha256:" in template and "generated default" in template
    # filled in for this rehearsal: applied without a word
    (pytester.path / "mine.yaml").write_text(template.replace("A11:\n  result:", "A11:\n  result: pass"))
    same = pytester.runpytest_subprocess("-m", "manual", "--answers=mine.yaml", *args)
    assert "A11  PASS" in same.stdout.str(), same.stdout.str()
    assert "written for another rehearsal" not in same.stdout.str()
    journal = (pytester.path / "artifacts" / "latest" / "journal.jsonl").read_text().splitlines()
    heading = json.loads(journal[0])
    assert heading["rehearsal"]["plan_sha256"] in template  # a journal replays as an answers file of its run
    # the same answers for another snapshot (seed): one line in the terminal and the operator log
    other = pytester.runpytest_subprocess("-m", "manual", "--answers=mine.yaml", "--snapshot-seed=7", *args)
    out = other.stdout.str()
    warning = [line for line in out.splitlines() if "written for another rehearsal" in line]
    assert len(warning) == 1, out
    assert warning[0].startswith("WARNING: answers file mine.yaml was written for another rehearsal")
    assert "seed 20260430" in warning[0] and "seed 7" in warning[0]
    assert "A11  PASS" in out  # applied, and said so
    assert warning[0] in (pytester.path / "artifacts" / "latest" / "operator-log.md").read_text()
    assert operator_log(pytester.path)["answers_warning"] == warning[0]
