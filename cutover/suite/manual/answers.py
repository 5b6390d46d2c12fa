"""Manual checks A11-A19: answers from a file or from the operator at the terminal, and their journal.

An answer is pass, fail or skip plus an observation, recorded with the operator and the time.
Sources, in order: ``--answers FILE`` (JSON, YAML or a previous run's JSONL journal), then the
operator at a real terminal (controller process only: an xdist worker has no terminal), else the
check is skipped with "needs operator". Every answer is appended to the run's journal, which can be
replayed as an answers file next time.
"""

from __future__ import annotations

import json
import string
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from cutover.core.errors import SetupError
from cutover.core.evidence import sha256_file
from cutover.core.options import Settings
from cutover.core.plan import ManualCheck, Plan
from cutover.core.private import open_private
from cutover.core.redact import redact
from cutover.suite.catalogue import RUNBOOK_MANUAL

RESULTS = ("pass", "fail", "skip")
SHORT = {"p": "pass", "f": "fail", "s": "skip"}


@dataclass(frozen=True)
class Answer:
    """One operator answer, as journaled."""

    check: str
    result: str
    observation: str
    operator: str
    at: str
    source: str


def fill(check: ManualCheck, values: Mapping[str, str]) -> str:
    """The check's steps with real values; a value we do not have stays visible as <name>."""
    names = {f for _, f, _, _ in string.Formatter().parse(check.steps) if f}
    return check.steps.format(**{n: values.get(n) or f"<{n}>" for n in names})


# What an answer may say; a journal line (replayed as an answers file) adds the rest of an Answer.
ANSWER_KEYS = frozenset({"result", "observation", "operator", "check", "at", "source"})


def app_database(reach: str, sandbox: bool, password_at: str | None = None) -> str:
    """Which database the application must use for the answer to mean anything, said before the steps:
    an answer given with the app on another database says nothing about this cutover."""
    counts = "Manual answers count only if the application really ran against this database."
    if sandbox:
        where = f" (the password is the sandbox's own: admin_url in {password_at})" if password_at else ""
        return (f"Point the application at the rehearsal's database, the embedded sandbox on this machine: {reach}"
                f"{where}; only this machine can reach it, and the sandbox stops when this run ends. {counts} "
                "To exercise the real app, rehearse on a dev branch with --db-url=DEV --rehearse=DBNAME and point the "
                "dev-branch app at it.")
    return (f"Point the application at the rehearsal's database, the dev branch given with --db-url: {reach} "
            f"(the password in your --db-url; the app's DATABASE_URL). {counts}")


REHEARSAL_KEY = "rehearsal"  # what an answers file was written for; never a check id


def rehearsal_identity(settings: Settings) -> dict[str, str]:
    """What makes a rehearsal this one: the plan file and the snapshot (a file by its sha256, the generated
    default by scale and seed). A ``--db-url`` run without ``--rehearse`` restores nothing: no snapshot."""
    found = {"plan_sha256": sha256_file(settings.plan_path)}
    if settings.snapshot is not None:
        path = Path(settings.snapshot)
        found["snapshot"] = f"{path.name} sha256:{sha256_file(path)}" if path.is_file() else str(path)
    elif settings.db_url is None or settings.rehearse:
        found["snapshot"] = f"generated default (scale {settings.snapshot_scale}, seed {settings.snapshot_seed})"
    return found


def written_for(path: Path) -> dict[str, str] | None:
    """The rehearsal an answers file (template or journal) records, or None when it records none."""
    try:
        text = path.read_text()
        if path.suffix == ".jsonl":
            entries = [json.loads(line) for line in text.splitlines()[:1] if line.strip()]
        else:
            entries = [json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)]
    except (OSError, ValueError, yaml.YAMLError):
        return None  # load_answers has already said what is wrong with the file
    found = entries[0].get(REHEARSAL_KEY) if entries and isinstance(entries[0], Mapping) else None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else None


