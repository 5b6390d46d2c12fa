"""The ``cutover`` command: the cutover module (dry-run, execute, sweep, reverse, report) and snapshots.

Exit codes scripts can rely on are :class:`cutover.core.exit_codes.ExitCode` (the README's table): errors
are one line on stderr, never a traceback. Progress goes to stderr so stdout stays clean for pipes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cutover.core import db, evidence, live_schema, plan_draft, plan_upgrade
from cutover.core.errors import CutoverError, PlanError
from cutover.core.exit_codes import ExitCode
from cutover.core.options import DEFAULTS, resolve
from cutover.core.plan import DEFAULT_PLAN, PLAN_FORMAT, load_plan
from cutover.core.redact import redact
from cutover.reference import commands
from cutover.sandbox import backends, snapshot


def _progress(line: str) -> None:
    print(redact(line), file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message, like every other error of this tool."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(redact(f"{self.prog}: error: {message}; see {self.prog} --help"), file=sys.stderr)
        raise SystemExit(ExitCode.COMMAND_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cutover", description="Phase 2a patient tenant cutover suite tooling.")
    subcommands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parsers(subcommands, _Parser)
    _add_snapshot_parsers(subcommands)
    _add_evidence_parsers(subcommands)
    _add_plan_parsers(subcommands)
    return parser


def _add_snapshot_parsers(subcommands: Any) -> None:
    """``cutover snapshot make|restore``: the rehearsal's starting point, made or loaded."""
    snap = subcommands.add_parser("snapshot", help="make or restore a pre-cutover snapshot")
    snap_cmds = snap.add_subparsers(dest="snapshot_command", required=True, parser_class=_Parser)

    make = snap_cmds.add_parser("make", help="write the deterministic synthetic pre-cutover snapshot")
    make.add_argument("--out", required=True, type=Path, help="file to write (plus FILE.manifest.json)")
    make.add_argument("--scale", type=float, default=1.0, help="1 is about 50k rows, 100 about 5M (default 1)")
    make.add_argument("--seed", type=int, default=DEFAULTS["snapshot_seed"],
                      help=f"random seed (default {DEFAULTS['snapshot_seed']})")
    make.add_argument("--format", choices=snapshot.FORMATS, default="plain",
                      help="plain: gzip'd SQL as the runbook makes it; custom: for pg_restore -j")
    make.add_argument("--db-url", default=None,
                      help="build on this server (a temporary database is created and dropped); "
                           "default: a throwaway local sandbox")
    make.add_argument("--plan", default=None, help="plan file (default cutover/model/plan.toml)")
    make.add_argument("--sandbox", choices=("local", "docker", "auto"), default="local",
                      help="where the throwaway build server runs without --db-url (default local; docker runs "
                           "pg_dump inside the container, so no host PostgreSQL is needed)")
    make.set_defaults(handler=make_snapshot)

    rest = snap_cmds.add_parser("restore", help="restore a snapshot into an empty database")
    rest.add_argument("file", type=Path, help="snapshot: .sql.gz / .sql plain, or pg_dump custom")
    rest.add_argument("--db-url", default=None, help="empty target database (or CUTOVER_DB_URL / DATABASE_URL)")
    rest.add_argument("--jobs", type=int, default=1, help="parallel pg_restore jobs for custom archives")
    rest.add_argument("--plan", default=None, help="plan file (default cutover/model/plan.toml)")
    rest.set_defaults(handler=restore_snapshot)


def _add_evidence_parsers(subcommands: Any) -> None:
    """``cutover evidence verify``: an auditor's check that a run's bundle is what it says."""
    ev = subcommands.add_parser("evidence", help="check a run's evidence bundle (evidence.json)")
    ev_cmds = ev.add_subparsers(dest="evidence_command", required=True, parser_class=_Parser)
    verify = ev_cmds.add_parser("verify", help="recompute every artifact's SHA-256: 0 all match, 1 otherwise")
    verify.add_argument("dir", type=Path, help="a run's artifacts directory, e.g. artifacts/latest")
    verify.add_argument("--allowed-signers", default=None,
                        help="ssh-keygen allowed-signers file (or CUTOVER_ALLOWED_SIGNERS): the bundle must be "
                             "signed by one of its keys; names the signer")
    verify.set_defaults(handler=verify_evidence)


