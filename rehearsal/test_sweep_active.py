"""A20-active (rehearsal only): the sweep really moves a straggler, exactly as the runbook describes.

Runs after the automated and manual checks (the collection hook orders it last). It writes, so it needs a
sandbox target or a --db-url target opted in with --rehearse=DBNAME; the synthetic row is deleted however
the steps end.
"""

from __future__ import annotations

import allure
import pytest

from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.reference import aftercare, engine
from cutover.suite import rehearsals
from cutover.suite.allure_out import verdict
from cutover.suite.catalogue import Catalogue
from cutover.suite.checks.base import Checker
from cutover.suite.under_check import DatabaseUnderCheck, check_connection


@pytest.mark.check("A20-active")
def test_A20active_sweep_moves_a_synthetic_straggler(database_under_check: DatabaseUnderCheck, cutover_plan: Plan,
                                                       cutover_settings: Settings,
                                                       request: pytest.FixtureRequest) -> None:
    if not database_under_check.sandbox and not cutover_settings.rehearse:
        pytest.skip("A20-active writes a synthetic row: a --db-url target needs --rehearse=DBNAME")
    if getattr(request.config, "workerinput", None) is not None:
        pytest.skip("A20-active writes to the shared target while other workers check it: run it without -n")
    url, plan = database_under_check.url, cutover_plan
    try:
        with allure.step("insert a synthetic patient-classified row on the source"):
            key = rehearsals.insert_straggler(url, plan)
            allure.attach(key, "synthetic row id", allure.attachment_type.TEXT)
        with allure.step("confirm it is on the source"):
            assert rehearsals.count_straggler(url, plan, plan.source) == 1, "the synthetic row is not on the source"
        with allure.step("run the sweep"):
            try:
                swept = aftercare.sweep(url, plan, "rehearsal:a20-active",
                                        engine.Timeouts(cutover_settings.lock_timeout, "5min"))
            except engine.RunFailed as exc:
                pytest.fail(f"A20-active: the sweep failed: {exc}", pytrace=False)
            moved = sum(swept["moved"].values()) if swept else 0
            allure.attach(str(moved), "rows moved by the sweep", allure.attachment_type.TEXT)
        with allure.step("confirm it moved to the target"):
            assert rehearsals.count_straggler(url, plan, plan.target) == 1, "the sweep did not move the synthetic row"
            assert rehearsals.count_straggler(url, plan, plan.source) == 0, "the synthetic row is still on the source"
        with allure.step("re-run A20"):
            conn = check_connection(url, cutover_settings, plan)
            try:
                a20 = Catalogue.for_plan(plan).get("A20")
                assert a20 is not None
                verdict(a20.evaluate(Checker(conn, plan, database_under_check.report)))
            finally:
                conn.close()
    finally:
        with allure.step("delete the synthetic row"):
            deleted = rehearsals.delete_straggler(url, plan)
            allure.attach(str(deleted), "rows deleted", allure.attachment_type.TEXT)
            assert (rehearsals.count_straggler(url, plan, plan.source)
                    + rehearsals.count_straggler(url, plan, plan.target)) == 0
