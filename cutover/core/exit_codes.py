"""The exit codes operators' scripts branch on: one enum for the ``cutover`` command and the suite.

The numbers are a contract (runbooks and CI scripts test them), so they are never renumbered. Where
the ``cutover`` command and the suite (pytest) give one number two meanings, both meanings are
members of their own name (an alias of the same value), so a reader of ``ExitCode.ROLLED_BACK`` and
one of ``ExitCode.BAD_PLAN`` both see which number it is and what else it means. The README's table
is :func:`markdown_table`, and a test compares them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit status a command or a run of the suite ends with; aliases share a number."""

    OK = 0
    FAILED = 1
    BLOCKED = 1
    NO_GO = 1
    SETUP = 2
    COMMAND_USAGE = 2
    ALREADY_CUT_OVER = 3
    ROLLED_BACK = 4
    BAD_PLAN = 4
    USAGE = 4
    REPORT_LOST = 5
    NOTHING_COLLECTED = 5
    INCOMPLETE = 6
    INTERRUPTED = 130


# Each name's meaning, in the operator's words; the README's table is made from it, in this order.
MEANINGS: dict[str, str] = {
    "OK": "done: READY, PASSED, `ALL 12 CHECKS PASSED`, `WINDOW GO`, plan and schema agree, evidence verified",
    "FAILED": "the suite: a check failed (`REHEARSAL NOT READY: A12 FAIL, …`, `SET B FAILED: …`); `plan check`: "
              "differences; `evidence verify`: a file or the signature "
              "does not match",
    "BLOCKED": "`cutover dry-run`, `execute`, `sweep`, `reverse`: BLOCKED or a refused report; these and `report "
               "--rebuild`: a plan naming a table or column the database lacks; nothing changed",
    "NO_GO": "`pytest -m prereq`: `WINDOW NO-GO`",
    "SETUP": "a setup, connection or database error: one line that names the fix (the suite: no PostgreSQL, a "
             "BLOCKED dry run or a failed execute in the rehearsal, `--sign-with` could not sign; also in the "
             "operator log)",
    "COMMAND_USAGE": "`cutover`: a usage error (a missing or bad argument), one line",
    "ALREADY_CUT_OVER": "`cutover execute`: the database is already cut over; nothing changed",
    "ROLLED_BACK": "`cutover execute`, `sweep`, `reverse`: rolled back; nothing changed",
    "BAD_PLAN": "`cutover plan check`, `plan upgrade`: the plan file is missing or malformed",
    "USAGE": "the suite: a usage error (a bad option or answers file, Set B without a target): one line that "
             "names the fix; nothing runs or is written",
    "REPORT_LOST": "`cutover execute`: committed, but the report could not be written (`cutover report --rebuild`)",
    "NOTHING_COLLECTED": "the suite: no test was collected (CI treats it as a failure)",
    "INCOMPLETE": "the suite: nothing failed but checks were skipped, unanswered or not run: not a pass",
    "INTERRUPTED": "interrupted (Ctrl-C, SIGTERM): a `cutover` command rolled back; the suite's operator log says "
                   "at which step or prompt",
}


def markdown_table() -> str:
    """The README's exit-code table: every name, aliases included, with its number and meaning."""
    rows = ["| code | name | meaning |", "|---|---|---|"]
    for name, member in sorted(ExitCode.__members__.items(), key=lambda item: int(item[1])):
        rows.append(f"| {int(member)} | `{name}` | {MEANINGS[name]} |")
    return "\n".join(rows)
