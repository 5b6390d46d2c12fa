"""The operator log's Markdown: the human half, rendered from its JSON half in the runbook's step-6 order.

Only formatting: what goes into the log is gathered by ``suite/oplog``, which writes this text
beside operator-log.json and attaches it to the HTML report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cutover.suite.catalogue import NOT_APPLICABLE
from cutover.suite.verdicts import NOT_CONFIGURED

WORDS = {"passed": "PASS", "pass": "PASS", "failed": "FAIL", "fail": "FAIL", "skipped": "SKIP", "skip": "SKIP",
         NOT_APPLICABLE: "N/A", NOT_CONFIGURED: "NOT CONFIGURED"}


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def markdown(log: Mapping[str, Any]) -> str:
    """The human half of the operator log: what the runbook's step 6 asks for, in its order."""
    r = log["rehearsal"] or {}
    bound = log.get("rollback_time_bound") or {}
    lines = [f"# Operator log: {log['verdict']}", ""]
    if log.get("setup_error"):
        lines.append(f"- setup error: {log['setup_error']}")
    if log.get("interrupted_at"):
        lines.append(f"- interrupted at: {log['interrupted_at']}")
    if log.get("answers_warning"):
        lines.append(f"- {log['answers_warning']}")
    for check, why in (log.get("not_applicable") or {}).items():
        lines.append(f"- {check} {why}")
    if log.get("next_step"):
        lines += ["## Next step", "", "```", *log["next_step"], "```", ""]
    lines += [f"- run: {log['started_at']} to {log['finished_at']}, exit status {log['exit_status']}",
             f"- command: `{log['command']}`",
             f"- operator: {log['operator']}", f"- git: {log['environment'].get('git_sha', 'unknown')}",
             f"- target: {r.get('target') or log['environment'].get('target', '-')}",
             f"- snapshot: {r.get('snapshot') or '-'}"
             + (f" (restored by the earlier run {r['restored_by_run']}: this run found the target restored; its "
                "snapshot timestamp and restore time below are that run's)" if r.get("restored_by_run") else ""),
             f"- snapshot timestamp: {r.get('snapshot_timestamp') or '-'}",
             f"- PostgreSQL: the snapshot was dumped from {r.get('snapshot_source') or 'an unstated version'}, "
             f"rehearsed on {r.get('postgres') or log['environment'].get('postgres', '-')}"
             + (f" ({r['major_note']})" if r.get("major_note") else ""),
             f"- restore wall-clock: {_fmt_s(r.get('restore_s'))}"
             + (f" (measured on {r['restore_measured_on']})" if r.get("restore_measured_on") else ""),
             *([f"- roles created for the restore (NOLOGIN, sandbox only; the snapshot's policies, owners or "
                f"grants name them): {', '.join(r['created_roles'])}"] if r.get("created_roles") else []),
             f"- dry-run verdict: {r.get('dry_run') or '-'}"
             + (f" ({'; '.join(r['blockers'])})" if r.get("blockers") else ""),
             f"- execute duration: {_fmt_s(r.get('execute_s'))} ({r.get('execute_via') or '-'})",
             f"- report path: {r.get('report_path') or log.get('report_path') or '-'}"]
    if bound:
        lines.append(f"- rollback time bound: {bound['total_s'] / 60:.1f} min = restore {bound['restore_s']:.1f} s + "
                     f"revert deploys {bound['revert_deploys_s'] // 60} min + smoke {bound['smoke_s'] // 60} min "
                     f"(runbook budget {bound['budget_s'] // 60} min: "
                     f"{'within' if bound['within_budget'] else 'OVER'}; restore measured on "
                     f"{bound.get('restore_measured_on', 'unknown')})")
    html = log["allure"]["html"]
    lines += [f"- Allure report: [{html}]({html})" if html else f"- Allure report: {log['allure']['note']}",
              f"- Allure results: {log['allure']['results']}", f"- journal: {log['journal']}", "",
              "## Checks A1-A21", "", "| check | kind | result | title | observation | operator | at |",
              "|---|---|---|---|---|---|---|"]
    for c in log["checks"]:
        obs = str(c["observation"]).replace("|", "\\|").replace("\n", " ")
        word = WORDS.get(c["result"], c["result"].upper())
        lines.append(f"| {c['check']} | {c['kind']} | {word} | {c['title']} | {obs} | "
                     f"{c['operator']} | {c['at']} |")
    lines += ["", "## Timeline", "", "| step | started | seconds | status | detail |", "|---|---|---|---|---|"]
    for t in log["timeline"]:
        lines.append(f"| {t['step']} | {t['started_at']} | {t['seconds']} | {t['status']} | {t['detail']} |")
    if log.get("window_timeline"):
        lines += ["", "## Window timeline (T+ since the cutover's commit, from the database)", "", "```",
                  *log["window_timeline"], "```"]
    lines += ["", "## Summary", "", "```", *log["summary_lines"], "```", ""]
    return "\n".join(lines)
