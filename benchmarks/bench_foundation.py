"""Foundation figures: sandbox start/stop and restore on local and docker, Docker detection, snapshot
make/restore, restore vs gunzip | psql; and per PostgreSQL major (15, 18) and backend side by side:
sandbox start, restore, and the whole rehearsal's wall time.

Prints figures; asserts nothing (machines here are shared and noisy). Restore speed is reported as a
ratio against plain ``gunzip -c FILE | psql`` of the same file, measured in the same run.

    .venv/bin/python benchmarks/bench_foundation.py [--scales 1,10] [--repeat 3] [--majors 15,18] [--no-rehearsal]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from cutover.core import db
from cutover.core.errors import SetupError
from cutover.core.options import resolve
from cutover.core.plan import Plan, load_plan
from cutover.sandbox import backends, snapshot
from cutover.sandbox.pgbin import ClientTools
from cutover.sandbox.snapshot import ensure_roles


def timed(fn: object, *args: object, **kwargs: object) -> tuple[float, object]:
    started = time.monotonic()
    result = fn(*args, **kwargs)  # type: ignore[operator]
    return time.monotonic() - started, result


def gunzip_psql(path: Path, url: str) -> float:
    argv, env = ClientTools().command("psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null")
    started = time.monotonic()
    subprocess.run(f"gunzip -c {shlex.quote(str(path))} | {shlex.join(argv)}",
                   shell=True, check=True, env=env, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def docker_restores(plan: Plan, repeat: int) -> None:
    """The default snapshot restored through the container's own psql, beside the same on a local cluster."""
    figures: dict[str, list[float]] = {}
    for backend in ("local", "docker"):
        info = backends.start(backends.SandboxSpec.of(resolve({"sandbox": backend}, {})))
        try:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "s1.sql.gz"
                snapshot.make(out, plan, info.admin_url, 1, 1, tools=info.tools())
                for _ in range(repeat):
                    url = db.create_database(info.admin_url, f"bench_{uuid.uuid4().hex[:8]}")
                    with db.connection(url, autocommit=True) as conn:
                        ensure_roles(conn, plan)
                    result = snapshot.restore(out, url, plan, tools=info.tools())
                    figures.setdefault(backend, []).append(result.total_seconds)
                    db.drop_database(info.admin_url, db.database_name(url))
        finally:
            backends.stop(info)
    print("restore of a scale-1 snapshot (whole restore, client tools on the host for local, inside the "
          "container for docker): " + "; ".join(f"{b} median {statistics.median(v):.2f} s" for b, v in figures.items()))


ROOT = Path(__file__).resolve().parent.parent


def rehearsal_seconds(backend: str, major: int) -> tuple[float, int]:
    """The README's main job on this backend and major (CI's labelled answers), timed from outside."""
    argv = [sys.executable, "-m", "pytest", "-m", "setA", "-q", "-p", "no:randomly", f"--sandbox={backend}",
            f"--pg-major={major}", f"--answers={ROOT / 'ci' / 'answers-ci.yaml'}"]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    return time.monotonic() - started, done.returncode


