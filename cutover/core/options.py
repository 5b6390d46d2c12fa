"""Configuration: every option declared once, resolved once into a frozen :class:`Settings`.

The same table drives the pytest options (CLI flag + typed ini key), the environment variables and
the README's configuration table, so the three can never drift apart. Precedence is
CLI > ini > environment > default, and "not given" is always tested with ``is None`` so that a
deliberate ``0`` or empty value is honoured rather than silently replaced by a default.

The one exception is a switch that lets a run write to a database (``--rehearse``): it is taken from
the command line only. A file or an exported variable outlives the command it was meant for, and one
left behind turned a read-only production check into a cutover; so :func:`resolve` never reads it
there, and the suite stops a run that has it there (:func:`refuse_outside_the_command_line`) rather
than drop in silence what someone meant.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from cutover.core.errors import SetupError
from cutover.core.plan import DEFAULT_PLAN

IniType = Literal["string", "int", "bool"]

SANDBOX_BACKENDS = ("auto", "url", "docker", "local")
DURATION = re.compile(r"^(\d+)(ms|s|min|h)?$")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "": 1.0}


def seconds(duration: str) -> float:
    """``15min`` as 900.0, for the go/no-go's slots (plain digits are seconds there)."""
    found = DURATION.match(duration)
    if found is None:
        raise SetupError(f"{duration!r} is not a duration like 500ms, 3s or 15min")
    return int(found.group(1)) * UNIT_SECONDS[found.group(2) or ""]


@dataclass(frozen=True)
class Option:
    """One configuration knob: its CLI flag, its ini key, its environment variables, its default."""

    name: str
    flag: str
    type: IniType
    default: Any
    help: str
    env: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    cli_only: bool = False  # a switch that lets a run write: never from the ini file or the environment
    bare: str | None = None  # the value of the flag given without ``=VALUE`` (the flag then takes one optionally)

    def __post_init__(self) -> None:
        assert not (self.cli_only and self.env), f"{self.flag} is command line only: it has no environment"

    @property
    def ini(self) -> str:
        return f"cutover_{self.name}"

    @property
    def refused_env(self) -> str:
        """The variable a command-line-only option would have had: set, it stops the run rather than
        being dropped in silence (whoever exported it expects something of it)."""
        return f"CUTOVER_{self.name.upper()}"