def _add_plan_parsers(subcommands: Any) -> None:
    """``cutover plan draft|check|upgrade``: the plan written, checked against a database, or brought up to date."""
    plan = subcommands.add_parser("plan", help="draft a plan from a live database, or check one against it")
    plan_cmds = plan.add_subparsers(dest="plan_command", required=True, parser_class=_Parser)
    draft = plan_cmds.add_parser("draft", help="write a draft plan from the live schema (read-only)")
    draft.add_argument("--db-url", default=None, help="the database to read (or CUTOVER_DB_URL / DATABASE_URL)")
    draft.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    draft.add_argument("--tenant-table", default=None, help="the tenants table (default the reference plan's)")
    draft.add_argument("--tenant-column", default=None, help="the tenant column (default the reference plan's)")
    draft.add_argument("--source", default=None, help="source tenant id (default the reference plan's)")
    draft.add_argument("--target", default=None, help="target tenant id (default the reference plan's)")
    draft.add_argument("--patient-table", default=None, help="the patient root table (default: guessed by name)")
    draft.add_argument("--version-table", default=None,
                       help="the table holding the schema's version (default: alembic_version or schema_migrations)")
    draft.add_argument("--version-column", default=None,
                       help="its column holding the version (default: the known one, or its only column)")
    draft.set_defaults(handler=draft_plan)
    check = plan_cmds.add_parser("check", help="list every difference between a plan and the live schema")
    check.add_argument("--db-url", default=None, help="the database to read (or CUTOVER_DB_URL / DATABASE_URL)")
    check.add_argument("--plan", default=None, help="plan file (default the reference plan)")
    check.set_defaults(handler=check_plan, plan_error=ExitCode.BAD_PLAN)
    upgrade = plan_cmds.add_parser("upgrade", help="show a plan of an earlier format in the current one; "
                                                   "--write writes it")
    upgrade.add_argument("--plan", default=None, help="plan file (default the reference plan)")
    upgrade.add_argument("--write", action="store_true", help="write the upgraded plan (default: only show the diff)")
    upgrade.set_defaults(handler=upgrade_plan, plan_error=ExitCode.BAD_PLAN)



def draft_plan(args: argparse.Namespace) -> int:
    """``cutover plan draft``: a first plan read from the live schema (read-only), so an operator starts from
    their tables rather than a blank file; written atomically, and only into a directory that exists."""
    settings = resolve({"db_url": args.db_url}, {})
    if settings.db_url is None:
        raise CutoverError("plan draft needs a database: pass --db-url or set CUTOVER_DB_URL / DATABASE_URL")
    if args.out is not None and not args.out.parent.is_dir():
        raise CutoverError(f"--out {args.out}: directory {args.out.parent} does not exist; create it or fix --out")
    reference = load_plan(DEFAULT_PLAN)
    options = plan_draft.DraftOptions(tenant_table=args.tenant_table or reference.tenant_table,
                                      tenant_column=args.tenant_column or reference.tenant_column,
                                      source=args.source or reference.source, target=args.target or reference.target,
                                      version_table=args.version_table, version_column=args.version_column,
                                      patient_table=args.patient_table,
                                      given=frozenset(k for k in ("source", "target") if getattr(args, k)))
    with db.connection(settings.db_url, read_only=True) as conn:
        text = plan_draft.draft(conn, options)
    if args.out is None:
        sys.stdout.write(text)
        return ExitCode.OK
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(text)
    tmp.replace(args.out)
    print(f"plan draft: wrote {args.out}; settle every '# REVIEW', then run 'cutover plan check --plan "
          f"{args.out}'", file=sys.stderr)
    return ExitCode.OK


def check_plan(args: argparse.Namespace) -> int:
    """``cutover plan check``: every difference between the plan and the live schema (read-only), exit 1 when
    there is one; a plan that does not load is BAD_PLAN (4), as operators' scripts already branch on."""
    settings = resolve({"db_url": args.db_url, "plan": args.plan}, {})
    if settings.db_url is None:
        raise CutoverError("plan check needs a database: pass --db-url or set CUTOVER_DB_URL / DATABASE_URL")
    plan = load_plan(settings.plan_path)
    with db.connection(settings.db_url, read_only=True) as conn:
        schema = live_schema.read(conn, plan)
        differences = (live_schema.compare(plan, schema) + live_schema.reference_differences(plan, schema)
                       + live_schema.materialized_view_differences(conn, plan)
                       + live_schema.trigger_differences(plan, live_schema.trigger_writes(conn, plan)))
        if not any(d.structural for d in differences):
            differences += live_schema.unclassified(conn, plan)
    for diff in differences:
        print(f"{diff.code}: {diff.message}")
    if differences:
        print(f"plan check: {len(differences)} differences between {settings.plan_path} and the database")
        return ExitCode.FAILED
    print(f"plan check: {settings.plan_path} and the database agree")
    return ExitCode.OK


