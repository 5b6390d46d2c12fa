"""The ``cutover`` command: the cutover module (dry-run, execute, sweep, reverse, report) and snapshots.

Exit codes scripts can rely on: 0 done, 2 usage or setup error (one line on stderr, nothing written),
130 interrupted; the cutover commands add theirs (see :mod:`cutover.commands`). Progress goes to
stderr so stdout stays clean for pipes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cutover.core import evidence
from cutover.core.errors import EXIT_USAGE, CutoverError
from cutover.core.options import resolve
from cutover.core.plan import load_plan
from cutover.core.redact import redact
from cutover.reference import commands as cutover_commands
from cutover.sandbox import backends as sandbox
from cutover.sandbox import snapshot

EXIT_INTERRUPTED = 130


def _progress(line: str) -> None:
    print(redact(line), file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message, like every other error of this tool."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}; see {self.prog} --help", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cutover", description="Phase 2a patient tenant cutover suite tooling.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    cutover_commands.add_parsers(commands, _Parser)
    snap = commands.add_parser("snapshot", help="make or restore a pre-cutover snapshot")
    snap_cmds = snap.add_subparsers(dest="snapshot_command", required=True, parser_class=_Parser)

    make = snap_cmds.add_parser("make", help="write the deterministic synthetic pre-cutover snapshot")
    make.add_argument("--out", required=True, type=Path, help="file to write (plus FILE.manifest.json)")
    make.add_argument("--scale", type=float, default=1.0, help="1 is about 50k rows, 100 about 5M (default 1)")
    make.add_argument("--seed", type=int, default=20260430, help="random seed (default 20260430)")
    make.add_argument("--format", choices=snapshot.FORMATS, default="plain",
                      help="plain: gzip'd SQL as the runbook makes it; custom: for pg_restore -j")
    make.add_argument("--db-url", default=None,
                      help="build on this server (a temporary database is created and dropped); "
                           "default: a throwaway local sandbox")
    make.add_argument("--plan", default=None, help="plan file (default fixtures/plan.toml)")

    rest = snap_cmds.add_parser("restore", help="restore a snapshot into an empty database")
    rest.add_argument("file", type=Path, help="snapshot: .sql.gz / .sql plain, or pg_dump custom")
    rest.add_argument("--db-url", default=None, help="empty target database (or CUTOVER_DB_URL / DATABASE_URL)")
    rest.add_argument("--jobs", type=int, default=1, help="parallel pg_restore jobs for custom archives")
    rest.add_argument("--plan", default=None, help="plan file (default fixtures/plan.toml)")

    ev = commands.add_parser("evidence", help="check a run's evidence bundle (evidence.json)")
    ev_cmds = ev.add_subparsers(dest="evidence_command", required=True, parser_class=_Parser)
    verify = ev_cmds.add_parser("verify", help="recompute every artifact's SHA-256: 0 all match, 1 otherwise")
    verify.add_argument("dir", type=Path, help="a run's artifacts directory, e.g. artifacts/latest")
    return parser


def _evidence_verify(args: argparse.Namespace) -> int:
    """Exit 0 when every artifact matches its recorded hash, 1 naming each one that differs or is missing."""
    found = evidence.verify(args.dir)
    for problem in found.problems:
        print(f"MISMATCH {problem}")
    if found.ok:
        print(f"EVIDENCE VERIFIED: {len(found.checked)} files match {args.dir / evidence.FILE} "
              f"({found.body.get('verdict')})")
        return 0
    print(f"EVIDENCE DOES NOT VERIFY: {len(found.problems)} of {len(found.problems) + len(found.checked)} "
          f"differ or are missing in {args.dir}")
    return 1


def _snapshot_make(args: argparse.Namespace) -> int:
    settings = resolve({"db_url": args.db_url, "plan": args.plan}, {}, {})
    plan = load_plan(settings.plan_path)
    snapshot.check_make_args(args.out, args.scale, args.format)
    if args.db_url is not None:
        snapshot.make(args.out, plan, args.db_url, args.scale, args.seed, args.format, _progress)
        return 0
    local = resolve({"plan": args.plan, "sandbox": "local"}, {})
    info = sandbox.start(sandbox.SandboxSpec.of(local), log=_progress)
    try:
        snapshot.make(args.out, plan, info.admin_url, args.scale, args.seed, args.format, _progress)
    finally:
        sandbox.stop(info)
    return 0


def _snapshot_restore(args: argparse.Namespace) -> int:
    settings = resolve({"db_url": args.db_url, "plan": args.plan}, {})
    if settings.db_url is None:
        raise CutoverError("snapshot restore needs a target: pass --db-url or set CUTOVER_DB_URL / DATABASE_URL")
    plan = load_plan(settings.plan_path)
    result = snapshot.restore(args.file, settings.db_url, plan, jobs=args.jobs, log=_progress)
    print(f"restore wall-clock: {result.total_seconds:.2f} s ({result.rows} rows, {result.format}; "
          f"load {result.seconds:.2f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "evidence":
            return _evidence_verify(args)
        if args.command != "snapshot":
            return int(args.handler(args))
        if args.snapshot_command == "make":
            return _snapshot_make(args)
        return _snapshot_restore(args)
    except CutoverError as exc:
        print(f"cutover: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cutover: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