OPTIONS: tuple[Option, ...] = (
    Option("sandbox", "--sandbox", "string", "auto",
           "Where the throwaway PostgreSQL comes from: auto, url, docker or local.",
           ("CUTOVER_SANDBOX",), SANDBOX_BACKENDS),
    Option("db_url", "--db-url", "string", None,
           "An existing database to check. Nothing is created or dropped there.",
           ("CUTOVER_DB_URL", "DATABASE_URL")),
    Option("pg_bindir", "--pg-bindir", "string", None,
           "Directory holding initdb and pg_ctl for the local sandbox (default: PATH, then pg_config).",
           ("CUTOVER_PG_BINDIR",)),
    Option("sandbox_dir", "--sandbox-dir", "string", None,
           "Parent directory of the local sandbox cluster; must be reachable by the postgres user when "
           "running as root (default: the system temp dir).", ("CUTOVER_SANDBOX_DIR",)),
    Option("sandbox_durable", "--sandbox-durable", "bool", False,
           "Run the sandbox with fsync, synchronous_commit and full_page_writes on (slower): the rehearsal's "
           "restore time is then a durable measurement for the rollback bound.", ("CUTOVER_SANDBOX_DURABLE",)),
    Option("docker_image", "--docker-image", "string", None,
           "Image for the docker sandbox (default: postgres:N of the snapshot's major, postgres:15 when "
           "nothing states one).", ("CUTOVER_DOCKER_IMAGE",)),
    Option("pg_major", "--pg-major", "int", None,
           "The PostgreSQL major production runs, where the snapshot cannot say (the generated default "
           "snapshot); the sandbox then runs that major (default: the snapshot's, else the first server found).",
           ("CUTOVER_PG_MAJOR",)),
    Option("allow_newer_server", "--allow-newer-server", "bool", False,
           "Rehearse on a newer PostgreSQL major than the snapshot's when its own cannot be had; the verdict "
           "then says 'rehearsed on N for a PostgreSQL M production'. An older one is never used.", ()),
    Option("snapshot", "--snapshot", "string", None,
           "Snapshot file (.sql.gz plain or pg_dump custom) to restore into the sandbox "
           "(default: the generated synthetic snapshot).", ("CUTOVER_SNAPSHOT",)),
    Option("snapshot_scale", "--snapshot-scale", "int", 1,
           "Scale of the generated default snapshot (1 is about 50k rows).", ("CUTOVER_SNAPSHOT_SCALE",)),
    Option("snapshot_seed", "--snapshot-seed", "int", 20260430,
           "Seed of the generated default snapshot.", ("CUTOVER_SNAPSHOT_SEED",)),
    Option("plan", "--plan", "string", None,
           "The plan file: tenants, ownership rules, classifications (default: the embedded reference model's plan).",
           ("CUTOVER_PLAN",)),
    Option("cache_dir", "--cache-dir", "string", None,
           "Where generated snapshots are cached (default: .cutover-cache in the current directory).",
           ("CUTOVER_CACHE_DIR",)),
    Option("startup_timeout", "--startup-timeout", "int", 60,
           "Seconds to wait for the sandbox server to accept connections.", ("CUTOVER_STARTUP_TIMEOUT",)),
    Option("lock_timeout", "--lock-timeout", "string", "3s",
           "lock_timeout of the cutover, sweep and reverse transactions (PostgreSQL units: ms, s, min).",
           ("CUTOVER_LOCK_TIMEOUT",)),
    Option("statement_timeout", "--statement-timeout", "string", "15min",
           "statement_timeout of the cutover, sweep and reverse transactions.", ("CUTOVER_STATEMENT_TIMEOUT",)),
    Option("report_path", "--report-path", "string", None,
           "The cutover's report JSON, for checks A5 and A10 against --db-url (the sandbox makes its own).",
           ("CUTOVER_REPORT_PATH",)),
    Option("check", "--check", "string", None,
           "Run only these smoke checks, comma-separated ids (e.g. A3,A7).", ("CUTOVER_CHECK",)),
    Option("check_statement_timeout", "--check-statement-timeout", "string", "30s",
           "statement_timeout of the checks' read-only connection.", ("CUTOVER_CHECK_STATEMENT_TIMEOUT",)),
    Option("check_lock_timeout", "--check-lock-timeout", "string", "2s",
           "lock_timeout of the checks' read-only connection.", ("CUTOVER_CHECK_LOCK_TIMEOUT",)),
    Option("rehearse", "--rehearse", "string", None,
           "Let the rehearsal write (restore, execute, A20-active) to the --db-url database it names: "
           "--rehearse=DBNAME, a dev branch you own, checked against the database the URL connects to. Without "
           "it a --db-url target is only read; the sandbox needs no DBNAME. Command line only; Set B and "
           "-m prereq refuse it.", cli_only=True, bare=""),
    Option("cutover_cmd", "--cutover-cmd", "string", None,
           "Run this shell command as the rehearsal's execute instead of the bundled module; it gets "
           "DATABASE_URL, CUTOVER_ACTOR and CUTOVER_REPORT_PATH and must write the report there.",
           ("CUTOVER_CMD",)),
    Option("rehearse_rollback", "--rehearse-rollback", "bool", False,
           "On a --rehearse dev branch, also rehearse rollback option 2 on a clone of it (CREATE DATABASE "
           "<name>_rollback TEMPLATE <name>, dropped after; needs CREATEDB and no other session on the branch). "
           "The sandbox always rehearses it. Command line only.", cli_only=True),
    Option("reverse_cmd", "--reverse-cmd", "string", None,
           "Run this shell command as the rehearsal's rollback (option 2, on a clone of the cut-over database) "
           "instead of the bundled reverse; it gets DATABASE_URL, CUTOVER_ACTOR and CUTOVER_REPORT_PATH (a copy "
           "of the execute's report).", ("CUTOVER_REVERSE_CMD",)),
    Option("answers", "--answers", "string", None,
           "Answers to the manual checks (JSON or YAML keyed by check id; a journal replays as one).",
           ("CUTOVER_ANSWERS",)),
    Option("answers_template", "--answers-template", "string", None,
           "Write an answers file to fill in ahead of time, with every manual check's steps, and exit.", ()),
    Option("artifacts_dir", "--artifacts-dir", "string", "artifacts",
           "Where each run's operator log, journal and Allure results go (artifacts/<timestamp>/).",
           ("CUTOVER_ARTIFACTS_DIR",)),
    Option("allure_bin", "--allure-bin", "string", None,
           "The Allure 3 command that renders the single-file HTML report (default: tools/allure's pinned "
           "install in the current directory, else allure on PATH).", ("CUTOVER_ALLURE_BIN",)),
    Option("evidence", "--evidence", "string", None,
           "The rehearsal's artifacts directory (with evidence.json) that the go/no-go (-m prereq) compares "
           "production with.", ("CUTOVER_EVIDENCE",)),
    Option("execute_slot", "--execute-slot", "string", "5min",
           "The go/no-go's slot for the execute (the runbook's T+0:04 to T+0:09): a forecast past it is NO-GO.",
           ("CUTOVER_EXECUTE_SLOT",)),
    Option("setb_slot", "--setb-slot", "string", "2min",
           "The go/no-go's slot for Set B in the window: a forecast past it is NO-GO.", ("CUTOVER_SETB_SLOT",)),
    Option("rollback_bound", "--rollback-bound", "string", "15min",
           "The runbook's rollback bound: the forecast reverse, and the forecast snapshot restore with the revert "
           "deploys and smoke run, must fit it.", ("CUTOVER_ROLLBACK_BOUND",)),
    Option("sign_with", "--sign-with", "string", None,
           "Sign the run's evidence.json with this SSH private key (ssh-keygen -Y sign, namespace "
           "cutover-evidence), writing evidence.json.sig beside it.", ("CUTOVER_SIGN_WITH",)),
    Option("allowed_signers", "--allowed-signers", "string", None,
           "An ssh-keygen allowed-signers file: the evidence must be signed by one of its keys (go/no-go, "
           "cutover evidence verify); unsigned, another signer or an edit after signing fails.",
           ("CUTOVER_ALLOWED_SIGNERS",)),
    Option("operator", "--operator", "string", None,
           "Who answers the manual checks, recorded with each answer (default: $USER).",
           ("CUTOVER_OPERATOR", "USER")),
)
# Each option's default, read from the table: Settings, the sandbox's spec, the cutover's timeouts and the
# commands' own flags (snapshot make --seed) take theirs from here, so no default is written twice.
DEFAULTS: Mapping[str, Any] = MappingProxyType({o.name: o.default for o in OPTIONS})
# Values checked as durations (500ms, 3s, 15min) when resolved: the timeouts and the go/no-go's slots.
DURATIONS = frozenset(o.name for o in OPTIONS if o.name.endswith("_timeout") and o.type == "string") | {
    "execute_slot", "setb_slot", "rollback_bound"}


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one run. Frozen: resolved once, then only read."""

    sandbox: str = DEFAULTS["sandbox"]
    db_url: str | None = DEFAULTS["db_url"]
    pg_bindir: str | None = DEFAULTS["pg_bindir"]
    sandbox_dir: str | None = DEFAULTS["sandbox_dir"]
    sandbox_durable: bool = DEFAULTS["sandbox_durable"]
    docker_image: str | None = DEFAULTS["docker_image"]
    pg_major: int | None = DEFAULTS["pg_major"]
    allow_newer_server: bool = DEFAULTS["allow_newer_server"]
    snapshot: str | None = DEFAULTS["snapshot"]
    snapshot_scale: int = DEFAULTS["snapshot_scale"]
    snapshot_seed: int = DEFAULTS["snapshot_seed"]
    plan: str | None = DEFAULTS["plan"]
    cache_dir: str | None = DEFAULTS["cache_dir"]
    startup_timeout: int = DEFAULTS["startup_timeout"]
    lock_timeout: str = DEFAULTS["lock_timeout"]
    statement_timeout: str = DEFAULTS["statement_timeout"]
    report_path: str | None = DEFAULTS["report_path"]
    check: str | None = DEFAULTS["check"]
    check_statement_timeout: str = DEFAULTS["check_statement_timeout"]
    check_lock_timeout: str = DEFAULTS["check_lock_timeout"]
    rehearse: str | None = DEFAULTS["rehearse"]  # DBNAME, "" for a bare --rehearse, None when not given
    cutover_cmd: str | None = DEFAULTS["cutover_cmd"]
    reverse_cmd: str | None = DEFAULTS["reverse_cmd"]
    rehearse_rollback: bool = DEFAULTS["rehearse_rollback"]
    answers: str | None = DEFAULTS["answers"]
    answers_template: str | None = DEFAULTS["answers_template"]
    artifacts_dir: str = DEFAULTS["artifacts_dir"]
    allure_bin: str | None = DEFAULTS["allure_bin"]
    evidence: str | None = DEFAULTS["evidence"]
    execute_slot: str = DEFAULTS["execute_slot"]
    setb_slot: str = DEFAULTS["setb_slot"]
    rollback_bound: str = DEFAULTS["rollback_bound"]
    sign_with: str | None = DEFAULTS["sign_with"]
    allowed_signers: str | None = DEFAULTS["allowed_signers"]
    operator: str | None = DEFAULTS["operator"]
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def plan_path(self) -> Path:
        return Path(self.plan) if self.plan is not None else DEFAULT_PLAN

    @property
    def operator_name(self) -> str:
        """Who answers the manual checks: --operator, $CUTOVER_OPERATOR, $USER, else the login name."""
        if self.operator is not None:
            return self.operator
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir is not None else Path.cwd() / ".cutover-cache"


def _convert(option: Option, raw: Any, origin: str) -> Any:
    """Turn a raw value (string from env, typed from ini/CLI) into the option's type."""
    if option.type == "int":
        try:
            value: Any = int(raw)
        except (TypeError, ValueError):
            raise SetupError(f"{origin} must be a whole number, got {raw!r}; fix the value of {origin}") from None
    elif option.type == "bool":
        if isinstance(raw, bool):
            value = raw
        elif str(raw).strip().lower() in ("1", "true", "yes", "on"):
            value = True
        elif str(raw).strip().lower() in ("0", "false", "no", "off"):
            value = False
        else:
            raise SetupError(f"{origin} must be true or false, got {raw!r}; fix the value of {origin}")
    else:
        value = str(raw)
    if option.name in DURATIONS and not DURATION.match(value):
        raise SetupError(f"{origin} must be a duration like 500ms, 3s or 15min, got {value!r}; "
                         f"fix the value of {origin}")
    if option.choices is not None and value not in option.choices:
        raise SetupError(
            f"{origin} must be one of {', '.join(option.choices)}, got {value!r}; fix the value of {origin}"
        )
    return value


