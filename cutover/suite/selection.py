"""Which verdict a run owes, read from what its ``-m`` expression selects, never from its spelling.

Guessing from the text took ``-m "not setB"`` for a Set B run (it selects everything but Set B) and
would have taken ``-m "not prereq"`` for the go/no-go. So the expression is evaluated by pytest's own
parser against each check's markers as the catalogue gives them, and the run's kind follows from the
checks it selects: only Set B's checks owe Set B's verdict; exactly the 12 automated SQL checks are
the runbook's step 5a; any other selection of checks owes the rehearsal's verdict over all 21 (so a
partial selection is never a pass); no check at all is not a verdict run (the go/no-go owns its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from _pytest.mark.expression import Expression

from cutover.suite import verdicts
from cutover.suite.catalogue import SET_B_IDS, Catalogue

GO_NO_GO_MARK = "prereq"
ALWAYS_MARKED = ("check",)  # every check's test carries check(id)


@dataclass(frozen=True)
class Selection:
    """What an expression selects: catalogue check ids, and whether it is the go/no-go."""

    checks: tuple[str, ...]
    prereq: bool


def _marked(names: set[str]) -> Callable[..., bool]:
    def matcher(name: str, /, **kwargs: str | int | bool | None) -> bool:
        return not kwargs and name in names
    return matcher


def select(markexpr: str, catalogue: Catalogue) -> Selection:
    """The checks ``markexpr`` selects (every check when it is empty). The go/no-go is an expression
    that selects a prerequisite and no check: ``-m "not prereq"`` selects every check, so it is not."""
    if not markexpr.strip():
        return Selection(tuple(c.id for c in catalogue), prereq=False)
    expr = Expression.compile(markexpr)
    checks = tuple(c.id for c in catalogue if expr.evaluate(_marked({*c.sets, c.kind, *ALWAYS_MARKED})))
    return Selection(checks, prereq=not checks and expr.evaluate(_marked({GO_NO_GO_MARK})))


def step_5a(catalogue: Catalogue) -> frozenset[str]:
    """The runbook's step 5a: the automated SQL subset of Set A (12 checks in the reference plan)."""
    return frozenset(c.id for c in catalogue if c.kind == "sql")


def kind(selection: Selection, catalogue: Catalogue) -> str | None:
    """The verdict the selection owes: Set B's, step 5a's, the rehearsal's, or none."""
    chosen = frozenset(selection.checks)
    if not chosen:
        return None
    if chosen <= SET_B_IDS:
        return verdicts.SET_B
    if chosen == step_5a(catalogue):
        return verdicts.STEP_5A
    return verdicts.REHEARSAL
