"""Keeping secrets out of output.

Database URLs carry passwords and assist configs carry JWTs. Anything the suite prints, logs or
attaches goes through :func:`redact`, and every URL shown to a person goes through :func:`mask_url`,
so a pasted operator log never leaks a credential.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

# key=value conninfo strings and query parameters may carry a password too.
_KV_PASSWORD = re.compile(r"(?i)\b(password|passwd|pwd)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+)")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*):([^@\s/]*)@")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\b")


def register_secret(value: str | None) -> None:
    """Remember a secret so that later :func:`redact` calls remove it wherever it appears."""
    if value is not None and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Remove every registered secret, URL password, key=value password and JWT from ``text``."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(rf"\1:{MASK}@", text)
    text = _KV_PASSWORD.sub(rf"\1={MASK}", text)
    return _JWT.sub(MASK, text)


def split_password(url: str) -> tuple[str, str | None]:
    """Return the URL without its password, and the password, for passing it via PGPASSWORD.

    Child processes see their argv in ``ps``; the password goes in the environment instead.
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    password = unquote(parts.password)
    register_secret(parts.password)
    register_secret(password)
    return urlunsplit(_with_netloc(parts, MASK_FREE)), password


MASK_FREE = object()


def _with_netloc(parts: SplitResult, password: object) -> SplitResult:
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    if password is MASK_FREE:
        userinfo = f"{user}@" if user else ""
    else:
        userinfo = f"{user}:{password}@" if user else f":{password}@"
    return parts._replace(netloc=f"{userinfo}{host}{port}")


def mask_url(url: str) -> str:
    """The URL as it may be shown: password replaced by ``***``, everything else kept."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return redact(url)
        register_secret(parts.password)
        register_secret(unquote(parts.password))
        return redact(urlunsplit(_with_netloc(parts, MASK)))
    except ValueError:
        return redact(url)
