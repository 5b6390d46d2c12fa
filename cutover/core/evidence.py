"""The evidence bundle: ``evidence.json`` ties a run's artifacts to what the run claims.

The production window is scheduled on the strength of a rehearsal's artifacts. Without this file
an operator log can be edited after the fact, and a rehearsal of another plan, another cutover
command, or one two weeks old looks as good as today's. ``evidence.json`` records the SHA-256 of
every artifact and the facts the go/no-go compares with the present (verdict, plan hash, cutover
command, snapshot, times); :func:`verify` recomputes it.

Hashes alone prove that nothing changed by accident (a file edited, truncated, lost, swapped for a
symlink): whoever can write the directory can rewrite a file and recompute every hash, and the bundle
still verifies. A signature adds who vouches for it: :func:`sign` signs ``evidence.json`` the way git
signs with SSH keys (``ssh-keygen -Y sign``, namespace ``cutover-evidence``), and :func:`verify` with
an allowed-signers file accepts only a bundle signed by one of its keys, naming the signer. Lives in
the core because the suite writes it, the ``cutover`` command verifies it, and neither should depend
on the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutover.core.errors import CutoverError

FILE = "evidence.json"
SIGNATURE = FILE + ".sig"
NAMESPACE = "cutover-evidence"  # ssh-keygen -n: a signature made for git or anything else does not count here
FORMAT = 1
CHUNK = 1 << 20
SSH_KEYGEN_TIMEOUT_S = 60


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
    (root / SIGNATURE).unlink(missing_ok=True)  # a signature of an earlier evidence.json vouches for nothing here
    out.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    return out


def _ssh_keygen(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    """``ssh-keygen ARGS`` with ``data`` on stdin: the bytes signed or verified are the ones we read, once."""
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise CutoverError("ssh-keygen not found on PATH: install OpenSSH's client (openssh-client) to sign or "
                           "verify evidence")
    try:
        return subprocess.run([exe, *args], input=data, capture_output=True, timeout=SSH_KEYGEN_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise CutoverError(f"ssh-keygen {args[0]} {args[1]} did not finish in {SSH_KEYGEN_TIMEOUT_S} s (waiting for "
                           "a passphrase?): use a key without one, or load it into ssh-agent and pass its .pub") \
            from None


def _said(done: subprocess.CompletedProcess[bytes]) -> str:
    """ssh-keygen's last line of complaint, for a one-line error."""
    lines = [line.strip() for line in (done.stderr + done.stdout).decode(errors="replace").splitlines()
             if line.strip() and not line.startswith("Signing data on standard input")]
    return lines[-1] if lines else f"exit {done.returncode}"


def check_key(key: Path) -> None:
    """``--sign-with``: refuse a missing key before the run, not after it has done its work."""
    if not key.is_file():
        raise CutoverError(f"--sign-with {key}: no such key file; pass the signer's SSH private key (e.g. "
                           "~/.ssh/id_ed25519), or its .pub with the key loaded in ssh-agent")


def check_signers(allowed: Path) -> None:
    """``--allowed-signers``: refuse a missing file before anything is read."""
    if not allowed.is_file():
        raise CutoverError(f"--allowed-signers {allowed}: no such file; write one line per signer, "
                           "'<principal> <ssh public key>' (e.g. 'alice@example.com ssh-ed25519 AAAA...')")


def sign(directory: Path, key: Path) -> Path:
    """Sign ``evidence.json`` with ``key`` (``ssh-keygen -Y sign -n cutover-evidence``); returns the .sig."""
    check_key(key)
    root = directory.resolve()
    data = (root / FILE).read_bytes()
    done = _ssh_keygen(["-Y", "sign", "-f", str(key), "-n", NAMESPACE], data)
    if done.returncode != 0 or b"BEGIN SSH SIGNATURE" not in done.stdout:
        raise CutoverError(f"evidence not signed: ssh-keygen could not sign with {key} ({_said(done)}); pass "
                           "an SSH private key with --sign-with (make one with ssh-keygen -t ed25519)")
    out = root / SIGNATURE
    tmp = root / f".{SIGNATURE}.tmp"
    tmp.write_bytes(done.stdout)
    tmp.replace(out)
    return out


@dataclass
class Verification:
    """What :func:`verify` found: one problem per file that differs or is missing, and who signed it.

    ``signer`` is set only when an allowed-signers file was given and the signature verified;
    ``signed`` says whether a signature is there at all (checked or not).
    """

    directory: Path
    body: dict[str, Any]
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    signer: str | None = None
    signed: bool = False

    def trust(self) -> str:
        """What a passing verification proves, in the operator's terms, for the one verdict line."""
        if self.signer is not None:
            return f"signed by {self.signer}"
        if self.signed:
            return "hashes only: the signature was not checked (pass --allowed-signers=FILE)"
        return "hashes only, unsigned: proves no accidental change, not who wrote it (rehearse with --sign-with)"

    @property
    def ok(self) -> bool:
        return not self.problems


