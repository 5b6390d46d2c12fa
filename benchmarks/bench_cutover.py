"""Cutover execute time against the bare set-based UPDATEs of the same rows, same data, same run.

For each scale the reference data is loaded once into a template database, then cloned twice: one
clone gets ``cutover execute`` (all 14 steps, verification, audit events, allow-list spooled for the
report), the other only the plan's UPDATE statements in one transaction. The ratio is
execute / bare. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_cutover.py [--scales 1,10,100] [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cutover.core import db
from cutover.core.options import resolve
from cutover.core.plan import Plan, load_plan
from cutover.reference import execute as engine
from cutover.reference import ownership as rules
from cutover.sandbox import backends as sandbox
from cutover.sandbox import snapshot
from cutover.sandbox.snapshot import ensure_roles, grant_app_role


def bare_updates(url: str, plan: Plan) -> tuple[float, int]:
    started = time.monotonic()
    moved = 0
    with db.connection(url) as conn:
        for rule in plan.moving:
            moved += conn.execute(rules.move_owned(plan, rule, plan.source, plan.target)).rowcount
        conn.commit()
    return time.monotonic() - started, moved


def cutover_execute(url: str, plan: Plan, spool: Path) -> tuple[float, int]:
    started = time.monotonic()
    report, _ = engine.execute(url, plan, "benchmark", engine.Timeouts(statement="30min"), spool=spool)
    seconds = time.monotonic() - started
    if VERBOSE:
        for step in report["steps"]:
            print(f"        step {step['step']:2d} {step['seconds']:7.2f} s  {step['name']}", flush=True)
    return seconds, sum(report["moved"].values())


VERBOSE = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", default="1,10,100", help="comma-separated scales (default 1,10,100)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scale (median reported)")
    parser.add_argument("--seed", type=int, default=20260430)
    parser.add_argument("--steps", action="store_true", help="also print each execute step's time")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.steps
    settings = resolve({"sandbox": "local"}, {})
    plan = load_plan(settings.plan_path)
    info = sandbox.start(sandbox.SandboxSpec.of(settings))
    try:
        print(f"{'scale':>6} {'rows moved':>11} {'execute s':>10} {'bare s':>8} {'ratio':>6}", flush=True)
        for scale in (float(s) for s in args.scales.split(",")):
            template = f"bench_s{str(scale).replace('.', '_')}"
            url = db.create_database(info.admin_url, template)
            with db.connection(url, autocommit=True) as conn:
                ensure_roles(conn, plan)
            snapshot.load_reference(url, plan, scale, args.seed)
            with db.connection(url, autocommit=True) as conn:
                grant_app_role(conn, plan)
                conn.execute("VACUUM ANALYZE")
            ex: list[float] = []
            bare: list[float] = []
            moved = 0
            for i in range(args.repeat):
                for kind in ("bare", "execute"):
                    name = f"{template}_{kind}_{i}"
                    clone = db.create_database(info.admin_url, name, template=template)
                    with db.connection(clone, autocommit=True) as conn:
                        conn.execute("CHECKPOINT")
                    with tempfile.TemporaryDirectory() as spool:
                        seconds, moved = (bare_updates(clone, plan) if kind == "bare"
                                          else cutover_execute(clone, plan, Path(spool)))
                    (bare if kind == "bare" else ex).append(seconds)
                    db.drop_database(info.admin_url, name)
            e, b = statistics.median(ex), statistics.median(bare)
            print(f"{scale:>6g} {moved:>11} {e:>10.2f} {b:>8.2f} {e / b:>6.2f}", flush=True)
            db.drop_database(info.admin_url, template)
    finally:
        sandbox.stop(info)


if __name__ == "__main__":
    main()