def upgrade_plan(args: argparse.Namespace) -> int:
    """``cutover plan upgrade``: the diff to the current format on stdout; the file is written only with
    --write, so a plan under review is never changed by looking at it. No database."""
    path = resolve({"plan": args.plan}, {}).plan_path
    old, new = plan_upgrade.upgraded(path)
    if new == old:
        print(f"plan upgrade: {path} is already format {PLAN_FORMAT}; nothing to do", file=sys.stderr)
        return ExitCode.OK
    sys.stdout.write(plan_upgrade.diff(path, old, new))
    if args.write:
        plan_upgrade.write(path, new)
        print(f"plan upgrade: wrote {path} (format {PLAN_FORMAT})", file=sys.stderr)
    else:
        print(f"plan upgrade: nothing written; run again with --write to write {path}", file=sys.stderr)
    return ExitCode.OK


def verify_evidence(args: argparse.Namespace) -> int:
    """``cutover evidence verify``: exit 0 when every artifact matches its recorded hash (and, with allowed
    signers, the signature verifies), 1 naming each file that differs, is missing or is a symlink, and a bad or
    absent signature."""
    settings = resolve({"allowed_signers": args.allowed_signers}, {})
    signers = Path(settings.allowed_signers) if settings.allowed_signers is not None else None
    if signers is not None:
        evidence.check_signers(signers)
    found = evidence.verify(args.dir, signers)
    for problem in found.problems:
        print(f"MISMATCH {problem}")
    if found.ok:
        print(f"EVIDENCE VERIFIED: {len(found.checked)} files match {args.dir / evidence.FILE} "
              f"({found.body.get('verdict')}); {found.trust()}")
        return ExitCode.OK
    print(f"EVIDENCE DOES NOT VERIFY: {len(found.problems)} of {len(found.problems) + len(found.checked)} "
          f"differ or are missing in {args.dir}")
    return ExitCode.FAILED


def make_snapshot(args: argparse.Namespace) -> int:
    """``cutover snapshot make``: the deterministic synthetic snapshot, made on --db-url or on a throwaway
    sandbox that is stopped whatever happens, so a rehearsal can be run without production data."""
    settings = resolve({"db_url": args.db_url, "plan": args.plan}, {}, {})
    plan = load_plan(settings.plan_path)
    snapshot.check_make_args(args.out, args.scale, args.format)
    if args.db_url is not None:
        snapshot.make(args.out, plan, args.db_url, args.scale, args.seed, args.format, _progress)
        return ExitCode.OK
    build = resolve({"plan": args.plan, "sandbox": args.sandbox}, {})
    info = backends.start(backends.SandboxSpec.of(build), log=_progress)
    try:
        snapshot.make(args.out, plan, info.admin_url, args.scale, args.seed, args.format, _progress,
                      tools=info.tools())
    finally:
        backends.stop(info)
    return ExitCode.OK


def restore_snapshot(args: argparse.Namespace) -> int:
    """``cutover snapshot restore``: a snapshot into an empty database, all or nothing; the target must be
    named (no default database is ever written)."""
    settings = resolve({"db_url": args.db_url, "plan": args.plan}, {})
    if settings.db_url is None:
        raise CutoverError("snapshot restore needs a target: pass --db-url or set CUTOVER_DB_URL / DATABASE_URL")
    plan = load_plan(settings.plan_path)
    result = snapshot.restore(args.file, settings.db_url, plan, jobs=args.jobs, log=_progress)
    print(f"restore wall-clock: {result.total_seconds:.2f} s ({result.rows} rows, {result.format}; "
          f"load {result.seconds:.2f} s)")
    return ExitCode.OK


_COMMAND = ("command", "plan_command", "snapshot_command", "evidence_command")  # what an error names


def _interruptible() -> None:
    """Ctrl-C (SIGINT) always interrupts a command: rolled back, exit 130.

    A process started as a script's background job (``cmd &`` without job control: CI steps, a
    wrapper script, ``scripts/test &``) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt: the signal was dropped and an execute held its locks until its statement
    timeout. Every transaction here rolls back on interrupt, so honouring it is always safe.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the handler each command registered with its parser, and turn the one error type every
    command raises (:class:`CutoverError`) into its one line and exit code, here and nowhere else."""
    _interruptible()
    args = build_parser().parse_args(argv)
    try:
        command = " ".join(str(getattr(args, a)) for a in _COMMAND if getattr(args, a, None))
        with db.operator_errors(command):  # a database error: one line, exit 2, never 1 (BLOCKED's)
            return int(args.handler(args))
    except CutoverError as exc:
        print(f"cutover: error: {redact(str(exc))}", file=sys.stderr)
        plan_error = getattr(args, "plan_error", None)  # plan check/upgrade: a plan that does not load is 4
        return plan_error if plan_error is not None and isinstance(exc, PlanError) else exc.exit_code
    except KeyboardInterrupt:
        print("cutover: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
