"""The Allure report groups a run's problems the way an operator acts on them.

A failed check, a setup error and an unanswered manual check need different people and different
next steps; Allure 3 put all three under its default "Product errors" until the categories went into
its config. This renders a report with the pinned Allure from results of each kind and reads the
categories it built.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from cutover.suite import allure_report


def _result(results: Path, name: str, status: str, message: str) -> None:
    uid = str(uuid.uuid4())
    (results / f"{uid}-result.json").write_text(json.dumps({
        "uuid": uid, "historyId": uid, "name": name, "fullName": name, "status": status,
        "statusDetails": {"message": message}, "start": 1, "stop": 2, "labels": []}))


def test_a_failed_check_a_setup_error_and_an_unanswered_manual_check_are_three_categories(tmp_path: Path) -> None:
    allure = allure_report.allure_command(None)
    assert allure is not None, "the pinned Allure is missing: run scripts/bootstrap.sh"
    results = tmp_path / "allure-results"
    allure_report.write_results_metadata(results, {"backend": "local"}, "build")
    _result(results, "A3 nothing patient-owned remains on the source [events]", "failed", "2 rows left on the source")
    _result(results, "A1 schema head is exactly the plan's revision", "broken", "connection refused")
    _result(results, "A12 Idempotency-key replay", "skipped", "needs operator: no answer in the answers file")
    _result(results, "A20-active the sweep moves a synthetic straggler", "skipped", "needs --rehearse")
    (tmp_path / "operator-log.md").write_text("# Operator log: REHEARSAL NOT READY: A3 FAIL\n")
    report, why = allure_report.render_html(results, tmp_path, allure, single_file=False, attach=("operator-log.md",))
    assert report is not None, why
    attached = [p for p in (tmp_path / "allure-report").rglob("*") if p.is_file() and p.suffix != ".html"
                and "# Operator log: REHEARSAL NOT READY: A3 FAIL" in p.read_text(errors="replace")]
    assert attached, "the operator log is not in the report"
    widget = json.loads((tmp_path / "allure-report" / "widgets" / "categories.json").read_text())
    found = {widget["nodes"][r]["name"]: widget["nodes"][r]["statistic"]["total"] for r in widget["roots"]}
    assert found == {"Cutover check failed": 1, "Setup or infrastructure error": 1, "Needs an operator": 1,
                     "Skipped": 1}, found