def per_major(plan: Plan, majors: list[int], backend_names: list[str], repeat: int, rehearse: bool) -> None:
    """Start, restore and whole-rehearsal wall time per (major, backend), in one table."""
    print(f"{'major':>5} {'backend':>8} {'start s':>8} {'restore s':>10} {'rehearsal s':>12}  note")
    for major in majors:
        for backend in backend_names:
            spec = backends.SandboxSpec.of(resolve({"sandbox": backend, "pg_major": major}, {}))
            try:
                backends.stop(backends.start(spec))  # a first docker start may pull or build: not a start figure
                starts = []
                for _ in range(repeat):
                    seconds, info = timed(backends.start, spec)
                    starts.append(seconds)
                    backends.stop(info)  # type: ignore[arg-type]
                info = backends.start(spec)
                try:
                    with tempfile.TemporaryDirectory() as tmp:
                        out = Path(tmp) / "s1.sql.gz"
                        snapshot.make(out, plan, info.admin_url, 1, 1, tools=info.tools())
                        url = db.create_database(info.admin_url, f"bench_{uuid.uuid4().hex[:8]}")
                        restore = snapshot.restore(out, url, plan, tools=info.tools()).total_seconds
                        db.drop_database(info.admin_url, db.database_name(url))
                    version = info.version
                finally:
                    backends.stop(info)
            except SetupError as exc:
                print(f"{major:>5} {backend:>8} {'-':>8} {'-':>10} {'-':>12}  not measured: {str(exc)[:100]}")
                continue
            whole, code = rehearsal_seconds(backend, major) if rehearse else (float("nan"), 0)
            note = f"PostgreSQL {version}" + (f"; rehearsal exit {code}" if code else "")
            print(f"{major:>5} {backend:>8} {statistics.median(starts):>8.2f} {restore:>10.2f} {whole:>12.1f}  {note}")
    print("start s = median sandbox start; restore s = whole restore of a scale-1 snapshot made on that server; "
          "rehearsal s = `pytest -m setA --sandbox=B --pg-major=N` wall time (default snapshot, CI's answers).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", default="1,10", help="comma-separated snapshot scales (default 1,10)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions for the sandbox start figure")
    parser.add_argument("--majors", default="15,18", help="PostgreSQL majors for the per-major table (default 15,18)")
    parser.add_argument("--no-rehearsal", action="store_true", help="leave the whole-rehearsal column out")
    parser.add_argument("--majors-only", action="store_true", help="print only the per-major table")
    args = parser.parse_args()
    settings = resolve({"sandbox": "local"}, {})
    plan = load_plan(settings.plan_path)

    detect, problem = timed(backends.docker_engine_problem)
    print(f"docker engine detection: {detect:.2f} s ({'engine answered' if problem is None else 'no engine'})")
    backend_names = ["local"] + (["docker"] if problem is None else [])
    per_major(plan, [int(m) for m in args.majors.split(",")], backend_names, args.repeat, not args.no_rehearsal)
    if args.majors_only:
        return
    for backend in backend_names:
        spec = backends.SandboxSpec.of(resolve({"sandbox": backend}, {}))
        if backend == "docker":  # the first start may pull or build the image: not a start figure
            backends.stop(backends.start(spec, log=print))
        starts, stops = [], []
        for _ in range(args.repeat):
            seconds, info = timed(backends.start, spec)
            starts.append(seconds)
            stops.append(timed(backends.stop, info)[0])
        how = "initdb + pg_ctl" if backend == "local" else "container to first TCP login"
        print(f"sandbox start ({backend}, {how}): median {statistics.median(starts):.2f} s "
              f"over {args.repeat}; stop median {statistics.median(stops):.2f} s")
    if problem is not None:
        print(f"docker: not measured ({problem})")
    else:
        docker_restores(plan, args.repeat)

    info = backends.start(backends.SandboxSpec.of(settings))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{'scale':>6} {'rows':>10} {'make s':>8} {'restore s':>10} {'load s':>7} "
                  f"{'gunzip|psql s':>14} {'ratio':>6}")
            for scale in (float(s) for s in args.scales.split(",")):
                out = Path(tmp) / f"s{scale}.sql.gz"
                make_s, manifest = timed(snapshot.make, out, plan, info.admin_url, scale, 1)
                restore_url = db.create_database(info.admin_url, f"bench_{uuid.uuid4().hex[:8]}")
                result = snapshot.restore(out, restore_url, plan)
                baseline_url = db.create_database(info.admin_url, f"bench_{uuid.uuid4().hex[:8]}")
                with db.connection(baseline_url, autocommit=True) as conn:
                    ensure_roles(conn, plan)
                baseline_s = gunzip_psql(out, baseline_url)
                rows = manifest["total_rows"] if isinstance(manifest, dict) else 0
                print(f"{scale:>6g} {rows:>10,} {make_s:>8.2f} {result.total_seconds:>10.2f} {result.seconds:>7.2f} "
                      f"{baseline_s:>14.2f} {result.total_seconds / baseline_s:>6.2f}")
                for url in (restore_url, baseline_url):
                    db.drop_database(info.admin_url, db.database_name(url))
    finally:
        backends.stop(info)
    print("restore s = whole restore (validation read + empty-target check + load in one transaction + grants"
          " + ANALYZE); load s = the load alone; ratio = restore s / (gunzip | psql) on the same file.")


if __name__ == "__main__":
    main()
