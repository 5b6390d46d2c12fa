#!/usr/bin/env python3
"""The runbook's entry point: ``python scripts/cutover_patient_tenant.py --execute --operator-confirmed``.

Accepts the runbook's own flags and forwards to the ``cutover`` command, so an operator can follow
the runbook word for word (``railway run -- python scripts/cutover_patient_tenant.py ...``) against
the suite's reference implementation. Reads DATABASE_URL and CUTOVER_ACTOR from the environment.

    --dry-run                              -> cutover dry-run
    --execute --operator-confirmed         -> cutover execute --operator-confirmed
    --sweep                                -> cutover sweep
    --reverse [--dry-run] --operator-confirmed --report-path P -> cutover reverse ...
    --rebuild-report --report-path P       -> cutover report --rebuild ...

Every other flag (--report-path, --db-url, --json, --lock-timeout, ...) is passed through.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def _into_the_project_environment() -> None:
    """The runbook says ``python scripts/cutover_patient_tenant.py``: with the machine's python (no
    psycopg) re-run this script with the project's .venv interpreter, which scripts/bootstrap.sh made."""
    python = VENV / "bin" / "python"
    again = os.environ.pop("CUTOVER_REEXEC", None) == "1"  # not inherited by what this process starts
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if python.exists() and not again:
        os.environ["CUTOVER_REEXEC"] = "1"
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])
    try:
        import psycopg  # noqa: F401  (only to know whether this interpreter can run the cutover)
    except ImportError:
        print(f"cutover_patient_tenant.py: error: this python ({sys.executable}) lacks the project's dependencies "
              f"and {python} does not exist; run scripts/bootstrap.sh once, then run this command again",
              file=sys.stderr)
        raise SystemExit(2) from None  # ExitCode.SETUP: the project cannot be imported here to name it


if __name__ == "__main__":
    _into_the_project_environment()

sys.path.insert(0, str(ROOT))

from cutover.cli import main  # noqa: E402  (after the interpreter is settled)
from cutover.core.exit_codes import ExitCode  # noqa: E402

MODES = {"--execute": "execute", "--sweep": "sweep", "--reverse": "reverse", "--rebuild-report": "report"}


def translate(argv: list[str]) -> list[str]:
    """Runbook flags to ``cutover`` arguments; exactly one mode, ``--dry-run`` alone means pre-flight."""
    modes = [a for a in argv if a in MODES]
    if len(modes) > 1:
        return ["--usage-error", f"pass one of {', '.join(MODES)}, not {' and '.join(modes)}"]
    rest = [a for a in argv if a not in MODES]
    if not modes:
        if "--dry-run" in rest:
            return ["dry-run", *[a for a in rest if a != "--dry-run"]]
        return rest or ["--help"]
    command = MODES[modes[0]]
    if command == "report":
        rest = ["--rebuild", *rest]
    return [command, *rest]


if __name__ == "__main__":
    args = translate(sys.argv[1:])
    if args and args[0] == "--usage-error":
        print(f"cutover_patient_tenant.py: error: {args[1]}", file=sys.stderr)
        raise SystemExit(ExitCode.COMMAND_USAGE)
    raise SystemExit(main(args))
