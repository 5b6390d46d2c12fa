"""What the rehearsal's content proof costs: A5-content's comparison and the rollback's, beside the execute.

For each scale the reference data is loaded into a template database (the restored snapshot), a clone
of it is executed with the `cutover execute` CLI, and then timed in this process, as the rehearsal
runs them: the comparison of every planned table of the cut-over clone with the template (the tenant
read as the source), and the exact comparison of a reversed clone with it. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_content.py [--scales 1,20,100]
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
from cutover.suite import content

ROOT = Path(__file__).resolve().parent.parent


def _cli(url: str, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    env.update(DATABASE_URL=url, CUTOVER_ACTOR="benchmark")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cutover.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cutover {args[0]} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", default="1,20,100", help="comma-separated scales")
    parser.add_argument("--seed", type=int, default=DEFAULTS["snapshot_seed"])
    args = parser.parse_args()
    settings = resolve({"sandbox": "local"}, {})
    plan = load_plan(settings.plan_path)
    info = backends.start(backends.SandboxSpec.of(settings))
    try:
        for scale in (float(s) for s in args.scales.split(",")):
            template = f"content_s{str(scale).replace('.', '_')}"
            url = db.create_database(info.admin_url, template)
            snapshot.seed_database(url, plan, scale, args.seed)
            with db.connection(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
            cut = db.create_database(info.admin_url, f"{template}_cut", template=template)
            with tempfile.TemporaryDirectory() as tmp:
                report = Path(tmp) / "report.json"
                execute_s = _cli(cut, "execute", "--operator-confirmed", "--report-path", str(report),
                                 "--statement-timeout", "60min")
                started = time.monotonic()
                found = content.compare(url, cut, plan, moved_back=True)
                compare_s = time.monotonic() - started
                back = db.create_database(info.admin_url, f"{template}_back", template=f"{template}_cut")
                reverse_s = _cli(back, "reverse", "--operator-confirmed", "--report-path", str(report),
                                 "--statement-timeout", "60min")
                started = time.monotonic()
                exact = content.compare(url, back, plan, moved_back=False)
                exact_s = time.monotonic() - started
            print(f"scale {scale:>5g}: {found.rows:>10,} rows; execute {execute_s:7.2f} s; A5-content compare "
                  f"{compare_s:6.2f} s ({compare_s / execute_s:.2f} of the execute, same={found.same}); reverse "
                  f"{reverse_s:7.2f} s; rollback compare {exact_s:6.2f} s (same={exact.same})", flush=True)
            for name in (f"{template}_back", f"{template}_cut", template):
                db.drop_database(info.admin_url, name)
    finally:
        backends.stop(info)


if __name__ == "__main__":
    main()
