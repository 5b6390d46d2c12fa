"""What a snapshot needs from the server it is restored on, besides its schema: extensions and roles.

A production database often creates extensions the sandbox lacks (pgvector's ``vector``) and has RLS
policies for roles pg_dump never carries (``TO analytics_ro``; Supabase's ``anon``/``authenticated``).
Either ends the restore with a raw psql error half-way through a GB file. Both are read here from the
file first, so the operator gets one line before anything is written: which extension is missing and
where it can be had, or which roles the sandbox creates (as NOLOGIN) or a ``--db-url`` target lacks.

The plain SQL is read as a stream: rows inside ``COPY ... FROM stdin`` blocks are skipped unparsed (a
row may read like a GRANT, and they are most of a snapshot's bytes); the rest is split into statements
the way psql does (quotes, quoted identifiers, dollar-quoted bodies, comments, ``\\`` meta-commands),
so a function body or a string that reads like ``CREATE EXTENSION`` does not count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import psycopg
from psycopg import sql

from cutover.core import db
from cutover.core.db import Connection


@dataclass(frozen=True)
class DumpNeeds:
    """Names as PostgreSQL spells them (quoted identifiers unescaped, bare ones lower-cased), sorted."""

    extensions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()  # of ``roles``, those the restoring login must become (OWNER TO and the like)


# -- splitting the SQL stream into statements -------------------------------------------------------------

# One piece of a statement: ordinary text (a $ inside an identifier such as a$b is ordinary), a complete
# quoted literal or identifier, a dollar-quote opener, a comment, the terminating semicolon, or a lone - or $.
_PIECE = re.compile(rb"""
    (?P<text>(?:[^'";$\-]|(?<=[A-Za-z0-9_\x80-\xff])\$)+)
  | (?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<dollar>\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$)
  | (?P<comment>--[^\n]*\n)
  | (?P<end>;)
  | (?P<single>-(?!-)|\$)
""", re.X)
_DATA_END = b"\n\\.\n"


class _Splitter:
    """Statements out of a byte stream fed in arbitrary chunks; COPY rows are skipped, never returned."""

    def __init__(self) -> None:
        self.buf = b""
        self.in_data = False
        self.copies = 0  # COPY ... FROM stdin blocks entered so far

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        buf = self.buf + chunk
        pos = 0
        while True:
            if self.in_data:
                end = buf.find(_DATA_END, pos)
                if end < 0:
                    pos = max(pos, len(buf) - len(_DATA_END) + 1)
                    break
                pos, self.in_data = end + len(_DATA_END), False
                continue
            start = _skip_space(buf, pos)
            if start >= len(buf):
                pos = start
                break
            if buf.startswith(b"--", start) or buf.startswith(b"\\", start):  # a comment or psql meta-command line
                newline = buf.find(b"\n", start)
                if newline < 0:
                    pos = start
                    break
                pos = newline + 1
                continue
            found = _statement_end(buf, start)
            if found is None:
                pos = start
                break
            statement = buf[start:found]
            pos = found
            if _is_copy_from_stdin(statement):  # its rows follow from the newline after the semicolon
                self.in_data, self.copies = True, self.copies + 1
            yield statement
        self.buf = buf[pos:]


def _skip_space(buf: bytes, pos: int) -> int:
    while pos < len(buf) and buf[pos] in b" \t\r\n":
        pos += 1
    return pos


def _statement_end(buf: bytes, start: int) -> int | None:
    """The index just past the statement's terminating semicolon, or None when it is not all in ``buf``
    yet (the caller lexes it again from its start once more has come: a cut piece never persists)."""
    pos = start
    while pos < len(buf):
        piece = _PIECE.match(buf, pos)
        if piece is None:  # an unterminated quote or comment
            return None
        if piece.lastgroup == "end":
            return piece.end()
        if piece.lastgroup == "dollar":
            closer = buf.find(piece.group(), piece.end())
            if closer < 0:
                return None
            pos = closer + len(piece.group())
            continue
        pos = piece.end()
    return None


_COPY_FROM_STDIN = re.compile(rb"^COPY\s.*\sFROM\s+stdin\s*;\Z", re.S | re.I)


def _is_copy_from_stdin(statement: bytes) -> bool:
    return _COPY_FROM_STDIN.match(statement) is not None


# -- reading roles and extensions from one statement ---------------------------------------------------

_TOKEN = re.compile(r"""
    "(?:[^"]|"")*"                     # a quoted identifier
  | '(?:[^']|'')*'                     # a string
  | \$(?P<tag>[^$\s]*)\$.*?\$(?P=tag)\$  # a dollar-quoted body
  | [A-Za-z_\x80-\uffff][\w$\x80-\uffff]*  # a bare word
  | \S
