"""The evidence bundle: ``evidence.json`` ties a run's artifacts to what the run claims.

The production window is scheduled on the strength of a rehearsal's artifacts. Without this file
an operator log can be edited after the fact, and a rehearsal of another plan, another cutover
command, or one two weeks old looks as good as today's. ``evidence.json`` records the SHA-256 of
every artifact and the facts the go/no-go compares with the present (verdict, plan hash, cutover
command, snapshot, times); :func:`verify` recomputes it. It is not a signature, someone who rewrites
every file and the bundle can forge it, but it turns an edited or lost artifact into a named
failure instead of a silent difference. Lives in the core because the suite writes it, the
``cutover`` command verifies it, and neither should depend on the other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutover.core.errors import CutoverError

FILE = "evidence.json"
FORMAT = 1
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _digest(body: Mapping[str, Any]) -> str:
    """The bundle's own hash, over its canonical JSON without this field: catches an edited claim."""
    canonical = json.dumps({k: v for k, v in body.items() if k != "bundle_sha256"}, sort_keys=True,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def write(directory: Path, files: Mapping[str, Path | None], facts: Mapping[str, Any]) -> Path:
    """Hash each artifact (by its path relative to ``directory``) and write ``evidence.json``.

    ``files`` maps a role (``operator_log_md``, ``plan``, ...) to a file inside ``directory``, or to
    None when the run has no such artifact; an absent artifact is recorded as absent, so that
    verification can tell "never made" from "deleted since".
    """
    root = directory.resolve()
    entries: dict[str, dict[str, str] | None] = {}
    for role, path in files.items():
        if path is None or not path.exists():
            entries[role] = None
            continue
        resolved = path.resolve()
        if root not in resolved.parents:
            raise CutoverError(f"evidence: {path} is outside the artifacts directory {root}; copy it in first")
        entries[role] = {"path": resolved.relative_to(root).as_posix(), "sha256": sha256_file(resolved)}
    body: dict[str, Any] = {"format": FORMAT, **facts, "files": entries}
    body["bundle_sha256"] = _digest(body)
    out = root / FILE
    out.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    return out


@dataclass
class Verification:
    """What :func:`verify` found: one problem per file that differs or is missing."""

    directory: Path
    body: dict[str, Any]
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load(directory: Path) -> dict[str, Any]:
    """The bundle of ``directory`` (or of the evidence.json given directly); usage errors name the fix."""
    path = directory / FILE if directory.is_dir() else directory
    if not path.exists():
        raise CutoverError(f"no {FILE} in {directory}: pass a run's artifacts directory, e.g. artifacts/latest")
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CutoverError(f"{path} is not readable JSON ({exc}); the bundle is damaged, re-run the rehearsal") \
            from None
    if not isinstance(body, dict) or not isinstance(body.get("files"), dict):
        raise CutoverError(f"{path} is not an evidence bundle (no files table); re-run the rehearsal")
    return body


def verify(directory: Path) -> Verification:
    """Recompute every hash; name each file that differs or is missing, and an edited bundle."""
    root = directory if directory.is_dir() else directory.parent
    body = load(directory)
    result = Verification(root, body)
    if body.get("bundle_sha256") != _digest(body):
        result.problems.append(f"{FILE}: its contents were edited after it was written (bundle hash differs)")
    for role, entry in sorted(body["files"].items()):
        if entry is None:
            continue
        rel = str(entry.get("path", ""))
        path = root / rel
        if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            result.problems.append(f"{role}: {rel!r} is not a path inside the bundle")
        elif not path.is_file():
            result.problems.append(f"{rel}: missing ({role})")
        elif sha256_file(path) != entry.get("sha256"):
            result.problems.append(f"{rel}: differs from the bundle ({role}): edited after the run")
        else:
            result.checked.append(rel)
    return result
