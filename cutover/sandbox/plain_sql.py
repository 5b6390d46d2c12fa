"""A plain-SQL snapshot is data, never code: the guard against psql meta-commands in a dump.

psql runs the backslash commands it finds in its input: ``\\!`` runs a shell command as whoever runs
psql, ``\\o |cmd`` pipes into one, ``\\copy ... program`` runs one, ``\\c`` connects elsewhere. pg_dump's
plain output holds none of them except its own ``\\restrict KEY`` / ``\\unrestrict KEY`` pair (pg_dump
13.22, 14.19, 15.14, 16.10, 17.6 and 18 write it) and COPY data, where a backslash is data (``\\N``).
A snapshot comes from outside (a bucket, a colleague, a download), so one edited line would otherwise
run a command on the machine that restores it.

:class:`MetaCommandGuard` reads the SQL as psql's lexer does (quotes, ``E''`` strings, dollar quotes,
nested comments, parentheses, ``BEGIN``/``CASE``/``END`` in function bodies, ``COPY ... FROM stdin`` data
up to ``\\.``) and refuses any other backslash command in one line that names its line number. It runs
over the whole file while the snapshot is validated, before anything is restored, and again over the
stream fed to psql, so a file swapped in between is stopped before the line reaches psql. What it
passes on leaves the dump's own ``\\restrict`` pair out: the restore puts its own key in front
(:func:`restricted_preamble`), so psql itself refuses any meta-command should its lexing and ours ever
disagree (the SQL can switch ``standard_conforming_strings``, which changes how psql reads quotes).
"""

from __future__ import annotations

import re
import secrets

from cutover.core.errors import SetupError

_IDENT_START = rb"A-Za-z\x80-\xff_"
_TOKEN = re.compile(rb"[0-9]+(?:\.[0-9]*)?(?:[Ee][+-]?[0-9]+)?|[" + _IDENT_START + rb"][" + _IDENT_START
                    + rb"0-9$]*")
_IDENT_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789$"
                         + bytes(range(0x80, 0x100)))
_NORMAL_STOP = re.compile(rb"--|/\*|['\"$\\;()]")
_DOLLAR_TAG = re.compile(rb"\$(?:[" + _IDENT_START + rb"][" + _IDENT_START + rb"0-9]*)?\$")
_COMMENT_STOP = re.compile(rb"/\*|\*/")
_ESTRING_STOP = re.compile(rb"\\.|'", re.S)
_META_NAME = re.compile(rb"\\([A-Za-z]+|.?)", re.S)
_OWN_PAIR = re.compile(rb"\\(restrict|unrestrict) ([A-Za-z0-9]+)[ \t]*\r?\n?\Z")
_COPY_FROM_STDIN = re.compile(rb"\s*COPY\s.*\sFROM\s+STDIN\b", re.I | re.S)
_COPY_PREFIX_MAX = 1 << 20  # a COPY statement's text (its column list) is kept up to this size


def _refuse(line: int, what: str) -> SetupError:
    return SetupError(f"snapshot line {line}: {what} refused: a snapshot is data, never code; "
                      "restore the file pg_dump wrote, unedited")


