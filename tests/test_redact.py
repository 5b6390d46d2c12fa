"""Secrets never reach output: URL passwords, conninfo passwords, JWTs."""

from __future__ import annotations

from cutover.core.redact import mask_url, redact, register_secret, split_password


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