""", re.X | re.S)
# Role specifications that are no role to create: PUBLIC is everyone (quoted "public" too, as in the
# grammar), the others stand for whoever runs the statement.
_NOT_ROLES = {"public", "current_user", "session_user", "current_role"}


@dataclass(frozen=True)
class _Token:
    text: str
    depth: int  # parentheses around it: a role list is never inside them

    def word(self) -> str | None:
        """A bare word, upper-cased (keywords); None for quoted identifiers, strings and punctuation."""
        return self.text.upper() if self.text[0].isalpha() or self.text[0] == "_" else None


def _tokens(statement: str) -> list[_Token]:
    found: list[_Token] = []
    depth = 0
    for match in _TOKEN.finditer(statement):
        text = match.group()
        if text == ")":
            depth -= 1
        found.append(_Token(text, depth))
        if text == "(":
            depth += 1
    return found


def _name(token: _Token) -> str | None:
    """The identifier a token spells, as the server stores it; None for anything else."""
    if token.text.startswith('"'):
        return token.text[1:-1].replace('""', '"')
    if token.text.startswith("'"):  # SET SESSION AUTHORIZATION 'name'
        return token.text[1:-1].replace("''", "'")
    return token.text.lower() if token.word() is not None else None


def _role_list(tokens: list[_Token], start: int) -> list[str]:
    """``role [, role ...]`` from ``start``; PUBLIC, CURRENT_USER and the like are left out."""
    roles: list[str] = []
    at = start
    while at < len(tokens):
        token = tokens[at]
        name = _name(token)
        if name is None:
            break
        if name != "public" and (token.word() is None or name not in _NOT_ROLES):
            roles.append(name)
        if at + 1 < len(tokens) and tokens[at + 1].text == "," and tokens[at + 1].depth == 0:
            at += 2
            continue
        break
    return roles


def _after(tokens: list[_Token], *words: str) -> list[int]:
    """Indexes just past each top-level occurrence of the bare ``words`` in sequence."""
    hits = []
    for at in range(len(tokens) - len(words) + 1):
        if all(tokens[at + i].depth == 0 and tokens[at + i].word() == w for i, w in enumerate(words)):
            hits.append(at + len(words))
    return hits


def _statement_roles(tokens: list[_Token]) -> list[str]:
    """The roles a statement names where the server must know them for the statement to succeed."""
    head = [t.word() for t in tokens[:4]]
    starts: list[int] = []
    if head[:2] == ["CREATE", "POLICY"] or head[:1] == ["GRANT"]:
        starts += _after(tokens, "TO")[:1]
    elif head[:1] == ["REVOKE"]:
        starts += _after(tokens, "FROM")[:1]
    elif head[:3] == ["ALTER", "DEFAULT", "PRIVILEGES"]:
        starts += _after(tokens, "FOR", "ROLE") + _after(tokens, "FOR", "USER")
        grant = [i for i, t in enumerate(tokens) if t.depth == 0 and t.word() in ("GRANT", "REVOKE")]
        if grant:
            inner = tokens[grant[0]:]
            keyword = "TO" if inner[0].word() == "GRANT" else "FROM"
            starts += [grant[0] + i for i in _after(inner, keyword)[:1]]
    elif head[:1] == ["ALTER"]:
        starts += _after(tokens, "OWNER", "TO")
    elif head[:3] == ["SET", "SESSION", "AUTHORIZATION"] and len(tokens) > 3 and tokens[3].word() != "DEFAULT":
        starts.append(3)
    if head[:1] in (["GRANT"], ["REVOKE"]) or head[:3] == ["ALTER", "DEFAULT", "PRIVILEGES"]:
        starts += _after(tokens, "GRANTED", "BY")
    return [role for start in starts for role in _role_list(tokens, start)]


def _statement_owners(tokens: list[_Token]) -> list[str]:
    """The roles a statement makes the restoring login act as: only a superuser or a member may."""
    head = [t.word() for t in tokens[:4]]
    starts: list[int] = []
    if head[:3] == ["ALTER", "DEFAULT", "PRIVILEGES"]:
        starts += _after(tokens, "FOR", "ROLE") + _after(tokens, "FOR", "USER")
    elif head[:1] == ["ALTER"]:
        starts += _after(tokens, "OWNER", "TO")
    elif head[:3] == ["SET", "SESSION", "AUTHORIZATION"] and len(tokens) > 3 and tokens[3].word() != "DEFAULT":
        starts.append(3)
    return [role for start in starts for role in _role_list(tokens, start)]


def _statement_extension(tokens: list[_Token]) -> str | None:
    if [t.word() for t in tokens[:2]] != ["CREATE", "EXTENSION"]:
        return None
    at = 5 if [t.word() for t in tokens[2:5]] == ["IF", "NOT", "EXISTS"] else 2
    return _name(tokens[at]) if at < len(tokens) else None


_INTERESTING = re.compile(rb"^(?:CREATE\s+(?:POLICY|EXTENSION)|GRANT|REVOKE|ALTER|SET\s+SESSION)\s", re.I)


def scan_sql(chunks: Iterable[bytes], stop_at_data: bool = False) -> DumpNeeds:
    """The extensions and roles in a plain SQL dump, read chunk by chunk.

    ``stop_at_data`` stops at the first ``COPY`` rows: pg_dump creates every extension before any data,
    so the extensions of a GB snapshot are known after its first kilobytes (the roles are not: policies
    and grants come after the data)."""
    splitter = _Splitter()
    extensions: set[str] = set()
    roles: set[str] = set()
    owners: set[str] = set()
    for chunk in chunks:
        for statement in splitter.feed(chunk):
            if not _INTERESTING.match(statement):
                continue
            tokens = _tokens(statement.decode("utf-8", errors="replace"))
            extension = _statement_extension(tokens)
            if extension is not None:
                extensions.add(extension)
            roles.update(_statement_roles(tokens))
            owners.update(_statement_owners(tokens))
        if stop_at_data and splitter.copies:
            break
    return DumpNeeds(extensions=tuple(sorted(extensions)), roles=tuple(sorted(roles)), owners=tuple(sorted(owners)))


_TOC_EXTENSION = re.compile(r"^\d+; \d+ \d+ EXTENSION - (\S+)", re.M)


def extensions_in_toc(listing: str) -> tuple[str, ...]:
    """The extensions of a custom archive, from its table of contents (``pg_restore -l``)."""
    return tuple(sorted(set(_TOC_EXTENSION.findall(listing))))


# -- the server's side ------------------------------------------------------------------------------------


def missing_extensions(conn_or_url: Connection | str, required: Iterable[str]) -> list[str]:
    """Those of ``required`` the server cannot create: not in its ``pg_available_extensions``."""
    names = sorted(set(required))
    if not names:
        return []
    opened = (db.connection(conn_or_url, read_only=True, purpose="the server the snapshot is restored on")
              if isinstance(conn_or_url, str) else nullcontext(conn_or_url))
    with opened as conn:
        rows = conn.execute("SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", (names,)).fetchall()
    have = {str(row[0]) for row in rows}
    return [name for name in names if name not in have]


# Where the extensions production databases commonly use can be had, for a server of major N: an image
# for the docker sandbox (official-image compatible), a Debian/Ubuntu (PGDG) package for the local one.
_WHERE = {
    "vector": ("pgvector/pgvector:pg{n}", "postgresql-{n}-pgvector"),
    "postgis": ("postgis/postgis:{n}-<postgis version>", "postgresql-{n}-postgis-3"),
    "postgis_topology": ("postgis/postgis:{n}-<postgis version>", "postgresql-{n}-postgis-3"),
    "postgis_raster": ("postgis/postgis:{n}-<postgis version>", "postgresql-{n}-postgis-3"),
    "timescaledb": ("timescale/timescaledb:latest-pg{n}", "timescaledb-2-postgresql-{n}"),
    "pg_cron": (None, "postgresql-{n}-cron"),
    "pgaudit": (None, "postgresql-{n}-pgaudit"),
    "pg_partman": (None, "postgresql-{n}-partman"),
    "hypopg": (None, "postgresql-{n}-hypopg"),
    "pg_repack": (None, "postgresql-{n}-repack"),
    "h3": (None, "postgresql-{n}-h3"),
}


def where_to_get(extension: str, major: int) -> str:
    """``extension`` and where it can be had for PostgreSQL ``major``, in a few words."""
    image, package = _WHERE.get(extension, (None, None))
    via_image = (f"--sandbox=docker --docker-image={image.format(n=major)}" if image
                 else f"--sandbox=docker with a PostgreSQL {major} image that has it (--docker-image)")
    via_package = (f"apt-get install {package.format(n=major)}" if package
                   else f"its package (apt-cache search postgresql-{major} {extension})")
    return f"{extension} ({via_image}, or {via_package})"


def server_major(conn: Connection) -> int:
    row = db.one(conn, "SELECT current_setting('server_version_num')::int / 10000")
    return int(row[0])


# -- roles ------------------------------------------------------------------------------------------------


def superuser_extensions(conn: Connection, extensions: Iterable[str]) -> list[str]:
    """Of ``extensions``, those only a superuser may create (not marked trusted)."""
    rows = conn.execute("SELECT DISTINCT name FROM pg_available_extension_versions WHERE name = ANY(%s) "
                        "AND superuser AND NOT trusted ORDER BY name", (list(extensions),)).fetchall()
    return [str(r[0]) for r in rows]


def missing_roles(conn: Connection, roles: Iterable[str]) -> list[str]:
    """Those of ``roles`` the server does not have (names compared as the text they are)."""
    names = sorted(set(roles))
    if not names:
        return []
    rows = conn.execute("SELECT rolname::text FROM pg_roles WHERE rolname::text = ANY(%s)", (names,)).fetchall()
    have = {str(row[0]) for row in rows}
    return [name for name in names if name not in have]


def create_nologin_roles(conn: Connection, roles: Iterable[str]) -> None:
    """Create ``roles`` as NOLOGIN roles: enough for policies, owners and grants that name them, and no
    way in. A role another process created meanwhile is fine (``CREATE ROLE`` has no IF NOT EXISTS)."""
    for role in roles:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        except psycopg.errors.DuplicateObject:
            pass


def reserved(role: str) -> bool:
    """Names no CREATE ROLE accepts: PostgreSQL's predefined ``pg_`` roles (a newer server's, when this
    one lacks them) and ``none``."""
    return role.startswith("pg_") or role == "none"