def another_rehearsal(path: Path, recorded: Mapping[str, str] | None, current: Mapping[str, str]) -> str | None:
    """One line when the file was written for another rehearsal (only what both sides know is compared)."""
    differs = [f"{key} {recorded[key]}, now {current[key]}" for key in sorted(current)
               if recorded and key in recorded and recorded[key] != current[key]]
    if not differs:
        return None
    return (f"WARNING: answers file {path} was written for another rehearsal ({'; '.join(differs)}); its answers "
            "are applied: make sure they hold for this one, or answer again")


def _one(check: str, raw: Any, where: str, manual: Mapping[str, ManualCheck]) -> tuple[str, str, str | None]:
    if check not in manual:
        raise SetupError(f"{where}: '{check}' is not a manual check (expected one of {', '.join(manual)}); "
                         "fix the answers file")
    if isinstance(raw, str):
        raw = {"result": raw}
    if not isinstance(raw, Mapping):
        raise SetupError(f"{where}: {check} must be a result or a mapping with 'result' and 'observation'; "
                         "fix the answers file")
    unknown = sorted(str(k) for k in raw if k not in ANSWER_KEYS)
    if unknown:  # a mistyped 'observaton' would otherwise drop the observation without a word
        raise SetupError(f"{where}: {check} has unknown key {', '.join(repr(k) for k in unknown)} (allowed: result, "
                         "observation, operator); fix the answers file")
    result = str(raw.get("result", "")).strip().lower()
    result = SHORT.get(result, result)
    if result not in RESULTS:
        raise SetupError(f"{where}: {check}.result must be pass, fail or skip, got {raw.get('result')!r}; "
                         "fix the answers file")
    observation = str(raw.get("observation") or "").strip()
    if result != "pass" and not observation:
        raise SetupError(f"{where}: {check} is {result} without an observation; say what you saw "
                         f"({check}: {{result: {result}, observation: '...'}}) and fix the answers file")
    operator = raw.get("operator")
    return result, observation, str(operator) if operator is not None else None