class MetaCommandGuard:
    """Feed a plain dump in chunks; each call returns the complete lines psql may be fed.

    Raises :class:`SetupError` at the first psql meta-command that is not the dump's own ``\\restrict``
    / ``\\unrestrict`` pair, or at text after ``COPY ... FROM stdin;`` on its line (psql would read it as
    SQL after the data)."""

    def __init__(self) -> None:
        self.line = 0  # the number of the line being read (1-based once a line is read)
        self._tail = b""
        self._state = "normal"  # normal | squote | estring | dquote | dollar | comment
        self._tag = b""
        self._comment_depth = 0
        self._parens = 0
        self._begins = 0
        self._words = 0
        self._statement = bytearray()
        self._in_copy = False
        self._key: bytes | None = None
        self._unrestricted = False
        self._sql_seen = False

    def feed(self, chunk: bytes) -> bytes:
        data = self._tail + chunk
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:]
        return self._lines(data[:cut])

    def finish(self) -> bytes:
        """The last line (one without a newline); the stream has ended."""
        rest, self._tail = self._tail, b""
        return self._lines(rest) if rest else b""

    # -- the lines --------------------------------------------------------------------------------------------

    def _lines(self, block: bytes) -> bytes:
        out: list[bytes] = []
        pos, size = 0, len(block)
        while pos < size:
            if self._in_copy:  # COPY data: skip to its "\." line, fast, whatever the rows hold
                found = _copy_end(block, pos)
                newline = -1 if found < 0 else block.find(b"\n", found)
                end = size if newline < 0 else newline + 1
                self.line += block.count(b"\n", pos, end) + (0 if block[end - 1:end] == b"\n" else 1)
                self._in_copy = found < 0
                out.append(block[pos:end])
                pos = end
                continue
            eol = block.find(b"\n", pos)
            end = size if eol < 0 else eol + 1
            line = block[pos:end]
            self.line += 1
            if not self._own_pair(line):
                self._scan(line)
                out.append(line)
            pos = end
        return b"".join(out)

    def _own_pair(self, line: bytes) -> bool:
        """The dump's own ``\\restrict KEY`` (before any SQL) or the matching ``\\unrestrict KEY``."""
        if self._state != "normal" or not line.startswith(b"\\") or self._statement.strip():
            return False
        match = _OWN_PAIR.match(line)
        if match is None:
            return False
        verb, key = match.group(1), match.group(2)
        if verb == b"restrict" and self._key is None and not self._sql_seen:
            self._key = key
            return True
        if verb == b"unrestrict" and key == self._key and not self._unrestricted:
            self._unrestricted = True
            return True
        return False

    # -- psql's lexer, as far as a meta-command is concerned --------------------------------------------------

    def _scan(self, line: bytes) -> None:
        i, size = 0, len(line)
        while i < size:
            state = self._state
            if state == "normal":
                stop = _NORMAL_STOP.search(line, i)
                j = size if stop is None else stop.start()
                self._text(line[i:j])
                if stop is None:
                    return
                i = self._normal(line, j)
            elif state in ("squote", "dquote"):  # standard strings and quoted names: only a doubled quote escapes
                quote = b"'" if state == "squote" else b'"'
                j = line.find(quote, i)
                if j < 0:
                    return
                if line[j + 1:j + 2] == quote:
                    i = j + 2
                    continue
                self._state, i = "normal", j + 1
            elif state == "estring":
                stop = _ESTRING_STOP.search(line, i)
                if stop is None:
                    return
                if stop.group() != b"'":
                    i = stop.end()
                elif line[stop.end():stop.end() + 1] == b"'":
                    i = stop.end() + 1
                else:
                    self._state, i = "normal", stop.end()
            elif state == "dollar":
                j = line.find(self._tag, i)
                if j < 0:
                    return
                self._state, i = "normal", j + len(self._tag)
            else:  # comment, nested as psql nests them
                stop = _COMMENT_STOP.search(line, i)
                if stop is None:
                    return
                self._comment_depth += 1 if stop.group() == b"/*" else -1
                if self._comment_depth == 0:
                    self._state = "normal"
                    self._statement += b" "
                i = stop.end()

    def _normal(self, line: bytes, j: int) -> int:
        """The special character at ``j`` outside any quote or comment; returns where to go on."""
        ch = line[j:j + 1]
        if ch == b"\\":
            name = _META_NAME.match(line, j)
            shown = (name.group(1) if name else b"").decode(errors="replace")
            raise _refuse(self.line, f"psql meta-command '\\{shown}'")
        if line.startswith(b"--", j):
            return len(line) - (1 if line.endswith(b"\n") else 0)
        if line.startswith(b"/*", j):
            self._state, self._comment_depth = "comment", 1
            return j + 2
        self._sql_seen = True
        if ch == b"'":
            e_prefix = (j >= 1 and line[j - 1:j] in (b"E", b"e")
                        and (j < 2 or line[j - 2] not in _IDENT_CHARS))
            self._state = "estring" if e_prefix else "squote"
            self._statement += b"''"
            return j + 1
        if ch == b'"':
            self._state = "dquote"
            self._statement += b'""'
            return j + 1
        if ch == b"$":
            tag = _DOLLAR_TAG.match(line, j)
            if tag is not None and (j == 0 or line[j - 1] not in _IDENT_CHARS):
                self._state, self._tag = "dollar", tag.group()
                self._statement += b"$$"
                return tag.end()
            self._statement += b"$"
            return j + 1
        if ch == b"(":
            self._parens += 1
        elif ch == b")":
            self._parens = max(0, self._parens - 1)
        elif self._parens == 0 and self._begins == 0:  # ";" ends the statement, as psql sends it
            return self._statement_end(line, j)
        self._statement += ch
        return j + 1

    def _text(self, text: bytes) -> None:
        """Plain SQL text outside quotes: words counted for psql's BEGIN/CASE ... END depth."""
        if not text.strip():
            self._statement += text[:1]
            return
        self._sql_seen = True
        for token in _TOKEN.findall(text):
            if token[:1].isdigit():
                continue
            self._words += 1
            word = token.lower()
            if word in (b"begin", b"case") and self._words > 1:
                self._begins += 1
            elif word == b"end" and self._begins > 0:
                self._begins -= 1
        if len(self._statement) < _COPY_PREFIX_MAX:
            self._statement += text

    def _statement_end(self, line: bytes, j: int) -> int:
        copy_in = _COPY_FROM_STDIN.match(bytes(self._statement)) is not None
        self._statement.clear()
        self._words = 0
        if copy_in:
            if line[j + 1:].strip():
                raise _refuse(self.line, "text after COPY ... FROM stdin on the same line")
            self._in_copy = True
            return len(line)
        return j + 1


def _copy_end(block: bytes, pos: int) -> int:
    """Where the line ``\\.`` that ends COPY data starts, at or after the line start ``pos``; -1 if not
    in ``block``. bytes.find, not a multiline regex: COPY data is nearly all of a snapshot."""
    at = pos
    while True:
        if block.startswith(b"\\.", at) and (block[at + 2:at + 3] in (b"\n", b"") or block[at + 2:at + 4] == b"\r\n"):
            return at
        newline = block.find(b"\n\\.", at)
        if newline < 0:
            return -1
        at = newline + 1


def restricted_preamble() -> bytes:
    """psql's own restricted mode with a key nobody else knows: from here on psql refuses every
    meta-command itself (psql 13.22, 14.19, 15.14, 16.10, 17.6, 18 and later)."""
    return b"\\restrict " + secrets.token_hex(32).encode() + b"\n"


_RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}


def psql_restricts(version_line: str) -> bool:
    """Does this ``psql --version`` line name a psql that knows ``\\restrict``?"""
    found = re.search(r"\b(\d+)\.(\d+)", version_line)
    if found is None:
        return False
    major, minor = int(found.group(1)), int(found.group(2))
    return major >= 18 or minor >= _RESTRICT_SINCE.get(major, 1 << 30)
