"""No secret on any screen, file or process list: every entry point, with canary passwords and a JWT.

An operator in the window pastes the production URL; one mistyped option must not put its password
on the screen, in the terminal's scrollback or in a CI log. A password in ``--cutover-cmd``
(``DB_PASSWORD=...``) must reach neither the terminal, the operator log, evidence.json nor the Allure
results, and no child process (psql, pg_restore, the shell running the command) may carry one in its
argv, which every user of the machine can read in ``ps``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cutover.core import db
from cutover.core.plan import Plan
from cutover.core.redact import register_secret
from cutover.sandbox import snapshot
from cutover.sandbox.server import SessionSandbox
from cutover.suite import secret_sweep
from tests.support import REHEARSAL, machine_python, rehearse_on

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


# A connection string an operator may paste, in each form libpq reads, all pointing at a closed port.
UNREACHABLE = {
    "URL": f"postgresql://postgres:{CANARY}@127.0.0.1:1/prod",
    "URL ?password=": f"postgresql://postgres@127.0.0.1:1/prod?password={CANARY}",
    "key=value DSN": f"host=127.0.0.1 port=1 user=postgres password={CANARY} dbname=prod",
    "key=value DSN, quoted": f"host=127.0.0.1 port=1 user=postgres password='{CANARY} x' dbname=prod",
    "URL, port not a number": f"postgresql://postgres:{CANARY}@127.0.0.1:notaport/prod",
    "DSN libpq cannot read": f"host=127.0.0.1 port=1 password='{CANARY} dbname=prod",
}


@pytest.mark.parametrize("form", ["URL, port not a number", "DSN libpq cannot read", "key=value DSN, quoted"])
def test_pytest_with_an_unusable_db_url_masks_the_password(pytester: pytest.Pytester,
                                                           example: Callable[..., list[str]], form: str) -> None:
    args = example(test_b="import pytest\n@pytest.mark.setB\ndef test_b(): pass\n")
    result = pytester.runpytest_subprocess("-m", "setB", f"--db-url={UNREACHABLE[form]}", *args)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret != pytest.ExitCode.INTERNAL_ERROR, output
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    assert_clean(output)


@pytest.mark.parametrize("form", UNREACHABLE)
def test_a_connection_error_masks_the_password_in_every_form(form: str) -> None:
    done = subprocess.run([sys.executable, "-m", "cutover.cli", "dry-run", "--db-url", UNREACHABLE[form]],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert_clean(done.stdout + done.stderr)


def _recording_shim(directory: Path, tool: str, log: Path) -> None:
    """``tool`` on PATH that appends its own /proc/PID/cmdline (what ps shows) to ``log``, then runs the real one."""
    real = shutil.which(tool)
    assert real is not None, f"{tool} is not on PATH"
    shim = directory / tool
    shim.write_text(f"#!/bin/sh\ntr '\\000' ' ' < /proc/$$/cmdline >> {log}\necho >> {log}\n"
                    f'[ -n "$PGPASSWORD" ] && echo "PGPASSWORD set" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)


@pytest.mark.parametrize("form", ["URL", "URL ?password=", "key=value DSN"])
def test_psql_gets_the_password_from_the_environment_never_from_argv(
        form: str, empty_db: str, cutover_sandbox: SessionSandbox, cutover_plan: Plan, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    parts = urlsplit(empty_db)
    password, database = parts.password or "", parts.path.lstrip("/")
    assert password, "the sandbox's URL has no password to leak"
    url = {"URL": empty_db,
           "URL ?password=": f"postgresql://{parts.username}@{parts.hostname}:{parts.port}/{database}"
                             f"?password={password}",
           "key=value DSN": f"host={parts.hostname} port={parts.port} user={parts.username} "
                            f"password='{password}' dbname={database}"}[form]
    shims, log = tmp_path / "bin", tmp_path / "argv.log"
    shims.mkdir()
    _recording_shim(shims, "psql", log)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    snapshot.restore(cutover_sandbox.snapshot_file(), url, cutover_plan)  # a plain snapshot: psql restores it
    recorded = log.read_text()
    assert "psql" in recorded and "PGPASSWORD set" in recorded, recorded  # the shim saw the real call
    assert password not in recorded, recorded
    with db.connection(empty_db) as conn:  # and the password in the environment was the one that worked
        assert db.one(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0] > 0


def test_a_password_in_the_cutover_command_reaches_no_output_file_or_argv(
        pytester: pytest.Pytester, example: Callable[..., list[str]], fresh_db: str) -> None:
    """The operator's --cutover-cmd sets DB_PASSWORD and prints secrets in three more shapes; none of
    them may reach the terminal, the operator log, evidence.json, the Allure results, the cutover
    report, or the argv of the shell that runs the command."""
    canaries = [f"canary-{shape}-{uuid.uuid4().hex[:10]}" for shape in ("env", "flag", "dsn", "query")]
    argv_file = pytester.path / "shell-argv.txt"
    cmd = (f"DB_PASSWORD={canaries[0]} {machine_python()} {ROOT}/scripts/cutover_patient_tenant.py --execute "
           f'--operator-confirmed --report-path "$CUTOVER_REPORT_PATH" && '
           f"tr '\\000' ' ' < /proc/$$/cmdline > {argv_file} && "
           f'echo "retried with --password {canaries[1]} and host=db password={canaries[2]} '
           f'and postgresql://ops@db/prod?password={canaries[3]}"')
    args = example(**REHEARSAL)
    result = pytester.runpytest_subprocess("-m", "setA and sql", *rehearse_on(fresh_db), f"--cutover-cmd={cmd}",
                                           *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 0, out  # ran through: the runbook's step 5a, the 12 SQL checks
    assert "cutover-cmd: retried with --password ***" in out, out  # the command's output is shown, masked
    shell_argv = argv_file.read_text()
    assert "/bin/sh" in shell_argv, shell_argv
    latest = (pytester.path / "artifacts" / "latest").resolve()
    evidence = (latest / "evidence.json").read_text()
    assert "DB_PASSWORD=***" in evidence, evidence  # recorded, masked, so the go/no-go can compare it
    report = Path(json.loads((latest / "operator-log.json").read_text())["rehearsal"]["report_path"])
    files = [p for p in latest.rglob("*") if p.is_file()] + [report]
    assert any(p.name == "operator-log.md" for p in files) and any(p.parent.name == "allure-results" for p in files)
    for canary in canaries:
        assert canary not in out, canary
        assert canary not in shell_argv, shell_argv
        for path in files:
            assert canary.encode() not in path.read_bytes(), (canary, path)


def test_the_artifacts_sweep_masks_json_by_its_strings_and_leaves_it_json(tmp_path: Path) -> None:
    """JSON text escapes what it holds: a registered password with a quote or a non-ASCII letter is
    not in the file as itself, only in its strings."""
    escaped = f'Pä"ss-{uuid.uuid4().hex[:8]}'
    register_secret(escaped)
    command = f'DB_PASSWORD={CANARY} ./cutover --report-path "R.json"; echo "host=db password={CANARY}"'
    (tmp_path / "allure-result.json").write_text(json.dumps({"message": f"login as ops with {escaped} refused"}))
    (tmp_path / "operator-log.json").write_text(json.dumps({"command": command, "rows": 3}, indent=2))
    (tmp_path / "journal.jsonl").write_text(json.dumps({"observation": command}) + "\n" + json.dumps({"n": 1}) + "\n")
    (tmp_path / "operator-log.md").write_text(f"- command: `{command}`\n")
    assert escaped not in (tmp_path / "allure-result.json").read_text()  # not in the text as itself: escaped
    assert secret_sweep.sweep_secrets(tmp_path) == 4
    assert json.loads((tmp_path / "allure-result.json").read_text()) == {"message": "login as ops with *** refused"}
    log = json.loads((tmp_path / "operator-log.json").read_text())
    assert log == {"command": 'DB_PASSWORD=*** ./cutover --report-path "R.json"; echo "host=db password=***"',
                   "rows": 3}
    lines = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert lines == [{"observation": log["command"]}, {"n": 1}]
    assert CANARY not in (tmp_path / "operator-log.md").read_text()
    assert secret_sweep.sweep_secrets(tmp_path) == 0  # nothing left to mask: no file is rewritten again
