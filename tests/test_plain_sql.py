"""The meta-command guard on its own: what pg_dump writes passes whole, anything psql would run is refused
with its line. (The restore against a real server is in test_snapshot.py.)"""

from __future__ import annotations

import pytest

from cutover.core.errors import SetupError
from cutover.sandbox.plain_sql import MetaCommandGuard, psql_restricts

# What pg_dump 15-18 writes that holds a backslash outside a meta-command, and its own \restrict pair.
DUMP = b"""--
-- PostgreSQL database dump
--

\\restrict k3Y0fTh3dUmp

SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE FUNCTION public.f() RETURNS text LANGUAGE plpgsql AS $_$ BEGIN RETURN '\\x'; END $_$;
CREATE FUNCTION public.g() RETURNS integer LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END;
COMMENT ON TABLE public.t IS 'a \\ backslash'; -- a comment \\! is no command
/* nested /* \\! */ still a comment */ SELECT E'\\'' || 'it''s', "odd\\name";
COPY public.t (a, b) FROM stdin;
1\t\\N
2\t\\\\! not a command either
\\.

--
-- PostgreSQL database dump complete
--

\\unrestrict k3Y0fTh3dUmp

"""


def guarded(text: bytes, chunk: int) -> bytes:
    guard = MetaCommandGuard()
    out = b"".join(guard.feed(text[i:i + chunk]) for i in range(0, len(text), chunk))
    return out + guard.finish()


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_a_pg_dump_passes_whole_but_for_its_own_restrict_pair(chunk: int) -> None:
    out = guarded(DUMP, chunk)
    assert out == DUMP.replace(b"\\restrict k3Y0fTh3dUmp\n", b"").replace(b"\\unrestrict k3Y0fTh3dUmp\n", b"")


BAD = {
    "shell on its own line": (b"\\! touch /tmp/x\n", 8, "psql meta-command '\\!'"),
    "after SQL on a line": (b"SELECT 1; \\! touch /tmp/x\n", 8, "psql meta-command '\\!'"),
    "output to a pipe": (b"SELECT 'a''b' \\o |sh\n", 8, "psql meta-command '\\o'"),
    "client-side copy": (b"\\copy t from program 'id'\n", 8, "psql meta-command '\\copy'"),
    "after a dollar quote": (b"SELECT $a$ x $a$ \\! id\n", 8, "psql meta-command '\\!'"),
    "after a COPY's data": (b"COPY t FROM stdin;\n\\N\n\\.\n\\! id\n", 11, "psql meta-command '\\!'"),
    "COPY inside parentheses is no COPY": (b"SELECT (1;\nCOPY t FROM stdin;\n\\! id\n", 10,
                                           "psql meta-command '\\!'"),
    "COPY inside BEGIN ATOMIC is no COPY": (b"CREATE FUNCTION f() BEGIN ATOMIC; COPY t FROM stdin;\n\\! id\n", 9,
                                            "psql meta-command '\\!'"),
    "SQL after COPY FROM stdin": (b"COPY t FROM stdin; SELECT 1;\n", 8,
                                  "text after COPY ... FROM stdin on the same line"),
    "a second restrict": (b"\\restrict other\n", 8, "psql meta-command '\\restrict'"),
    "an unrestrict of another key": (b"\\unrestrict other\n", 8, "psql meta-command '\\unrestrict'"),
}


@pytest.mark.parametrize("case", BAD)
def test_anything_psql_would_run_is_refused_with_its_line(case: str) -> None:
    inserted, line, what = BAD[case]
    text = DUMP.replace(b"SET standard_conforming_strings = on;\n",
                        b"SET standard_conforming_strings = on;\n" + inserted, 1)
    with pytest.raises(SetupError) as info:
        guarded(text, 5)
    assert str(info.value).startswith(f"snapshot line {line}: {what} refused: a snapshot is data, never code")


@pytest.mark.parametrize(("version", "knows"), [
    ("psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", True), ("psql (PostgreSQL) 15.13", False),
    ("psql (PostgreSQL) 17.6", True), ("psql (PostgreSQL) 17.5", False), ("psql (PostgreSQL) 18.0", True),
    ("psql (PostgreSQL) 12.22", False), ("", False)])
def test_psql_restrict_support_is_read_from_its_version(version: str, knows: bool) -> None:
    assert psql_restricts(version) is knows