def resolve(
    cli: Mapping[str, Any],
    ini: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every option with precedence CLI > ini > environment > default.

    ``cli`` and ``ini`` map option names to values, ``None`` meaning "not given". An empty
    environment variable counts as not given, as shells commonly export ``VAR=`` to unset.
    """
    environ = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        chosen: tuple[Any, str] | None = None
        if cli.get(option.name) is not None:
            chosen = (cli[option.name], option.flag)
        elif option.cli_only:
            pass  # never from a file or the environment: see refuse_outside_the_command_line
        elif ini.get(option.name) is not None:
            chosen = (ini[option.name], f"ini {option.ini}")
        else:
            for var in option.env:
                if environ.get(var) is not None and environ[var] != "":
                    chosen = (environ[var], f"${var}")
                    break
        if chosen is None:
            values[option.name] = option.default
            sources[option.name] = "default"
        else:
            values[option.name] = _convert(option, chosen[0], chosen[1])
            sources[option.name] = chosen[1]
    return Settings(**values, sources=sources)


def refuse_outside_the_command_line(ini: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
    """A write switch in the ini file or the environment stops the run, naming where it was found.

    Called by the suite, where the switch means something; the ``cutover`` commands have no such switch,
    and a variable left in the window's shell must not stop an execute that never reads it."""
    environ = os.environ if env is None else env
    for option in OPTIONS:
        if not option.cli_only:
            continue
        found = ((f"ini {option.ini}", f"remove {option.ini} from the ini file") if ini.get(option.name) is not None
                 else (f"${option.refused_env}", f"unset {option.refused_env}") if environ.get(option.refused_env)
                 else None)
        if found is not None:
            raise SetupError(f"{found[0]} is not read: {option.flag} lets the run write to a database and is taken "
                             f"from the command line only; {found[1]} and, if this run should write, pass "
                             f"{option.flag} on the command line")


def option_table() -> list[tuple[str, str, str, str]]:
    """Rows (flag, ini key, env vars, default) for the README's configuration table."""
    return [
        (o.flag, "-" if o.cli_only else o.ini, ", ".join(o.env) or "-", "-" if o.default is None else str(o.default))
        for o in OPTIONS
    ]


def add_to_parser(add: Callable[..., Any], add_ini: Callable[..., Any] | None = None) -> None:
    """Declare every option on a pytest or argparse parser (``add`` is its ``addoption``)."""
    for option in OPTIONS:
        kwargs: dict[str, Any] = {"dest": f"cutover_{option.name}", "default": None, "help": option.help}
        if option.type == "int":
            kwargs["type"] = int
        if option.type == "bool":
            kwargs.update(action="store_const", const=True)
        if option.bare is not None:
            kwargs.update(nargs="?", const=option.bare)
        if option.choices is not None:
            kwargs["choices"] = option.choices
        add(option.flag, **kwargs)
        if add_ini is not None and option.cli_only:  # declared only so that a value left there is refused
            add_ini(option.ini, f"Not read: {option.flag} is command line only; a value here stops the run.",
                    type="string", default=None)
        elif add_ini is not None:
            add_ini(option.ini, option.help, type=option.type, default=None)


assert {f.name for f in fields(Settings)} - {"sources"} == {o.name for o in OPTIONS}, "options and Settings drift"
