"""The run's evidence bundle: what goes into ``evidence.json`` beside the operator log.

The artifacts a go/no-go relies on are copied into the run's directory first (the plan file used,
the snapshot's manifest, a cutover report written elsewhere), so the bundle is self-contained and
can be verified, moved or archived as one directory. The cutover command is recorded as the go/no-go
will compare it: ``--cutover-cmd`` as given (secrets masked), else the bundled module's version with
a digest of its sources.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cutover.core import evidence
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.core.redact import redact
from cutover.reference.version import module_version, package_version
from cutover.sandbox.snapshot import manifest_path
from cutover.suite.catalogue import NOT_APPLICABLE
from cutover.suite.rehearsals import Record

PASS_WORDS = {"passed", "pass"}


def cutover_command(settings: Settings) -> str:
    """What executed (or would execute) the cutover: the go/no-go requires the rehearsal's and today's to match."""
    if settings.cutover_cmd is not None:
        return f"--cutover-cmd {redact(settings.cutover_cmd)}"
    return f"bundled {module_version()}"


def plan_sha256(settings: Settings) -> str:
    return evidence.sha256_file(settings.plan_path)


def suite_version(git: str) -> str:
    return f"{package_version()} (git {git})"


def checks_of(log: Mapping[str, Any]) -> dict[str, str]:
    """Check id to its outcome word, from the operator log's rows."""
    return {str(c["check"]): str(c["result"]) for c in log.get("checks", [])}


def readiness(checks: Mapping[str, str], required: list[str]) -> tuple[int, list[str]]:
    """How many of the required checks passed, and which did not (with their outcome)."""
    missing = [f"{c} {checks.get(c, 'not run').upper()}" for c in required if checks.get(c) not in PASS_WORDS]
    return len(required) - len(missing), missing


def required_checks(log: Mapping[str, Any]) -> list[str]:
    """The 21 of the runbook: every check of the log but the rehearsal's extras (A20-active, A5-content and the
    rollback, which the go/no-go requires by name) and those the plan declares not applicable (listed apart,
    ``not_applicable``; the go/no-go counts from its own plan, never from this list)."""
    return [str(c["check"]) for c in log.get("checks", [])
            if c.get("kind") != "rehearsal" and c.get("result") != NOT_APPLICABLE]


def _copy_in(out: Path, source: Path | None, name: str) -> Path | None:
    """A file into the bundle (unless it is already there); None when there is no such file."""
    if source is None or not source.is_file():
        return None
    src = source.resolve()
    if out.resolve() in src.parents:
        return src
    dest = out / name
    shutil.copy2(src, dest)
    return dest


def write(out: Path, settings: Settings, plan: Plan, log: Mapping[str, Any], record: Record | None,
          sweep: Callable[[Path], int]) -> Path:
    """Copy the inputs in, sweep them for secrets, hash everything, write ``evidence.json``."""
    report = record.report_path if record and record.report_path else settings.report_path
    snapshot_file = Path(record.snapshot) if record and record.snapshot else None
    files: dict[str, Path | None] = {
        "plan": _copy_in(out, settings.plan_path, "plan.toml"),
        "snapshot_manifest": _copy_in(out, manifest_path(snapshot_file) if snapshot_file else None,
                                      "snapshot.manifest.json"),
        "cutover_report": _copy_in(out, Path(report) if report else None, Path(report).name if report else ""),
    }
    sweep(out)
    html = log.get("allure", {}).get("html")
    files.update({
        "operator_log_md": out / "operator-log.md",
        "operator_log_json": out / "operator-log.json",
        "journal": out / "journal.jsonl",
        "allure_html": out / html if html else None,
    })
    checks = checks_of(log)
    required = required_checks(log)
    passed, not_passed = readiness(checks, required)
    bound = log.get("rollback_time_bound") or {}
    facts = {
        "verdict": log.get("verdict"),
        "run": log.get("run"),
        "exit_status": log.get("exit_status"),
        "forecast_basis": log.get("forecast_basis"),  # the window's times, scaled by the go/no-go
        "checks": checks,
        "passed": passed,
        "required": len(required),
        "not_passed": not_passed,
        "not_applicable": dict(log.get("not_applicable") or {}),
        "plan": {"name": plan.name, "sha256": plan_sha256(settings)},
        "cutover_command": cutover_command(settings),
        "suite_version": suite_version(str(log.get("environment", {}).get("git_sha", "unknown"))),
        "target": log.get("environment", {}).get("target"),
        "snapshot": {"file": record.snapshot if record else None,
                     "timestamp": record.snapshot_timestamp if record else None},
        # The go/no-go holds production's major to these (window.same_major).
        "postgres": {"server": (record.postgres if record else None) or log.get("environment", {}).get("postgres"),
                     "snapshot_source": record.snapshot_source if record else None,
                     "newer_server_note": record.major_note if record else None},
        "times": {"started_at": log.get("started_at"), "finished_at": log.get("finished_at"),
                  "restore_s": record.restore_s if record else None,
                  "execute_s": record.execute_s if record else None,
                  "restore_measured_on": getattr(record, "restore_measured_on", None) if record else None,
                  "rollback_bound_s": bound.get("total_s")},
        "command": log.get("command"),
    }
    return evidence.write(out, files, facts)
