"""No secret on any screen, even on a typo: every entry point's usage errors, with a canary password and JWT.

An operator in the window pastes the production URL; one mistyped option must not put its password
on the screen, in the terminal's scrollback or in a CI log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CANARY = "canary-Pw-" + uuid.uuid4().hex[:8]
URL = f"postgresql://postgres:{CANARY}@127.0.0.1:5432/prod"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcHMiLCJjIjoi" + uuid.uuid4().hex + "In0.c2lnbmF0dXJlLXZhbHVl"

# Each typo shape an operator makes: a misspelt option with '=' or with a space, a URL or a token
# given as a bare argument.
PYTEST_TYPOS = {
    "misspelt option=": ["-m", "setB", f"--db-ulr={URL}"],
    "misspelt option, space": ["-m", "setB", "--db-ulr", URL],
    "bare URL": ["-m", "setB", URL],
    "bare JWT": ["-m", "setB", JWT],
}
CLI_TYPOS = {
    "misspelt option": ["dry-run", "--db-ulr", URL],
    "misspelt option=": ["dry-run", f"--db-ulr={URL}"],
    "bare URL": ["dry-run", URL],
    "URL for a command": [URL],
    "bare JWT": ["sweep", JWT],
}
RUNBOOK_TYPOS = {
    "misspelt mode": ["--dryrun", "--db-url", URL],
    "misspelt option": ["--dry-run", "--db-ulr", URL],
    "bare URL": ["--execute", "--operator-confirmed", URL],
    "two modes": ["--execute", "--sweep", "--db-url", URL],
}


def assert_clean(output: str) -> None:
    assert CANARY not in output, output
    assert JWT not in output and JWT[:60] not in output, output


@pytest.mark.parametrize("typo", PYTEST_TYPOS)
def test_pytest_usage_errors_mask_the_password(pytester: pytest.Pytester, example: Callable[..., list[str]],
                                               typo: str) -> None:
    args = example(test_b="import pytest\n@pytest.mark.setB\ndef test_b(): pass\n")
    result = pytester.runpytest_subprocess(*PYTEST_TYPOS[typo], *args)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert "--db-ulr" in output or "not found: " in output, output  # the error still names what was wrong
    assert_clean(output)


@pytest.mark.parametrize("typo", CLI_TYPOS)
def test_cutover_command_usage_errors_mask_the_password(typo: str) -> None:
    done = subprocess.run([sys.executable, "-m", "cutover.cli", *CLI_TYPOS[typo]], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert_clean(done.stdout + done.stderr)


@pytest.mark.parametrize("typo", RUNBOOK_TYPOS)
def test_runbook_script_usage_errors_mask_the_password(typo: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CUTOVER_DB_URL")}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "cutover_patient_tenant.py"), *RUNBOOK_TYPOS[typo]],
                          capture_output=True, text=True, timeout=60, check=False, env=env)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert_clean(done.stdout + done.stderr)
