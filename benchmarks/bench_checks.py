"""Wall time of ``pytest -m setB`` and ``pytest -m setA`` (automated checks) on a cut-over database.

For each scale the reference data is loaded into a sandbox database and cut over with the cutover
command (its report written as an operator would), then each set is run as an operator runs it: a
pytest process against ``--db-url``, Set A with ``--report-path``. Besides the wall time, the time
of an empty pytest run (``--collect-only`` of the same set) is measured in the same run, so the
checks' own share is visible. Targets (issue 4): Set B under 10 s and Set A under 30 s at scale 100.
Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_checks.py [--scales 1,10,100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cutover.core import db
from cutover.core.options import DEFAULTS, resolve
from cutover.core.plan import load_plan
from cutover.sandbox import backends, snapshot

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return time.monotonic() - started, proc.returncode, lines[-1] if lines else ""



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", default="1,10,100", help="comma-separated scales (default 1,10,100)")
    parser.add_argument("--seed", type=int, default=DEFAULTS["snapshot_seed"])
    args = parser.parse_args()
    settings = resolve({"sandbox": "local"}, {})
    plan = load_plan(settings.plan_path)
    info = backends.start(backends.SandboxSpec.of(settings))
    env = {**os.environ, "CUTOVER_ACTOR": "benchmark"}
    env.pop("CUTOVER_DB_URL", None)
    env.pop("DATABASE_URL", None)
    try:
        print(f"{'scale':>6} {'set':>4} {'wall s':>7} {'startup s':>9} {'checks s':>8}  result", flush=True)
        for scale in (float(s) for s in args.scales.split(",")):
            name = f"bench_checks_s{str(scale).replace('.', '_')}"
            url = db.create_database(info.admin_url, name)
            try:
                snapshot.seed_database(url, plan, scale, args.seed)
                with tempfile.TemporaryDirectory() as tmp:
                    report = str(Path(tmp) / "report.json")
                    subprocess.run([str(BIN / "cutover"), "execute", "--db-url", url, "--operator-confirmed",
                                    "--report-path", report, "--statement-timeout", "30min"],
                                   env=env, check=True, capture_output=True)
                    with db.connection(url, autocommit=True) as conn:
                        conn.execute("VACUUM ANALYZE")
                    for marker, extra in (("setB", []), ("setA", [f"--report-path={report}"])):
                        base = [str(BIN / "pytest"), "-m", f"{marker} and sql", "--db-url", url, "-q",
                                "-p", "no:randomly", "-p", "no:cacheprovider", *extra]
                        startup, _, _ = timed([*base, "--collect-only"], env)
                        wall, code, last = timed(base, env)
                        result = last if code == 0 else f"exit {code}: {last}"
                        print(f"{scale:>6g} {marker[-1]:>4} {wall:>7.2f} {startup:>9.2f} {wall - startup:>8.2f}  "
                              f"{result}", flush=True)
            finally:
                db.drop_database(info.admin_url, name)
    finally:
        backends.stop(info)


if __name__ == "__main__":
    main()