def load_answers(path: Path, plan: Plan, extra: Mapping[str, ManualCheck] | None = None,
                 ) -> dict[str, tuple[str, str, str | None]]:
    """Check id → (result, observation, operator), validated; every problem is one line naming the fix.

    ``extra`` names other operator-answered items (the go/no-go's) that the same file may answer.
    """
    known = {**plan.manual, **(extra or {})}
    where = f"answers file {path}"
    try:
        text = path.read_text()
    except OSError as exc:
        raise SetupError(f"{where} cannot be read ({exc.strerror}); fix --answers") from None
    found: dict[str, tuple[str, str, str | None]] = {}
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SetupError(f"{where} line {n} is not JSON ({exc.msg}); fix the journal") from None
            if isinstance(entry, Mapping) and ("verdict" in entry or REHEARSAL_KEY in entry) and "check" not in entry:
                continue  # the journal's heading line: the run's verdict and rehearsal
            if not isinstance(entry, Mapping) or "check" not in entry:
                raise SetupError(f"{where} line {n} has no 'check'; fix the file (a journal line names its check)")
            key = str(entry["check"]) if str(entry["check"]) in known else str(entry["check"]).upper()
            found[key] = _one(key, entry, f"{where} line {n}",
                                                      known)
        return found
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise SetupError(f"{where} is not valid {kind} ({str(exc).splitlines()[0]}); fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SetupError(f"{where} must map check ids to answers (e.g. {RUNBOOK_MANUAL[0]}: pass); fix the file")
    for check, raw in data.items():
        if check == REHEARSAL_KEY:
            continue  # what the file was written for: compared by another_rehearsal
        if raw is None or (isinstance(raw, Mapping) and raw.get("result") is None):
            continue  # a template entry not filled in yet: not answered
        key = str(check) if str(check) in known else str(check).upper()
        found[key] = _one(key, raw, where, known)
    return found


def template(plan: Plan, rehearsal: Mapping[str, str]) -> str:
    """A YAML answers file to fill in ahead of time: every manual check, its steps as comments, and the
    rehearsal it is for (a run with another plan or snapshot warns)."""
    lines = ["# Answers to the manual checks (runbook step 5b). For each check set result to pass, fail or",
             "# skip and say what you saw. Use with: pytest -m setA --answers=THIS_FILE",
             "# Values in <angle brackets> are filled in by the rehearsal when it prompts.",
             "# The rehearsal these answers are for: a run with another plan or snapshot warns.",
             f"{REHEARSAL_KEY}:", *(f"  {k}: {json.dumps(v)}" for k, v in rehearsal.items()), ""]
    for check in plan.manual.values():
        lines += [f"# {check.check} {check.title}", f"#   {fill(check, {})}", f"{check.check}:",
                  "  result:        # pass | fail | skip", "  observation: \"\"", ""]
    return "\n".join(lines)


class Journal:
    """Append-only JSONL of every answer; one line per answer, safe to append from several processes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, answer: Answer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = redact(json.dumps(asdict(answer), ensure_ascii=False)) + "\n"
        with open_private(self.path, "a", encoding="utf-8") as fh:  # answers name patients' cases
            fh.write(line)

    def read(self) -> dict[str, Answer]:
        """The last answer per check."""
        if not self.path.exists():
            return {}
        out: dict[str, Answer] = {}
        for line in self.path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                if "check" in entry:  # not the verdict heading of an artifacts copy
                    out[entry["check"]] = Answer(**entry)
        return out


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def ask(check: ManualCheck, instructions: str, assist: str | None, read: Callable[[str], str],
        write: Callable[[str], None]) -> tuple[str, str]:
    """The interactive prompt: the steps, the assist's finding, then pass/fail/skip and an observation."""
    write("")
    write(f"──── {check.check} {check.title} ────")
    write(instructions)
    if assist:
        write(f"assist: {assist}")
    while True:
        raw = read(f"{check.check} result [p]ass / [f]ail / [s]kip: ").strip().lower()
        result = SHORT.get(raw, raw)
        if result in RESULTS:
            break
        write("  please answer p, f or s")
    observation = read(f"{check.check} observation (what you saw): ").strip()
    while result != "pass" and not observation:  # a fail or skip nobody can act on is no answer
        observation = read(f"{check.check} a {result} needs an observation (what you saw): ").strip()
    return result, observation


def interactive_possible(is_worker: bool) -> bool:
    """A real terminal on both ends, in the controller process."""
    # sys.__stdin__, not sys.stdin: under pytest's capture sys.stdin is a stand-in that is never a tty
    real_in, real_out = sys.__stdin__, sys.__stdout__
    return not is_worker and real_in is not None and real_in.isatty() and real_out is not None and real_out.isatty()


def resolve(check: ManualCheck, instructions: str, assist_line: str | None,
            given: dict[str, tuple[str, str, str | None]], operator: str, is_worker: bool,
            suspend: Callable[[], Any], journal: Journal) -> tuple[Answer | None, str]:
    """The check's answer (journaled), or None and why there is none."""
    if check.check in given:
        result, observation, who = given[check.check]
        answer = Answer(check.check, result, observation, who or operator, now(), "answers file")
    elif is_worker:
        return None, ("manual checks are asked only in a serial run (no -n): re-run with -m manual, "
                      "or pass --answers=FILE")
    else:
        with suspend():  # only with capture suspended do fds 0 and 1 show whether they are a terminal
            if not interactive_possible(is_worker):
                return None, ("no terminal to ask on and no answer in --answers; run in a terminal or pass "
                              "--answers=FILE")
            result, observation = ask(check, instructions, assist_line, input, print)
        answer = Answer(check.check, result, observation, operator, now(), "terminal")
    journal.add(answer)
    return answer, ""
