"""The one verdict of a run, and the exit code scripts rely on.

The runbook: all 21 checks must pass before the window is announced. So a rehearsal is READY only
when every expected check passed; a failed check, a skipped one, an unanswered manual check, a
check that never ran, a setup error and an interruption each keep it NOT READY, and each is named
in the one line that heads the terminal summary, the operator log, the Allure report and the journal.
Set B (the production window) reads the same way over its 8 checks, and the runbook's step 5a (a run
of exactly the 12 automated SQL checks) over those 12: all passing ends ``ALL 12 CHECKS PASSED``, as
the runbook expects, in a line that also says the rehearsal is READY only after step 5b and A20-active.

Exit codes (:class:`cutover.core.exit_codes.ExitCode`): OK READY / PASSED; FAILED a check failed; SETUP a
setup error (its line is in the log); INCOMPLETE nothing failed but checks were skipped, unanswered or not
run; INTERRUPTED (the log says where).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cutover.core.exit_codes import ExitCode

REHEARSAL = "rehearsal"
SET_B = "setB"
STEP_5A = "step 5a"
NEEDS_OPERATOR = "needs operator"
NOT_CONFIGURED = "not configured"


@dataclass(frozen=True)
class Verdict:
    """The line, its exit code, and what stopped the run (if anything), for the operator log."""

    line: str
    exit_code: ExitCode
    setup_error: str | None = None
    interrupted_at: str | None = None

    @property
    def ready(self) -> bool:
        return self.exit_code == ExitCode.OK

    @property
    def colour(self) -> str:
        return {ExitCode.OK: "green", ExitCode.INCOMPLETE: "yellow"}.get(self.exit_code, "red")


def _heads(kind: str) -> tuple[str, str, str]:
    """(pass head, fail head, incomplete head)."""
    if kind == SET_B:
        return "SET B PASSED", "SET B FAILED", "SET B NOT PASSED"
    if kind == STEP_5A:
        return "ALL {n} CHECKS PASSED", "STEP 5A FAILED", "STEP 5A NOT PASSED"
    return "REHEARSAL READY", "REHEARSAL NOT READY", "REHEARSAL NOT READY"


def _rank(check: str) -> tuple[int, str]:
    """Checks outside the count in the runbook's order: A5-content, A20-active, then the rollback."""
    digits = re.match(r"A(\d+)", check)
    return (int(digits.group(1)) if digits else 99, check)


def decide(kind: str, expected: Sequence[str], outcomes: Mapping[str, str], reasons: Mapping[str, str],
           manual: Sequence[str], *, setup_error: str | None = None, interrupted_at: str | None = None,
           also_required: Sequence[str] = (), notes: Sequence[str] = (), note: str = "",
           not_applicable: Mapping[str, str] | None = None) -> Verdict:
    """One line for the run, ending with ``note`` when there is one (a newer server than production's:
    "rehearsed on 18 for a PostgreSQL 16 production"), so the reader of the line never misses it.
    ``expected``: the checks this kind of run must pass (in the runbook's order); ``outcomes``: each
    check's worst outcome (passed/failed/skipped); checks outside ``expected`` that ran (A20-active)
    count too when they did not pass; ``also_required``: checks outside the count that must pass all
    the same (the rehearsal's content and rollback proofs); ``notes``: what a READY line adds
    ("rollback rehearsed in 4.1 s"); ``not_applicable``: checks the plan declares without a subject, each with
    its reason (``"A7": "no share table"``), left out of ``expected`` by the caller and named at the end of the
    line, READY or not, so a count of applicable checks is never read as the runbook's 21."""
    na = {c: why for c, why in (not_applicable or {}).items() if c not in expected}
    said = (" (not applicable, as the plan declares: " + ", ".join(f"{c} {na[c]}" for c in sorted(na, key=_rank))
            + ")") if na else ""
    found = _decide(kind, expected, outcomes, reasons, manual, setup_error, interrupted_at, also_required, notes,
                    said)
    if not note:
        return found
    return Verdict(f"{found.line}; {note}", found.exit_code, found.setup_error, found.interrupted_at)


def _decide(kind: str, expected: Sequence[str], outcomes: Mapping[str, str], reasons: Mapping[str, str],
            manual: Sequence[str], setup_error: str | None, interrupted_at: str | None,
            also_required: Sequence[str], notes: Sequence[str], not_applicable: str = "") -> Verdict:
    ready, failed_head, incomplete_head = _heads(kind)
    parts: list[str] = []
    unanswered = not_run = 0
    failed = False
    extras = sorted({*also_required, *(c for c in outcomes if c not in expected)}, key=_rank)
    for check in [*expected, *extras]:
        outcome = outcomes.get(check)
        if outcome == "failed":
            parts.append(f"{check} FAIL")
            failed = True
        elif outcome == "skipped" and reasons.get(check, "").startswith(NOT_CONFIGURED):
            parts.append(f"{check} {NOT_CONFIGURED}")  # the plan cannot supply its values: never answered
        elif outcome == "skipped" and not (check in manual and reasons.get(check, "").startswith(NEEDS_OPERATOR)):
            parts.append(f"{check} SKIP")
        elif outcome is None and check in also_required:
            parts.append(f"{check} not run")
        elif outcome is None or outcome == "skipped":
            if check in manual:
                unanswered += 1
            else:
                not_run += 1
    if unanswered:
        parts.append(f"{unanswered} unanswered")
    if not_run:
        parts.append(f"{not_run} not run")
    if interrupted_at is not None:
        return Verdict(f"{failed_head}: interrupted at {interrupted_at}" + (f"; {', '.join(parts)}" if parts else ""),
                       ExitCode.INTERRUPTED, interrupted_at=interrupted_at)
    if setup_error is not None:
        return Verdict(f"{failed_head}: setup error: {setup_error}", ExitCode.SETUP, setup_error=setup_error)
    if not parts and kind == STEP_5A:
        return Verdict(f"{ready.format(n=len(expected))} (step 5a): the rehearsal is READY only after step 5b "
                       f"(the manual checks) and A20-active{not_applicable}", ExitCode.OK)
    if not parts:
        noun = (" applicable checks passed" if not_applicable else " checks passed") if kind == REHEARSAL else ""
        return Verdict(f"{ready}: {len(expected)} of {len(expected)}{noun}{not_applicable}"
                       + "".join(f"; {n}" for n in notes), ExitCode.OK)
    if failed:
        return Verdict(f"{failed_head}: {', '.join(parts)}{not_applicable}", ExitCode.FAILED)
    return Verdict(f"{incomplete_head}: {', '.join(parts)}{not_applicable}", ExitCode.INCOMPLETE)
