"""The whole `cutover execute` command, as an operator runs it, against the bare UPDATEs of the same rows.

For each scale the reference data is loaded once into a template database, then cloned: one clone
gets only the plan's set-based UPDATE statements in one transaction (the floor), the other the
`cutover execute` CLI in its own process (all 14 steps, verification, audit events, report written
to disk). The ratio is execute / bare, both measured in the same run on the same data. Also
printed: per-step times, how long writers were blocked (locks taken to COMMIT), the CLI's peak RSS,
and with --aftercare the `sweep` (of stragglers put back on the source), `reverse --dry-run` and `reverse`
commands, `reverse` beside the bare reverse UPDATEs (the same rows moved back, on a copy of the same
cut-over database: its floor) and their ratio.
With --repeat N the two alternate which runs first, and so do the reverse and its floor (N pairs,
each on its own copy of the cut-over database, the median of their ratios); each starts on flushed
buffers. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_cutover.py [--scales 20,100] [--repeat 1] [--aftercare]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from psycopg import sql

from cutover.core import db
from cutover.core.options import DEFAULTS, resolve
from cutover.core.plan import Plan, load_plan
from cutover.core.row_keys import key_equal, key_order, key_values
from cutover.reference import engine, ownership
from cutover.sandbox import backends, snapshot

ROOT = Path(__file__).resolve().parent.parent


def bare_updates(url: str, plan: Plan) -> tuple[float, int]:
    started = time.monotonic()
    moved = 0
    with db.connection(url) as conn:
        for group in plan.move_steps:
            for name in group:
                moved += conn.execute(ownership.move_owned(plan, plan.table(name), plan.source, plan.target)).rowcount
        conn.commit()
    return time.monotonic() - started, moved


def bare_reverse(url: str, plan: Plan, report_path: Path) -> tuple[float, int]:
    """The floor of the reverse: plain ``UPDATE ... FROM keys`` moving back exactly the rows the report
    lists (allow-list and sweeps), table by table in the plan's order, in one transaction.

    The keys are copied into typed temp tables first and ANALYZEd, untimed: only the UPDATEs and the
    COMMIT count, as the bare UPDATEs of the execute. Nothing else: no check, lock, listing,
    verification or audit. Written as a DBA would: before each UPDATE, ``SET LOCAL work_mem`` large
    enough for the hash join on the keys not to batch to disk (the reverse's own sizing,
    ``size_hash_for``, capped at 256 MB). At the server's 4 MB default the join batched, every row of
    both sides through temp files: 202 s at scale 100 against 67 s for the forward bare UPDATEs.
    """
    report = json.loads(report_path.read_text())
    listed: dict[str, list[Any]] = {t: list(keys) for t, keys in report["allow_list"].items()}
    for swept in report.get("sweeps") or []:
        for table, keys in (swept.get("ids") or {}).items():
            listed.setdefault(table, []).extend(keys)
    order = [name for group in plan.move_steps for name in group if name in listed]
    with db.connection(url) as conn:
        for name in order:
            rule = plan.table(name)
            keys = sql.Identifier(f"bare_keys_{name}")
            conn.execute(sql.SQL("CREATE TEMP TABLE {k} AS SELECT {c} FROM {t} LIMIT 0").format(
                k=keys, c=key_order(rule.key), t=ownership.ident(name)))
            with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(keys)) as copy:
                for key in listed[name]:
                    copy.write_row(key_values(rule.key, key))
            conn.execute(sql.SQL("ANALYZE {}").format(keys))
        conn.commit()
        started = time.monotonic()
        moved = 0
        for name in order:
            rule = plan.table(name)
            engine.size_hash_for(conn, f"bare_keys_{name}", len(rule.key))
            query = sql.SQL("UPDATE {t} r SET {c} = {src} FROM {k} k WHERE {join} AND r.{c} = {tgt}").format(
                t=ownership.ident(name), c=ownership.tenant_of(plan), src=sql.Literal(plan.source),
                k=sql.Identifier(f"bare_keys_{name}"), join=key_equal(rule.key, "r", "k"),
                tgt=sql.Literal(plan.target))
            moved += conn.execute(query).rowcount
        conn.commit()
    return time.monotonic() - started, moved


def flushed(url: str) -> None:
    """Start the next run from flushed buffers: the run before leaves dirty pages the kernel writes back."""
    with db.connection(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    os.sync()


def cli(url: str, *args: str) -> tuple[float, int, dict[str, Any]]:
    """Run ``cutover ARGS`` in its own process; wall seconds, peak RSS (MB) and its --json result.

    The peak is the child's own VmHWM, polled: ``ru_maxrss`` of a child on Linux starts from the
    parent's high-water mark (kept across fork and exec), and this parent has just generated the data.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    env.update(DATABASE_URL=url, CUTOVER_ACTOR="benchmark")
    started = time.monotonic()
    peak = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "cutover.cli", *args, "--json"], stdout=out, stderr=err,
                                env=env, cwd=ROOT)
        while proc.poll() is None:
            peak = max(peak, _hwm_kb(proc.pid))
            time.sleep(0.02)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"cutover {args[0]} exited {proc.returncode}: {err.read().decode()[-2000:]}")
        result = json.loads(out.read().decode().strip().splitlines()[-1])
        result["_progress"] = err.read().decode().splitlines()
    return seconds, peak // 1024, result


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def reverse_pairs(admin_url: str, plan: Plan, name: str, report: Path, repeat: int) -> str:
    """The bare reverse UPDATEs and ``cutover reverse``, each on its own copy of the cut-over database
    ``name``, ``repeat`` pairs alternating which goes first, each from flushed buffers; the median of
    the pairs' ratios. Each reverse gets its own copy of the report (it writes its record there)."""
    ratios: list[float] = []
    times: list[tuple[float, float]] = []
    rss = 0
    for i in range(repeat):
        seconds: dict[str, float] = {}
        for kind in ("bare", "cutover") if i % 2 == 0 else ("cutover", "bare"):
            copy_name = f"{name}_{kind}_reverse"
            copy = db.create_database(admin_url, copy_name, template=name)
            flushed(copy)
            if kind == "bare":
                seconds[kind], b_moved = bare_reverse(copy, plan, report)
                print(f"  bare reverse UPDATEs {seconds[kind]:5.2f} s  {b_moved} rows", flush=True)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    own = Path(tmp) / "report.json"
                    own.write_bytes(report.read_bytes())
                    seconds[kind], r_rss, res = cli(copy, "reverse", "--operator-confirmed", "--report-path",
                                                    str(own), "--statement-timeout", "60min")
                rss = max(rss, r_rss)
                print(f"  cutover reverse   {seconds[kind]:8.2f} s  peak RSS {r_rss} MB  "
                      f"({sum(res['moved'].values())} rows back)", flush=True)
                for step in res["_progress"]:
                    if ": done in" in step:
                        print(f"      {step}", flush=True)
            db.drop_database(admin_url, copy_name)
        times.append((seconds["cutover"], seconds["bare"]))
        ratios.append(seconds["cutover"] / seconds["bare"])
        print(f"  pair {i + 1}: reverse / bare reverse {ratios[-1]:.2f}", flush=True)
    r_sec = statistics.median(t[0] for t in times)
    b_sec = statistics.median(t[1] for t in times)
    return (f"; reverse {r_sec:.2f} s, bare reverse {b_sec:.2f} s (medians), ratio {statistics.median(ratios):.2f} "
            f"(median of {repeat} pairs: {' '.join(f'{r:.2f}' for r in ratios)}), peak RSS {rss} MB")


