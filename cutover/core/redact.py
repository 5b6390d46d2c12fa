"""Keeping secrets out of output and out of other processes' sight.

Database URLs carry passwords, cutover commands carry ``DB_PASSWORD=…``, assist configs carry JWTs,
alert configs a bot token. Anything the suite prints, logs, attaches or writes goes through
:func:`redact` (one masking for every output, so no entry point can know fewer shapes than another),
and every URL shown to a person through :func:`mask_url`, so a pasted operator log never leaks a
credential. Truncation happens inside :func:`redact` (``limit``), after masking: a secret cut in half
no longer looks like a secret and would escape the mask.

Child processes show their argv to every user of the machine (``ps``, ``/proc/PID/cmdline``):
:func:`split_password` moves a connection string's password into ``PGPASSWORD`` and
:func:`shell_command` keeps a shell command's text out of the shell's argv.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from urllib.parse import SplitResult, quote, unquote, urlsplit

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cutover.core.errors import SetupError

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

# A value as a shell or libpq writes it: single-quoted (libpq's backslash escapes), double-quoted
# (a shell's), else (a quote never closed included) up to white space, '&' (the next URL parameter),
# ';' (the next shell command), a quote, or a backslash that starts a JSON escape (masking JSON text
# must leave it JSON: a value double-quoted inside a JSON string, \"...\", is one value).
_VALUE = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\\"(?:[^"\\]|\\[^"])*\\"|['"]?(?:[^\s&;'"\\]|\\(?![\\"/bfnrtu]))+)"""
# Environment-style assignments: DB_PASSWORD=, PGPASSWORD=, CUTOVER_TELEGRAM_BOT_TOKEN=, APP_SECRET=,
# CUTOVER_LANGFUSE_SECRET_KEY= (a *_KEY is a secret only as a secret, API, private or access key).
_ENV_ASSIGNMENT = re.compile(r"(?i)\b([a-z0-9_]*(?:password|passwd)|[a-z0-9_]+_(?:token|secret)"
                             r"|[a-z0-9_]*(?:secret|api|private|access)_key)(\s*=\s*)" + _VALUE)
# Long options that take a secret: --password x, --password=x, --db-password x, --bot-token=x.
_FLAG = re.compile(r"(?i)(--[a-z0-9-]*(?:password|passwd|token|secret))(=|\s+)" + _VALUE)
# key=value conninfo strings (libpq allows spaces around '=') and URL query parameters.
_KV_PASSWORD = re.compile(r"(?i)\b(password|passwd|pwd)(\s*=\s*)" + _VALUE)
# user:password@ in a URL; the password runs to the last '@' before the host (an unencoded '@' in it).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*):([^\s/]*)@")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\b")
# A Telegram bot token (digits:35 characters), also inside https://api.telegram.org/bot<token>/.
_BOT_TOKEN = re.compile(r"(?<!\d)\d{6,12}:[A-Za-z0-9_-]{30,}")


def register_secret(value: str | None) -> None:
    """Remember a secret so that later :func:`redact` calls remove it wherever it appears."""
    if value is not None and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str, limit: int | None = None) -> str:
    """``text`` with every registered secret and every secret-shaped value masked, then cut to
    ``limit`` characters (masking first: a half secret is no longer recognisable as one)."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(rf"\1:{MASK}@", text)
    text = _JWT.sub(MASK, text)
    text = _BOT_TOKEN.sub(MASK, text)
    for pattern in (_ENV_ASSIGNMENT, _FLAG, _KV_PASSWORD):
        text = pattern.sub(rf"\1\2{MASK}", text)
    return text if limit is None else text[:limit]


def _register_password(password: str) -> None:
    register_secret(password)
    register_secret(quote(password, safe=""))


def split_password(conninfo: str) -> tuple[str, str | None]:
    """The connection string without its password, and the password, for passing it via PGPASSWORD.

    Child processes see their argv in ``ps``; the password goes in the environment instead. Both
    forms libpq reads are handled: a URL (``user:pw@`` and ``?password=``) and key=value (quoted
    values too), parsed by libpq itself so the password found is the one it would send. A string
    libpq cannot parse is refused here rather than handed, password and all, to a child.
    """
    try:
        params = conninfo_to_dict(conninfo)
    except ProgrammingError:
        raise SetupError(f"the connection string {mask_url(conninfo)} is not one libpq can read; fix --db-url "
                         "(postgresql://user@host:port/dbname, password in PGPASSWORD)") from None
    password = params.pop("password", None)
    if password is None:
        return conninfo, None
    _register_password(str(password))
    if re.match(r"(?i)postgres(?:ql)?://", conninfo):
        return _url_without_password(conninfo), str(password)
    return make_conninfo("", **params), str(password)


def _url_without_password(url: str) -> str:
    """``user:pw@`` becomes ``user@`` (libpq splits at the first '@'), ``password=`` leaves the query."""
    scheme, rest = url.split("://", 1)
    authority, tail = re.match(r"([^/?]*)(.*)", rest, re.S).groups()  # type: ignore[union-attr]
    if "@" in authority:
        userinfo, hosts = authority.split("@", 1)
        user = userinfo.split(":", 1)[0]
        authority = f"{user}@{hosts}" if user else hosts
    path, _, query = tail.partition("?")
    kept = [p for p in query.split("&") if p and unquote(p.split("=", 1)[0]).lower() != "password"]
    return f"{scheme}://{authority}{path}" + (f"?{'&'.join(kept)}" if kept else "")


def shell_command(command: str, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """argv and environment that run ``command`` in ``sh`` as ``shell=True`` would, with the text in
    the environment (readable by its owner only) instead of the shell's argv (readable by everyone):
    an operator's ``DB_PASSWORD=… ./cutover`` must not show up in ``ps``. The shell takes the text
    out of its environment before running it, so the command's own children do not inherit it."""
    script = '__cutover_cmd=$CUTOVER_SHELL_COMMAND; unset CUTOVER_SHELL_COMMAND; eval "$__cutover_cmd"'
    return ["/bin/sh", "-c", script], {**env, "CUTOVER_SHELL_COMMAND": command}


def _with_netloc(parts: SplitResult, password: str) -> SplitResult:
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
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
        return redact(_with_netloc(parts, MASK).geturl())
    except ValueError:
        return redact(url)
