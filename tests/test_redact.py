"""Secrets never reach output: URL passwords, conninfo passwords, JWTs."""

from __future__ import annotations

import json
import subprocess

import pytest

from cutover.core.redact import MASK, mask_url, redact, register_secret, shell_command, split_password


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("postgresql://ops:s3cr3t-pw@db.internal:6543/prod?sslmode=require") == (
        "postgresql://ops:***@db.internal:6543/prod?sslmode=require")
    assert mask_url("postgresql://ops@db/prod") == "postgresql://ops@db/prod"


def test_redact_removes_registered_secrets_anywhere() -> None:
    register_secret("canary-7f3a9")
    assert "canary-7f3a9" not in redact("error near 'canary-7f3a9' in statement")


def test_redact_masks_urls_conninfo_and_jwts() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcHMifQ.c2lnbmF0dXJlLXZhbHVl"
    text = redact(f"url=postgresql://u:pw1234@h/db host=h password=topsecret token {jwt}")
    assert "pw1234" not in text and "topsecret" not in text and jwt not in text


def test_split_password_keeps_it_out_of_argv() -> None:
    bare, password = split_password("postgresql://u:pa%20ss@h:5/db")
    assert password == "pa ss"
    assert bare == "postgresql://u@h:5/db"


# Every shape a secret takes in a command line, a DSN or a URL: (text, the secret it carries).
SHAPES = {
    "env assignment": ("DB_PASSWORD=canary-env-1 python cutover.py --execute", "canary-env-1"),
    "PGPASSWORD": ("PGPASSWORD=canary-pg-2 psql -h db", "canary-pg-2"),
    "bot token variable": ("CUTOVER_TELEGRAM_BOT_TOKEN=canary-bot-3 ./run", "canary-bot-3"),
    "a *_SECRET": ("export APP_CLIENT_SECRET='canary s3cr3t 4'; ./run", "canary s3cr3t 4"),
    "a *_SECRET_KEY": ("CUTOVER_LANGFUSE_SECRET_KEY=sk-lf-canary-18 ./run", "sk-lf-canary-18"),
    "quoted env assignment": ('DB_PASSWORD="canary dq 5" ./run', "canary dq 5"),
    "--password x": ("tool --password canary-flag-6 --execute", "canary-flag-6"),
    "--password=x": ("tool --password=canary-flag-7 --execute", "canary-flag-7"),
    "--db-password x": ("tool --db-password canary-flag-8", "canary-flag-8"),
    "DSN password": ("host=db port=5432 password=canary-dsn-9 dbname=prod", "canary-dsn-9"),
    "DSN quoted password": (r"host=db password='canary \' q 10' dbname=prod", r"canary \' q 10"),
    "DSN spaced =": ("host=db password = canary-dsn-11 dbname=prod", "canary-dsn-11"),
    "URL ?password=": ("postgresql://ops@db/prod?password=canary-q-12&sslmode=require", "canary-q-12"),
    "URL &password=": ("postgresql://ops@db/prod?sslmode=require&password=canary-q-13", "canary-q-13"),
    "URL userinfo": ("postgresql://ops:canary-url-14@db:5432/prod", "canary-url-14"),
    "URL userinfo with @": ("postgresql://ops:canary@url-15@db/prod", "canary@url-15"),
    "Telegram bot token": ("https://api.telegram.org/bot123456789:AAHcanary-tg-16-abcdefghijklmnopqrstu/sendMessage",
                           "123456789:AAHcanary-tg-16-abcdefghijklmnopqrstu"),
    "JWT": ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOjE3fQ.c2lnbmF0dXJlLTE3",
            "eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOjE3fQ.c2lnbmF0dXJlLTE3"),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_of_secret_is_masked(shape: str) -> None:
    text, secret = SHAPES[shape]
    masked = redact(text)
    assert secret not in masked, masked
    assert MASK in masked, masked
    for part in secret.split():
        if len(part) >= 6:
            assert part not in masked, masked  # no half of a quoted secret either