def put_back_stragglers(url: str, plan: Plan, n: int) -> int:
    """Late writes for the sweep: ``n`` rows of the last-moved table set back on the source."""
    rule = plan.table(plan.move_steps[-1][0])
    with db.connection(url) as conn:
        query = sql.SQL("UPDATE {t} SET {c} = {src} WHERE ({k}) IN (SELECT {k} FROM {t} WHERE {w} LIMIT {n})").format(
            t=ownership.ident(rule.name), c=ownership.tenant_of(plan), src=sql.Literal(plan.source),
            k=key_order(rule.key),
            w=ownership.owned_on(plan, rule, plan.target), n=sql.Literal(n))
        moved = conn.execute(query).rowcount
        conn.commit()
    return int(moved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", default="20,100", help="comma-separated scales (default 20,100)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scale (median reported)")
    parser.add_argument("--seed", type=int, default=DEFAULTS["snapshot_seed"])
    parser.add_argument("--aftercare", action="store_true", help="also time sweep and reverse after the execute")
    args = parser.parse_args()
    settings = resolve({"sandbox": "local"}, {})
    plan = load_plan(settings.plan_path)
    info = backends.start(backends.SandboxSpec.of(settings))
    summary: list[str] = []
    try:
        for scale in (float(s) for s in args.scales.split(",")):
            template = f"bench_s{str(scale).replace('.', '_')}"
            t0 = time.monotonic()
            url = db.create_database(info.admin_url, template)
            snapshot.seed_database(url, plan, scale, args.seed)
            with db.connection(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
            print(f"scale {scale:g}: data loaded in {time.monotonic() - t0:.0f} s", flush=True)
            ex: list[float] = []
            bare: list[float] = []
            reverse_line = ""
            for i in range(args.repeat):
                # Alternate which goes first, and start each from flushed buffers: the run before
                # leaves ~1 GB of dirty pages per scale 100 that the kernel writes back during the next.
                for kind in ("bare", "execute") if i % 2 == 0 else ("execute", "bare"):
                    name = f"{template}_{kind}_{i}"
                    clone = db.create_database(info.admin_url, name, template=template)
                    flushed(clone)
                    if kind == "bare":
                        seconds, moved = bare_updates(clone, plan)
                        bare.append(seconds)
                        print(f"  bare UPDATEs      {seconds:8.2f} s  {moved} rows", flush=True)
                    else:
                        with tempfile.TemporaryDirectory() as tmp:
                            path = Path(tmp) / "report.json"
                            seconds, rss, _ = cli(clone, "execute", "--operator-confirmed", "--report-path",
                                                  str(path), "--statement-timeout", "60min")
                            report = json.loads(path.read_text())
                            ex.append(seconds)
                            print(f"  cutover execute   {seconds:8.2f} s  peak RSS {rss} MB  writers blocked "
                                  f"{report.get('writers_blocked_s', float('nan')):.2f} s  report "
                                  f"{path.stat().st_size / 1e6:.0f} MB", flush=True)
                            for step in report["steps"]:
                                print(f"      step {step['step']:2d} {step['seconds']:7.2f} s  {step['name']}",
                                      flush=True)
                            if args.aftercare and i == 0:
                                put = put_back_stragglers(clone, plan, 10_000)
                                s_sec, s_rss, _ = cli(clone, "sweep", "--report-path", str(path))
                                print(f"  cutover sweep     {s_sec:8.2f} s  peak RSS {s_rss} MB  ({put} stragglers)",
                                      flush=True)
                                d_sec, d_rss, _ = cli(clone, "reverse", "--dry-run", "--report-path", str(path),
                                                      "--statement-timeout", "60min")
                                print(f"  reverse --dry-run {d_sec:8.2f} s  peak RSS {d_rss} MB", flush=True)
                                reverse_line = reverse_pairs(info.admin_url, plan, name, path, args.repeat)
                    db.drop_database(info.admin_url, name)
            e, b = statistics.median(ex), statistics.median(bare)
            line = f"scale {scale:>5g}: execute {e:7.2f} s, bare {b:7.2f} s, ratio {e / b:.2f}{reverse_line}"
            summary.append(line)
            print(line, flush=True)
            db.drop_database(info.admin_url, template)
    finally:
        backends.stop(info)
    print("\n".join(summary))


if __name__ == "__main__":
    main()
