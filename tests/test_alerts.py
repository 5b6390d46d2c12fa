"""The runbook's Telegram alerts, against a fake Bot API on 127.0.0.1.

Delivered alerts arrive in order with the error on failure; an alert that cannot be delivered (no
answer, a refusal, nothing listening) never changes the cutover's outcome nor holds it past the
alert's budget, and is reported; the bot token appears in no output and no report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover.core.plan import Plan
from cutover.reference import alerts
from cutover.sandbox.backends import free_port
from tests import fakes
from tests.support import checksum, execute_sql, run_cutover


@pytest.fixture
def bot() -> Iterator[fakes.FakeBot]:
    with fakes.telegram() as fake:
        yield fake


def config(bot: fakes.FakeBot, **extra: str) -> alerts.AlertConfig:
    return alerts.AlertConfig.from_env(bot.env(**extra))


def test_an_alert_is_delivered_to_the_chat(bot: fakes.FakeBot) -> None:
    done = alerts.send(config(bot), alerts.STARTED, "cutover_started: on prod")
    assert done.ok is True and done.attempts == 1, done
    assert bot.messages == ["cutover_started: on prod"]
    assert bot.token not in done.line()


def test_one_retry_after_a_server_error(bot: fakes.FakeBot) -> None:
    bot.state["fail_first"] = 1
    done = alerts.send(config(bot), alerts.COMPLETED, "cutover_completed")
    assert done.ok is True and done.attempts == 2, done
    bot.state.update(fail_first=10)
    failed = alerts.send(config(bot), alerts.COMPLETED, "cutover_completed")
    assert failed.ok is False and failed.attempts == 2 and "HTTP 500" in failed.detail, failed


def test_a_wrong_token_is_not_retried_and_never_shown(bot: fakes.FakeBot) -> None:
    wrong = bot.token + "-typo"
    cfg = alerts.AlertConfig.from_env(bot.env(CUTOVER_TELEGRAM_BOT_TOKEN=wrong))
    done = alerts.send(cfg, alerts.STARTED, f"token {wrong} in the text too")
    assert done.ok is False and done.attempts == 1, done
    assert "HTTP 401: Unauthorized" in done.detail
    assert wrong not in done.line() and bot.token not in done.line()
    assert "NOT DELIVERED" in done.line()


def test_an_unknown_chat_is_named(bot: fakes.FakeBot) -> None:
    done = alerts.send(config(bot, CUTOVER_TELEGRAM_CHAT_ID="42"), alerts.STARTED, "x")
    assert done.ok is False and "chat not found" in done.detail, done


def test_no_answer_gives_up_within_the_budget(bot: fakes.FakeBot) -> None:
    bot.state["delay"] = 5.0
    cfg = config(bot, CUTOVER_TELEGRAM_TIMEOUT="0.5")
    start = time.monotonic()
    done = alerts.send(cfg, alerts.FAILED, "cutover_failed")
    assert time.monotonic() - start < cfg.budget_s + 1.0
    assert done.ok is False and done.attempts == 2 and "no answer" in done.detail, done


def test_a_hung_sender_does_not_hold_finish_past_the_budget() -> None:
    cfg = alerts.AlertConfig("1234:abcd", "1", "http://127.0.0.1:9", timeout_s=0.2)

    def hang(_: alerts.AlertConfig, event: str, text: str) -> alerts.Delivery:
        time.sleep(30)
        return alerts.Delivery(event, True, "late")

    alerter = alerts.Alerter(cfg, sender=hang)
    start = time.monotonic()
    alerter.send(alerts.STARTED, "x")
    out = alerter.finish()
    assert time.monotonic() - start < cfg.budget_s + 2.0
    assert [d.ok for d in out] == [False] and "given up" in out[0].detail


@pytest.mark.parametrize(("env", "fragment"), [
    ({}, "alerts are not configured: set CUTOVER_TELEGRAM_BOT_TOKEN and CUTOVER_TELEGRAM_CHAT_ID"),
    ({"CUTOVER_TELEGRAM_BOT_TOKEN": "1234:abcd"}, "CUTOVER_TELEGRAM_CHAT_ID is not set"),
    ({"CUTOVER_TELEGRAM_CHAT_ID": "1"}, "CUTOVER_TELEGRAM_BOT_TOKEN is not set"),
])
def test_missing_configuration_is_named(env: dict[str, str], fragment: str) -> None:
    cfg = alerts.AlertConfig.from_env(env)
    assert not cfg.configured and cfg.problem is not None and cfg.problem.endswith(fragment)
    assert alerts.send(cfg, alerts.STARTED, "x").ok is None


def test_the_default_is_the_public_bot_api() -> None:
    assert alerts.AlertConfig.from_env({}).api_url == "https://api.telegram.org"


def _outputs(done: object, *files: Path) -> str:
    return "".join([done.stdout, done.stderr, *(f.read_text() for f in files if f.exists())])  # type: ignore[attr-defined]


def test_execute_sends_started_then_completed(fresh_db: str, tmp_path: Path, bot: fakes.FakeBot) -> None:
    report = tmp_path / "r.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={report}", extra_env=bot.env())
    assert done.returncode == 0, done.stderr
    assert bot.events() == ["cutover_started", "cutover_completed"], bot.messages
    run_id = json.loads(report.read_text())["run_id"]
    assert run_id in bot.messages[1] and "committed" in bot.messages[1]
    assert "alert cutover_started: delivered" in done.stderr
    assert "alert cutover_completed: delivered" in done.stderr
    assert bot.token not in _outputs(done, report)


def test_a_rolled_back_execute_sends_failed_with_the_error(fresh_db: str, tmp_path: Path, cutover_plan: Plan,
                                                           bot: fakes.FakeBot) -> None:
    execute_sql(fresh_db, "UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'")
    report = tmp_path / "r.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={report}", extra_env=bot.env())
    assert done.returncode == 1, done.stderr
    assert bot.events() == ["cutover_started", "cutover_failed"], bot.messages
    assert "BLOCKED" in bot.messages[1] and "a1b2c3d4e5f6" in bot.messages[1]
    assert "alert cutover_failed: delivered" in done.stderr
    assert bot.token not in _outputs(done, report)


@pytest.mark.parametrize("fault", ["no-answer", "refused", "nothing-listening"])
def test_an_undeliverable_alert_never_fails_nor_holds_the_cutover(
        fresh_db: str, tmp_path: Path, cutover_plan: Plan, bot: fakes.FakeBot, fault: str) -> None:
    env = bot.env(CUTOVER_TELEGRAM_TIMEOUT="1")
    if fault == "no-answer":
        bot.state["delay"] = 90.0
    elif fault == "refused":
        bot.state["status"] = 429
    else:
        env["CUTOVER_TELEGRAM_API_URL"] = f"http://127.0.0.1:{free_port()}"
    report = tmp_path / "r.json"
    start = time.monotonic()
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={report}", extra_env=env)
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert "CUTOVER COMMITTED" in done.stdout
    assert json.loads(report.read_text())["commit_status"] == "committed"
    assert "alert cutover_started: NOT DELIVERED" in done.stderr, done.stderr
    assert "alert cutover_completed: NOT DELIVERED" in done.stderr
    assert "announce it by hand" in done.stderr
    # bounded by the alerts' budget (2 x 1 s + a pause, side by side), far below the fake's 90 s silence
    assert elapsed < 60, elapsed
    assert bot.token not in _outputs(done, report)


def test_without_configuration_the_cutover_says_so_and_runs(fresh_db: str, tmp_path: Path) -> None:
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={tmp_path / 'r.json'}")
    assert done.returncode == 0, done.stderr
    assert "alerts are not configured" in done.stderr and "no alert was sent" in done.stderr


def test_a_token_cut_by_the_truncation_is_still_masked(bot: fakes.FakeBot) -> None:
    """The answer's description was cut to 200 characters before masking: a proxy echoing the path
    (``/bot<token>/sendMessage``) with the cut inside the token let its first half through."""
    prefix = "no route for POST "
    cut = 200 - len(prefix) - len("/bot") - len(bot.token) // 2  # the 200th character falls mid-token
    bot.state.update(status=404, description=prefix + "x" * cut + "{path}")
    done = alerts.send(config(bot), alerts.STARTED, "x")
    assert done.ok is False and "HTTP 404: no route for POST" in done.detail, done
    half = bot.token[:len(bot.token) // 2]
    assert half not in done.line(), done.line()
    bot.state.update(description="no route for POST {path}")  # the control: the same answer, uncut
    whole = alerts.send(config(bot), alerts.STARTED, "x")
    assert "no route for POST /bot***/sendMessage" in whole.line(), whole.line()


ORPHAN_QUOTE = ("INSERT INTO quotes (id, tenant_id, case_id, amount, currency) VALUES ('quo-x', 'tenant-fortis-002', "
                "(SELECT min(c.id) FROM cases c WHERE NOT EXISTS (SELECT 1 FROM case_shares s WHERE s.case_id = c.id "
                "AND s.target_tenant_id = 'tenant-fortis-002')), 1, 'INR')")


def test_a_blocked_alert_names_counts_and_tables_never_row_ids(fresh_db: str, tmp_path: Path, cutover_plan: Plan,
                                                               bot: fakes.FakeBot) -> None:
    """A BLOCKED failure's text names sample rows (patients' keys) for the operator's terminal; the
    chat gets the blocker, its count and table, and the run id, never a row id."""
    execute_sql(fresh_db, ORPHAN_QUOTE)
    before = checksum(fresh_db, cutover_plan, include_audit=True)
    report = tmp_path / "r.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={report}", extra_env=bot.env())
    assert done.returncode == 1, done.stderr
    assert "quo-x" in done.stderr, "the operator's terminal names the rows"
    assert bot.events() == ["cutover_started", "cutover_failed"], bot.messages
    failed = bot.messages[1]
    assert "BLOCKED" in failed and "orphans: 1 quotes rows" in failed, failed
    assert json.loads(report.read_text())["run_id"] in failed, failed
    assert "quo-x" not in failed, failed
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before


def test_a_rolled_back_alert_leaves_the_servers_text_out(fresh_db: str, tmp_path: Path, bot: fakes.FakeBot) -> None:
    """A server's error text can quote a row (here a trigger names the message it refuses); the chat
    gets the cause and the SQLSTATE, the operator's terminal the whole text."""
    execute_sql(fresh_db, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                          "RAISE EXCEPTION 'refused row %', NEW.id; END $$",
                "CREATE TRIGGER refuse BEFORE UPDATE ON messages FOR EACH ROW EXECUTE FUNCTION refuse()")
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={tmp_path / 'r.json'}",
                       extra_env=bot.env())
    assert done.returncode == 4, done.stderr
    assert "refused row msg-" in done.stderr, "the operator's terminal has the server's text"
    failed = bot.messages[1]
    assert failed.startswith("cutover_failed: ROLLED BACK (exit 4)") and "SQLSTATE P0001" in failed, failed
    assert "refused row" not in failed and "msg-" not in failed, failed
