"""How good is the go/no-go's forecast? Rehearse at one scale, forecast the next, measure the next.

For each scale in turn (default 1, 20, 100) the reference data is loaded into a template database and
cloned: the clone is executed with the `cutover execute` CLI (its report, the WAL it wrote, the
writers blocked), Set B is run on it (`pytest -m setB --db-url`), and the reverse on a second clone of
the executed database is timed. Each scale's measurements are the basis that forecasts the next scale
from its dry-run counts, exactly as `pytest -m prereq` does (cutover/suite/forecast.py); the table
prints forecast beside measured, with their ratio. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_forecast.py [--scales 1,20,100] [--seed 20260430]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from cutover.core import db
from cutover.core.options import DEFAULTS, resolve
from cutover.core.plan import Plan, load_plan
from cutover.reference import preflight
from cutover.sandbox import backends, snapshot
from cutover.suite import forecast

ROOT = Path(__file__).resolve().parent.parent
SLOT = 10 ** 9  # the benchmark compares figures, not slots


def _cli(url: str, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    env.update(DATABASE_URL=url, CUTOVER_ACTOR="benchmark")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cutover.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cutover {args[0]} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.monotonic() - started


def _wal(url: str) -> str:
    with db.connection(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return str(row[0]) if row else "0/0"


def _wal_bytes(url: str, since: str) -> int:
    with db.connection(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", (since,)).fetchone()
    return int(row[0]) if row else 0


def _set_b(url: str, report: Path) -> float:
    """Set B's checks' own time (their tests' durations, as the rehearsal's basis sums them), not pytest's start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_") and k != "DATABASE_URL"}
    with tempfile.TemporaryDirectory() as artifacts:
        junit = Path(artifacts) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-m", "setB", f"--db-url={url}", f"--report-path={report}",
                        f"--artifacts-dir={artifacts}", f"--junitxml={junit}", "-q", "-p", "no:randomly"], env=env,
                       cwd=ROOT, capture_output=True, check=False)
        return sum(float(case.get("time") or 0) for case in ElementTree.parse(junit).iter("testcase"))


def measure(admin: str, template: str, plan: Plan) -> tuple[forecast.Basis, dict[str, Any]]:
    """Execute, Set B and reverse on clones of ``template``: the basis, and the measured figures."""
    name = f"{template}_x"
    clone = db.create_database(admin, name, template=template)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.json"
            lsn = _wal(clone)
            execute_s = _cli(clone, "execute", "--operator-confirmed", "--report-path", str(path),
                             "--statement-timeout", "60min")
            wal = _wal_bytes(clone, lsn)
            report = json.loads(path.read_text())
            setb_s = _set_b(clone, path)
            back = db.create_database(admin, f"{template}_r", template=name)
            try:
                reverse_s = _cli(back, "reverse", "--operator-confirmed", "--report-path", str(path),
                                 "--statement-timeout", "60min")
            finally:
                db.drop_database(admin, f"{template}_r")
    finally:
        db.drop_database(admin, name)
    found = forecast.basis(report, plan, wal_bytes=wal, setb_s=setb_s, reverse_s=reverse_s, restore_s=None,
                           durable=False)
    return found, {"execute": execute_s, "writers-blocked": report.get("writers_blocked_s"), "wal": wal,
                   "setb": setb_s, "reverse": reverse_s, "rows": sum(report["moved"].values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", default="1,20,100",
                        help="comma-separated scales, each forecast from the one before")
    parser.add_argument("--seed", type=int, default=DEFAULTS["snapshot_seed"])
    args = parser.parse_args()
    settings = resolve({"sandbox": "local"}, {})
    plan = load_plan(settings.plan_path)
    info = backends.start(backends.SandboxSpec.of(settings))
    rows: list[str] = []
    previous: forecast.Basis | None = None
    previous_scale = 0.0
    try:
        for scale in (float(s) for s in args.scales.split(",")):
            template = f"fc_s{str(scale).replace('.', '_')}"
            url = db.create_database(info.admin_url, template)
            snapshot.seed_database(url, plan, scale, args.seed)
            with db.connection(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
            with db.connection(url, read_only=True) as conn:
                planned = preflight.run(conn, plan).planned
            basis, measured = measure(info.admin_url, template, plan)
            print(f"scale {scale:g}: {measured['rows']:,} rows moved; execute {measured['execute']:.2f} s, Set B "
                  f"{measured['setb']:.2f} s, reverse {measured['reverse']:.2f} s", flush=True)
            if previous is not None:
                lines = {ln.item: ln for ln in forecast.forecast(previous, planned, execute_slot=SLOT, setb_slot=SLOT,
                                                                 rollback_bound=SLOT, rollback_fixed=0.0)}
                for item in ("execute", "writers-blocked", "setb", "reverse"):
                    want, got = lines[item].seconds, measured[item]
                    if want is not None and got:
                        rows.append(f"{previous_scale:>6g} -> {scale:<6g} {item:<16} forecast {want:9.2f} s  "
                                    f"measured {float(got):9.2f} s  ratio {want / float(got):5.2f}")
                wal = (previous.wal_bytes or 0) * sum(planned.values()) / max(previous.total, 1)
                rows.append(f"{previous_scale:>6g} -> {scale:<6g} {'wal':<16} forecast {wal / 1e6:9.1f} MB "
                            f"measured {measured['wal'] / 1e6:9.1f} MB ratio {wal / max(measured['wal'], 1):5.2f}")
            previous, previous_scale = basis, scale
            db.drop_database(info.admin_url, template)
    finally:
        backends.stop(info)
    print("\nfrom -> to     item             forecast           measured           forecast/measured")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
