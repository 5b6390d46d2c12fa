"""The go/no-go as an operator runs it: `pytest -m prereq --db-url=PROD --evidence=DIR` in example projects.

A READY rehearsal's evidence, a production database that still holds the pre-cutover data, the
alerts and drain-streams on a fake service, and the operator items answered: WINDOW GO, exit 0,
nothing written. Then broken one way at a time: NO-GO naming each failing prerequisite, exit 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core.plan import Plan
from tests import fakes
from tests.support import REHEARSAL, checksum, execute_sql, operator_tests

FILES = {**REHEARSAL, **operator_tests("test_prereq")}
MANUAL = "".join(f"A{i}: {{result: pass, observation: 'A{i} seen working end to end'}}\n" for i in range(11, 20))
WINDOW = ("drain-baked: {result: pass, observation: 'deployed 2026-11-20, no errors since'}\n"
          "backend-image: {result: pass, observation: 'image staged on the post-cutover branch'}\n"
          "maintenance-rewrite: {result: pass, observation: 'rewrite shown on the preview'}\n")


def _lines(out: str) -> dict[str, str]:
    """The go/no-go section: prerequisite id -> its status word."""
    section = out[out.index("window go/no-go"):]
    found = {}
    for line in section.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("PASS", "FAIL", "SKIP", "UNANSWERED", "NOT"):
            found[parts[2] if parts[0] == "NOT" else parts[1]] = parts[0]
    return found


def test_a_ready_rehearsal_gives_go_and_each_broken_prerequisite_a_named_no_go(
        pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str, cutover_plan: Plan,
        monkeypatch: pytest.MonkeyPatch) -> None:
    args = example(**FILES)
    (pytester.path / "answers.yaml").write_text(MANUAL)
    rehearsed = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", "--answers=answers.yaml", *args)
    assert rehearsed.ret == 0, rehearsed.stdout.str()
    run_dir = (pytester.path / "artifacts" / "latest").resolve()
    (pytester.path / "window.yaml").write_text(WINDOW)
    pristine = checksum(fresh_db, cutover_plan, include_audit=True)

    with fakes.telegram() as services:
        for key, value in services.env(CUTOVER_DRAIN_URL=services.url,
                                       CUTOVER_DRAIN_TOKEN="eyJhbGciOi.admin-canary.sig").items():
            monkeypatch.setenv(key, value)
        go = pytester.runpytest_subprocess("-m", "prereq", "-p", "no:randomly", f"--db-url={fresh_db}",
                                           f"--evidence={run_dir}", "--answers=window.yaml", *args)
        out = go.stdout.str()
        assert go.ret == 0, out
        assert "WINDOW GO: 20 of 20 prerequisites hold" in out
        assert set(_lines(out).values()) == {"PASS"} and len(_lines(out)) == 20, _lines(out)
        assert "forecast-execute" in out and "(slot 5 min): fits; assumes linear in rows per table" in out
        assert services.events() == ["cutover_test"]
        assert [r["method"] for r in services.requests if "drain" in r["path"]] == ["GET"]
        assert checksum(fresh_db, cutover_plan, include_audit=True) == pristine  # read-only
        window_log = json.loads((pytester.path / "artifacts" / "latest" / "operator-log.json").read_text())
        assert window_log["verdict"] == "WINDOW GO: 20 of 20 prerequisites hold"

        # The same production in a window too small for it: the forecast says which slot it overruns.
        tight = pytester.runpytest_subprocess("-m", "prereq", "-p", "no:randomly", f"--db-url={fresh_db}",
                                              f"--evidence={run_dir}", "--answers=window.yaml", "--execute-slot=1ms",
                                              "--setb-slot=1ms", *args)
        assert tight.ret == 1, tight.stdout.str()
        assert "WINDOW NO-GO: forecast-execute FAIL, forecast-writers-blocked FAIL, forecast-setb FAIL" \
            in tight.stdout.str()
        assert "(slot 0.001 s): PAST THE SLOT" in tight.stdout.str()
        assert services.token not in out and "admin-canary" not in out

        # Broken: production's schema head, alerts unset, drain-streams not deployed, no operator answers.
        execute_sql(fresh_db, "UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'")
        monkeypatch.delenv("CUTOVER_TELEGRAM_BOT_TOKEN")
        services.state["drain_status"] = 404
        no_go = pytester.runpytest_subprocess("-m", "prereq", "-p", "no:randomly", f"--db-url={fresh_db}",
                                              f"--evidence={run_dir}", *args)
    out = no_go.stdout.str()
    assert no_go.ret == 1, out
    assert ("WINDOW NO-GO: A1 FAIL, drain-streams FAIL, alerts FAIL, drain-baked UNANSWERED, "
            "backend-image UNANSWERED, maintenance-rewrite UNANSWERED") in out
    lines = _lines(out)
    assert lines["A1"] == "FAIL" and lines["A2"] == "PASS" and lines["evidence-ready"] == "PASS"
    assert "a1b2c3d4e5f6" in out and "alerts are half configured" in out


def test_a_directory_without_evidence_is_no_go(
        pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str, tmp_path: Path) -> None:
    """No rehearsal at all in the directory given: every evidence item fails and says so."""
    args = example(**FILES)
    done = pytester.runpytest_subprocess("-m", "prereq", f"--db-url={fresh_db}", f"--evidence={tmp_path}", *args)
    out = done.stdout.str()
    assert done.ret == 1, out
    lines = _lines(out)
    assert all(lines[i] == "FAIL" for i in ("evidence-verifies", "evidence-ready", "evidence-fresh", "same-plan",
                                            "same-cutover", "restore-budget", "same-major")), lines
    assert f"no evidence.json in {tmp_path}" in out


@pytest.mark.parametrize(("extra", "fragment"), [
    ([], "pass --db-url=PROD"),
    (["--db-url=postgresql://ops:S3cret-canary@127.0.0.1:1/prod"], "pass --evidence="),
    (["--db-url=postgresql://ops:S3cret-canary@127.0.0.1:1/prod", "--evidence=x", "--rehearse"], "drop --rehearse"),
    (["--db-url=postgresql://ops:S3cret-canary@127.0.0.1:1/prod", "--evidence=x", "--allowed-signers=nope"],
     "--allowed-signers nope: no such file"),
])
def test_the_go_no_go_refuses_to_run_without_its_targets(pytester: pytest.Pytester,
                                                         example: Callable[..., list[str]], monkeypatch:
                                                         pytest.MonkeyPatch, extra: list[str], fragment: str) -> None:
    for var in ("DATABASE_URL", "CUTOVER_DB_URL", "CUTOVER_EVIDENCE", "CUTOVER_ALLOWED_SIGNERS"):
        monkeypatch.delenv(var, raising=False)
    args = example(**FILES)
    done = pytester.runpytest_subprocess("-m", "prereq", *extra, *args)
    assert done.ret == 4, done.stdout.str()
    err = done.stderr.str()
    assert fragment in err and "S3cret-canary" not in err + done.stdout.str()
    assert "sandbox: local PostgreSQL up" not in done.stdout.str() + err
    assert not (pytester.path / "artifacts").exists()


def test_prereq_tests_stay_out_of_other_runs(pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    args = example(**FILES)
    listed = pytester.runpytest_subprocess("--co", "-q", *args)
    assert "test_prereq" not in listed.stdout.str()
    assert "test_A1_schema_head" in listed.stdout.str()
