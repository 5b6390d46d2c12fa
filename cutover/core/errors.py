"""Operator-facing errors.

Every error a person can fix is raised as a :class:`CutoverError` whose message is one line:
what was checked, what was found, and which option fixes it. Callers (the CLI, the pytest plugin)
turn it into exit code 2 (``ExitCode.SETUP``) without a traceback, because in a maintenance window a traceback is noise.
"""

from __future__ import annotations

from cutover.core.exit_codes import ExitCode


class CutoverError(Exception):
    """An error with a one-line, secret-free message that tells the operator the fix."""

    exit_code: ExitCode = ExitCode.SETUP

    def __init__(self, message: str) -> None:
        # Collapse accidental newlines: the contract is one line, greppable in a log.
        super().__init__(" ".join(message.split()))


class SetupError(CutoverError):
    """The environment (binaries, server, snapshot, options) does not allow the run to start."""


class PlanError(CutoverError):
    """The plan file is missing, malformed, or inconsistent."""


class DatabaseError(CutoverError):
    """A statement the database refused or failed outside a cutover's own transaction (a privilege, a
    timeout, a schema the plan does not match). Exit 2 like a connection error: uncaught it was a
    traceback and exit 1, the code that tells an operator's script BLOCKED."""