def load(directory: Path) -> dict[str, Any]:
    """The bundle of ``directory`` (or of the evidence.json given directly); usage errors name the fix."""
    return _read(directory)[1]


def _read(directory: Path) -> tuple[bytes, dict[str, Any]]:
    """evidence.json's bytes and its body: the signature is checked over exactly the bytes parsed."""
    path = directory / FILE if directory.is_dir() else directory
    if not path.exists():
        raise CutoverError(f"no {FILE} in {directory}: pass a run's artifacts directory, e.g. artifacts/latest")
    try:
        data = path.read_bytes()
        body = json.loads(data)
    except (OSError, ValueError) as exc:
        raise CutoverError(f"{path} is not readable JSON ({exc}); the bundle is damaged, re-run the rehearsal") \
            from None
    if not isinstance(body, dict) or not isinstance(body.get("files"), dict):
        raise CutoverError(f"{path} is not an evidence bundle (no files table); re-run the rehearsal")
    return data, body


def symlinks(root: Path) -> list[str]:
    """Every symbolic link under ``root``, relative: a link's target is outside what the hashes vouch
    for (another file, another directory), and it can be repointed after the bundle verified."""
    found = []
    for parent, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(parent) / name
            if path.is_symlink():
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def verify(directory: Path, allowed_signers: Path | None = None) -> Verification:
    """Recompute every hash; name each file that differs, is missing or is a symlink, and an edited bundle.

    With ``allowed_signers`` the bundle must also carry a signature of ``evidence.json`` by one of
    its keys: unsigned, signed by another key or edited after signing is a problem, never a pass.
    """
    given = directory if directory.is_dir() else directory.parent
    root = given.resolve()  # artifacts/latest is a link to the run's directory; inside it, none is allowed
    data, body = _read(directory)
    result = Verification(given, body, signed=(root / SIGNATURE).is_file())
    links = symlinks(root)
    result.problems += [f"{link}: a symbolic link; a bundle holds its files themselves, copy the file in"
                        for link in links]
    if body.get("bundle_sha256") != _digest(body):
        result.problems.append(f"{FILE}: its contents were edited after it was written (bundle hash differs)")
    for role, entry in sorted(body["files"].items()):
        if entry is None:
            continue
        rel = str(entry.get("path", ""))
        path = root / rel
        if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            result.problems.append(f"{role}: {rel!r} is not a path inside the bundle")
        elif any(rel == link or rel.startswith(link + "/") for link in links):
            continue  # named above: its content is wherever the link points, not in the bundle
        elif not path.is_file():
            result.problems.append(f"{rel}: missing ({role})")
        elif sha256_file(path) != entry.get("sha256"):
            result.problems.append(f"{rel}: differs from the bundle ({role}): edited after the run")
        else:
            result.checked.append(rel)
    if allowed_signers is not None:
        _check_signature(result, root, data, allowed_signers)
    return result


def _check_signature(result: Verification, root: Path, data: bytes, allowed: Path) -> None:
    """The signer of ``data`` (evidence.json's bytes) from ``allowed``, or a problem naming why not."""
    check_signers(allowed)
    sig = root / SIGNATURE
    if sig.is_symlink():
        return  # already refused as a symlink
    if not sig.is_file():
        result.problems.append(f"{SIGNATURE}: missing: the bundle is not signed and --allowed-signers asks for "
                               "a signature (rehearse with --sign-with=KEY)")
        return
    found = _ssh_keygen(["-Y", "find-principals", "-s", str(sig), "-f", str(allowed)], b"")
    principals = [p.strip() for p in found.stdout.decode(errors="replace").splitlines() if p.strip()]
    if found.returncode != 0 or not principals:
        result.problems.append(f"{SIGNATURE}: not made by a key in {allowed} ({_said(found)})")
        return
    failures = []
    for principal in principals:
        done = _ssh_keygen(["-Y", "verify", "-f", str(allowed), "-I", principal, "-n", NAMESPACE, "-s", str(sig)],
                           data)
        if done.returncode == 0:
            said = done.stdout.decode(errors="replace").strip().splitlines()
            good = said[-1] if said else ""
            result.signer = good.split(" signature for ", 1)[1] if " signature for " in good else principal
            return
        failures.append(_said(done))
    result.problems.append(f"{FILE}: its signature does not verify for {', '.join(principals)} "
                           f"({'; '.join(dict.fromkeys(failures))}): edited after it was signed, or signed for "
                           "another purpose")
