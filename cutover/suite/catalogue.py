"""The check catalogue: the one place a check of the smoke matrix is named, titled and placed in a set.

Markers, ``--check`` selection, the test names in smoke/, the verdict and its summary, the operator
log, Allure titles, the table in docs/checks.md and the fault corpus's expected sets all read this
list. Before it, a check's identity was spread over half a dozen places, and a title or a Set B
membership could differ between the log and the report. The manual checks (A11-A19) come from the
plan, whose ``[manual.*]`` sections hold the application's steps; the catalogue adds their set and
kind, so they are listed, selected and counted exactly like the automated ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from cutover.core.errors import CutoverError
from cutover.core.plan import Plan
from cutover.suite.checks import accounting, links, placement, posture
from cutover.suite.checks.base import Checker, Evidence

SET_A, SET_B = "setA", "setB"
NOT_APPLICABLE = "not applicable"
SET_NAMES = {SET_A: "Set A", SET_B: "Set B"}
Kind = Literal["sql", "manual", "rehearsal"]
Per = Literal["patient_table", "reference", "owned_table"]
PER_WORDS: dict[str, str] = {"patient_table": "each moving table", "reference": "each declared reference",
                             "owned_table": "each table that is not wholly patient-owned"}


@dataclass(frozen=True)
class Check:
    """One check of the matrix. ``run`` is the automated check's function (None for manual checks); it is
    handed the evidence :meth:`evaluate` makes from this entry and never writes its own id."""

    id: str
    title: str
    sets: tuple[str, ...]
    kind: Kind
    slug: str
    per: Per | None = None
    run: Callable[..., Evidence] | None = None
    needs: str | None = None  # the [features] key whose subject the check is about; declared absent: not applicable
    swept: bool = False  # a failure the sweep fixes (rows left or written late on the source): the next step says so

    @property
    def keyword(self) -> str:
        """``A3_``: what ``-k`` takes to select this check and no other (``A1`` alone would match A10-A19)."""
        return self.id.replace("-", "") + "_"

    @property
    def test_name(self) -> str:
        return f"test_{self.keyword}{self.slug}"

    @property
    def number(self) -> int:
        digits = re.match(r"A(\d+)", self.id)
        return int(digits.group(1)) if digits else 99

    def heading(self, subject: str = "") -> str:
        """``A3 nothing patient-owned remains on the source [events]``: the title every output shows."""
        return f"{self.id} {self.title}" + (f" [{subject}]" if subject else "")

    def subjects(self, plan: Plan) -> list[str]:
        """What the check runs once for: the plan's tables or references, per ``per`` (else one run)."""
        if self.per == "patient_table":
            return [t.name for t in plan.moving]
        if self.per == "owned_table":
            return [t.name for t in plan.tables if t.owner != "patient"]
        if self.per == "reference":
            return [f"{t.name}.{r.column}" for t in plan.tables for r in t.references]
        return []

    def evaluate(self, checker: Checker, *args: str) -> Evidence:
        """Run the automated check on evidence made from this entry: its id and title are the catalogue's."""
        if self.run is None:
            raise TypeError(f"{self.id} is a {self.kind} check: it has no query to run")
        if self.needs is not None and self.needs in checker.plan.features.absent():
            # never a pass by default: the plan says there is nothing for it to look at, so it is not run at all
            raise CutoverError(f"{self.id} is not applicable to this plan ([features] {self.needs} = false)")
        return self.run(checker, Evidence(self.id, title=self.title), *args)


_BOTH = (SET_A, SET_B)
# Named: the production window's go/no-go runs these two on production as its schema and tenant items.
SCHEMA_HEAD = Check("A1", "schema head is exactly the plan's revision", _BOTH, "sql", "schema_head", run=posture.a1)
TARGET_TENANT = Check("A2", "target tenant exists, active, protected, settings mirrored", _BOTH, "sql",
                      "target_tenant", run=posture.a2)
AUTOMATED: tuple[Check, ...] = (
    SCHEMA_HEAD,
    TARGET_TENANT,
    Check("A3", "nothing patient-owned remains on the source", _BOTH, "sql", "nothing_patient_owned_on_source",
          per="patient_table", run=placement.a3, swept=True),
    Check("A4", "references are tenant-consistent", _BOTH, "sql", "references_tenant_consistent", per="reference",
          run=links.a4),
    Check("A5", "row conservation against the report's baseline", (SET_A,), "sql", "row_conservation",
          run=accounting.a5),
    Check("A6", "provider data intact: no provider-owned row on the target", _BOTH, "sql", "provider_data_intact",
          per="owned_table", run=placement.a6),
    Check("A7", "case shares resolve, and providers see exactly their shared cases", _BOTH, "sql",
          "shares_resolve", run=links.a7, needs="share_table"),
    Check("A8", "events classified and on the right tenant", _BOTH, "sql", "events_classified", run=placement.a8,
          needs="event_table", swept=True),
    Check("A9", "idempotency keys on their case's tenant; patient routes on the target", _BOTH, "sql",
          "replay_keys_on_their_case_tenant", run=links.a9, needs="idempotency_table"),
    Check("A10", "allow-list exact: the target holds exactly the report's rows", (SET_A,), "sql",
          "allow_list_exact", run=accounting.a10),
    Check("A20", "no stragglers: the sweep predicate finds nothing", (SET_A,), "sql", "no_stragglers",
          run=placement.a20),
    Check("A21", "RLS posture: enabled, forced, policies, no BYPASSRLS, nothing patient visible on the source",
          (SET_A,), "sql", "rls_posture", run=posture.a21, needs="row_level_security"),
)
SET_B_IDS = frozenset(c.id for c in AUTOMATED if SET_B in c.sets)  # the manual checks are Set A only
RUNBOOK_MANUAL = tuple(f"A{i}" for i in range(11, 20))  # the runbook's step 5b; their steps are the plan's
A20_ACTIVE = Check("A20-active", "the sweep moves a synthetic straggler", (SET_A,), "rehearsal",
                   "sweep_moves_a_synthetic_straggler")