def test_masking_keeps_what_an_operator_needs_to_read() -> None:
    assert redact("DB_PASSWORD=x1234567 python cutover.py --execute --report-path R.json") == (
        "DB_PASSWORD=*** python cutover.py --execute --report-path R.json")
    assert redact("postgresql://ops@db/prod?password=pw-123456&sslmode=require") == (
        "postgresql://ops@db/prod?password=***&sslmode=require")
    assert redact("tool --password pw-123456 --execute") == "tool --password *** --execute"
    # ordinary words that only look alike stay as they are
    for plain in ("idempotency_key=abc-123 case=c-1", "CUTOVER_LANGFUSE_PUBLIC_KEY=pk-lf-1", "token budget reached",
                  "--report-path R.json", "tenant_id=tenant-apollo-001 rows=45837"):
        assert redact(plain) == plain


def test_a_secret_is_masked_before_the_text_is_cut() -> None:
    text = "x" * 190 + " DB_PASSWORD=canary-cut-0123456789"
    clipped = redact(text, limit=200)
    assert len(clipped) <= 200 and "canary-cut" not in clipped and "canary" not in clipped
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOjE3fQ.c2lnbmF0dXJlLTE3"
    cut = redact("y" * 180 + " " + jwt, limit=200)
    assert jwt[:15] not in cut, cut  # cut first, a half JWT would no longer look like one


@pytest.mark.parametrize("conninfo, password, rest", [
    ("postgresql://u:pa%20ss@h:5/db", "pa ss", ["h", "db"]),
    ("postgresql://u@h:5/db?password=q-pass-1&sslmode=disable", "q-pass-1", ["sslmode=disable"]),
    ("postgresql://u:pw-xyz@h1:5432,h2:5433/db", "pw-xyz", ["h1", "h2"]),
    ("host=h port=5 user=u password='dsn pass' dbname=db", "dsn pass", ["dbname=db"]),
    ("host=h port=5 user=u password=dsn-pass-2 dbname=db", "dsn-pass-2", ["dbname=db"]),
])
def test_split_password_takes_the_password_out_of_every_connection_string(conninfo: str, password: str,
                                                                          rest: list[str]) -> None:
    bare, found = split_password(conninfo)
    assert found == password
    assert password not in bare and "password" not in bare, bare
    assert all(part in bare for part in rest), bare


def test_split_password_leaves_a_password_free_string_alone() -> None:
    assert split_password("postgresql://u@h:5/db") == ("postgresql://u@h:5/db", None)
    assert split_password("host=h dbname=db") == ("host=h dbname=db", None)


def test_a_shell_command_runs_without_its_text_in_argv() -> None:
    argv, env = shell_command("DB_PASSWORD=canary-sh-1 ./run", {"PATH": "/bin"})
    assert not any("canary-sh-1" in a for a in argv), argv
    assert env["PATH"] == "/bin" and any("canary-sh-1" in v for v in env.values())

    # it runs as shell=True would (exit status, quoting), and the command's children do not inherit its text
    command = "X='a b'; echo \"$X ${CUTOVER_SHELL_COMMAND:-gone}\"; env | grep -c CUTOVER_SHELL; exit 3"
    argv, env = shell_command(command, {"PATH": "/usr/bin:/bin"})
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (3, "a b gone\n0\n"), done


def test_masking_json_text_keeps_it_json() -> None:
    """Attachments and artifacts are JSON text: a masked value must not take a string's escape with it."""
    for value in ('--cutover-cmd=DB_PASSWORD=pw-json-1" ./run', 'echo "host=db password=pw-json-2"',
                  "postgresql://ops@db/prod?password=pw-json-3\n", 'x --password pw-json-4\\',
                  'DB_PASSWORD="pw json 5" ./run'):
        text = json.dumps({"command": value})
        masked = redact(text)
        assert "pw-json" not in masked, masked
        assert json.loads(masked)["command"], masked
