"""The manual checks' prompts driven through a real terminal: tmux runs the suite, send-keys answers.

The answers must land in the operator log, the journal and the Allure results, with the operator
and the time; the prompt shows the steps with the real values filled in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import REHEARSAL, operator_log

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def wait_for(session: str, text: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", session)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared on the terminal:\n{screen}")


def answer(session: str, *keys: str) -> None:
    for key in keys:
        tmux("send-keys", "-t", session, "-l", key)
        tmux("send-keys", "-t", session, "Enter")


def test_an_operator_answers_the_prompts_in_a_real_terminal(
    pytester: pytest.Pytester, example: Callable[..., list[str]], cut_over_db: DatabaseUnderCheck
) -> None:
    args = example(**REHEARSAL)
    done = pytester.path / "exit-code"
    session = f"cutover-{uuid.uuid4().hex[:8]}"
    command = " ".join([sys.executable, "-m", "pytest", "-m", "manual", "-k", "'A11 or A14'", "-p", "no:randomly",
                        "--db-url", f"'{cut_over_db.url}'", "--operator", "tmux-op", *args])
    tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "50", "-c", str(pytester.path),
         f"{command}; echo $? > {done}; sleep 60")
    try:
        screen = wait_for(session, "A11 result [p]ass / [f]ail / [s]kip:")
        assert "A11 Patient login E2E" in screen
        answer(session, "maybe")
        wait_for(session, "please answer p, f or s")
        answer(session, "p", "logged in, chat and upload fine")
        screen = wait_for(session, "A14 result [p]ass / [f]ail / [s]kip:")
        case_line = next(line for line in screen.splitlines() if "open moved case" in line)
        assert "<case_id>" not in case_line and "case" in case_line
        answer(session, "f", "performance page gives 403")
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        screen = tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)
    assert done.read_text().strip() == "1", screen
    log = operator_log(pytester.path)
    checks = {c["check"]: c for c in log["checks"]}
    assert checks["A11"]["result"] == "pass" and checks["A11"]["observation"] == "logged in, chat and upload fine"
    assert checks["A14"]["result"] == "fail" and checks["A14"]["operator"] == "tmux-op" and checks["A14"]["at"]
    latest = pytester.path / "artifacts" / "latest"
    heading, *journal = [json.loads(x) for x in (latest / "journal.jsonl").read_text().splitlines()]
    assert heading["verdict"] == log["verdict"] and log["verdict"].startswith("REHEARSAL NOT READY: A14 FAIL")
    assert "plan_sha256" in heading["rehearsal"]  # the rehearsal this journal, replayed, answers for
    assert [(j["check"], j["result"], j["source"]) for j in journal] == [("A11", "pass", "terminal"),
                                                                         ("A14", "fail", "terminal")]
    attachments = "".join(p.read_text() for p in Path(latest / "allure-results").glob("*-attachment.json"))
    assert "performance page gives 403" in attachments and "tmux-op" in attachments
