"""The rehearsal's own proofs beside the 21 checks: nothing but the tenant changed (A5-content), and
rollback option 2 rehearsed (the reverse, on a clone of the cut-over database, puts every planned row
back as the snapshot had it, and is timed).

The rehearsal flow does the work while it holds the database alone (right after the execute); these
tests read its record and turn it into titled evidence. A database only adopted (--db-url without
--rehearse) has no restored snapshot to compare with: both are then skipped, which is never a pass.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cutover.core.plan import Plan
from cutover.suite import content
from cutover.suite.allure_out import verdict
from cutover.suite.rehearsals import Record


def _record(rehearsal: Record | None, what: str) -> Record:
    if rehearsal is None:
        pytest.skip(f"{what} compares with the snapshot the rehearsal restored: a --db-url target needs --rehearse")
    return rehearsal


@pytest.mark.check("A5-content")
def test_A5content_nothing_but_the_tenant_changed(cutover_rehearsal: Record | None, cutover_plan: Plan) -> None:
    found = _record(cutover_rehearsal, "A5-content").content
    if found is None or "error" in found:
        pytest.fail(f"A5-content: the rehearsal could not compare: {(found or {}).get('error', 'no record')}",
                    pytrace=False)
    verdict(content.evidence("A5-content", content.Comparison.from_json(found),
                             "every planned row as the snapshot had it, save the tenant column of moved rows, "
                             "the cutover's own audit events and the plan's trigger_columns",
                             f"{cutover_plan.source} -> {cutover_plan.target}"))


@pytest.mark.check("rollback")
def test_rollback_reverse_puts_every_row_back(cutover_rehearsal: Record | None, cutover_plan: Plan,
                                             record_property: Callable[[str, object], None]) -> None:
    done = _record(cutover_rehearsal, "the rollback rehearsal").rollback or {"error": "no record"}
    if "not_rehearsed" in done:
        pytest.skip(f"rollback not rehearsed: {done['not_rehearsed']}")
    if "error" in done:
        pytest.fail(f"rollback option 2 failed on the rehearsal's clone: {done['error']}", pytrace=False)
    verdict(content.evidence("rollback", content.Comparison.from_json(done["comparison"]),
                             "after the reverse, every planned row exactly as the snapshot had it (the cutover's "
                             "own audit events and the plan's trigger_columns aside)", cutover_plan.source))
    record_property("cutover_note", f"rollback rehearsed in {float(done['seconds']):.1f} s")