# The rehearsal's own proofs beside the 21: they need the pre-cutover database the rehearsal restored,
# so a database only adopted (--db-url without --rehearse) cannot give them. A READY rehearsal needs both.
A5_CONTENT = Check("A5-content", "nothing but the tenant changed: every planned row as the snapshot had it",
                   (SET_A,), "rehearsal", "nothing_but_the_tenant_changed")
ROLLBACK = Check("rollback", "rollback option 2 rehearsed: the reverse puts every planned row back",
                 (SET_A,), "rehearsal", "reverse_puts_every_row_back")
REHEARSAL_PROOFS = (A5_CONTENT.id, ROLLBACK.id)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


@dataclass(frozen=True)
class Catalogue:
    """Every check a run of this plan knows, in the runbook's order (A1..A21, A5-content after A5, A20-active
    after A20, the rollback last)."""

    checks: tuple[Check, ...]
    # Checks whose subject the plan's [features] declares absent, with the reason: never run, never counted,
    # always named (the verdict line, the operator log, the evidence, the go/no-go).
    not_applicable: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def for_plan(cls, plan: Plan) -> Catalogue:
        manual = [Check(c, m.title, (SET_A,), "manual", _slug(m.title)) for c, m in plan.manual.items()]
        # A runbook manual check the plan leaves out is named as such, never dropped without a word.
        left_out = [Check(c, "runbook manual check the plan leaves out", (SET_A,), "manual", "left_out")
                    for c in RUNBOOK_MANUAL if c not in plan.manual]
        every = sorted([*AUTOMATED, *manual, *left_out, A20_ACTIVE, A5_CONTENT, ROLLBACK],
                       key=lambda c: (c.number, c.kind == "rehearsal"))
        absent = plan.features.absent()
        na = {c.id: absent[c.needs] for c in every if c.needs is not None and c.needs in absent}
        na.update({c.id: f"no [manual.{c.id}] section" for c in left_out})
        return cls(tuple(every), MappingProxyType(na))

    def __iter__(self) -> Iterator[Check]:
        return iter(self.checks)

    def get(self, check_id: str) -> Check | None:
        return next((c for c in self.checks if c.id.upper() == check_id.upper()), None)

    def title(self, check_id: str) -> str:
        found = self.get(check_id)
        return found.title if found is not None else ""

    def in_set(self, name: str) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if name in c.sets)

    def counted(self, kind: str | None = None) -> tuple[Check, ...]:
        """The checks a verdict waits for: the runbook's 21 (A20-active is a rehearsal extra), or Set B's;
        the plan's not-applicable checks left out (they are named beside the count, never passed)."""
        every = tuple(c for c in self.checks if c.kind != "rehearsal" and c.id not in self.not_applicable)
        return tuple(c for c in every if SET_B in c.sets) if kind == SET_B else every

    def applicable(self, check_id: str) -> bool:
        return check_id not in self.not_applicable

    def why_not_applicable(self, check_id: str) -> str:
        """``not applicable: the plan declares no share table ([features] share_table = false)``."""
        entry = self.get(check_id)
        key = entry.needs if entry is not None else None
        if key is None:
            return f"{NOT_APPLICABLE}: the plan has {self.not_applicable[check_id]}"
        return f"{NOT_APPLICABLE}: the plan declares {self.not_applicable[check_id]} ([features] {key} = false)"

    def select(self, raw: str | None) -> tuple[str, ...]:
        """The ``--check`` ids in their catalogue spelling; an unknown id is a usage error naming the known ones."""
        wanted = [part.strip() for part in (raw or "").split(",") if part.strip()]
        unknown = [w for w in wanted if self.get(w) is None]
        if unknown:
            raise CutoverError(f"--check: unknown check {', '.join(unknown)}; the known checks are "
                             f"{', '.join(c.id for c in self.checks)}")
        return tuple(dict.fromkeys(c.id for w in wanted if (c := self.get(w)) is not None))


def markdown_table(catalogue: Catalogue) -> str:
    """The table in docs/checks.md, so the docs cannot drift from what the suite runs."""
    lines = ["| id | check | Set A | Set B | kind | one test per |", "|---|---|---|---|---|---|"]
    for c in catalogue:
        lines.append(f"| {c.id} | {c.title} | {'yes' if SET_A in c.sets else ''} | "
                     f"{'yes' if SET_B in c.sets else ''} | {c.kind} | {PER_WORDS.get(c.per or '', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """``python -m cutover.suite.catalogue [PLAN]`` prints the table docs/checks.md carries."""
    import sys
    from pathlib import Path

    from cutover.core.plan import DEFAULT_PLAN, load_plan

    plan = load_plan(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PLAN)
    print(markdown_table(Catalogue.for_plan(plan)), end="")


if __name__ == "__main__":
    main()
