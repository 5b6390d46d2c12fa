"""The evidence bundle: every run's artifacts directory gets evidence.json, and `cutover evidence verify`
names each artifact that was edited or lost since the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core import evidence
from cutover.core.errors import CutoverError
from cutover.core.options import resolve
from cutover.core.plan import DEFAULT_PLAN
from cutover.core.redact import register_secret
from cutover.reference.version import module_version
from cutover.suite.bundle import cutover_command
from tests.support import REHEARSAL, ssh_signer

ALL_PASS = "".join(f"A{i}: {{result: pass, observation: 'A{i} seen working end to end'}}\n" for i in range(11, 20))


def verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cutover.cli", "evidence", "verify", str(directory)],
                          capture_output=True, text=True, timeout=120, check=False)


def bundle(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "operator-log.md").write_text("# Operator log\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("<html></html>")
    evidence.write(tmp_path, {"operator_log_md": tmp_path / "operator-log.md",
                              "allure_html": tmp_path / "sub" / "index.html", "journal": None},
                   {"verdict": "READY"})
    return tmp_path


def test_an_untouched_bundle_verifies(tmp_path: Path) -> None:
    done = verify(bundle(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "EVIDENCE VERIFIED: 2 files match" in done.stdout


@pytest.mark.parametrize(("damage", "named"), [
    (lambda d: (d / "operator-log.md").write_text("# Operator log: edited\n"), "operator-log.md: differs"),
    (lambda d: (d / "sub" / "index.html").unlink(), "sub/index.html: missing"),
    (lambda d: (d / "evidence.json").write_text((d / "evidence.json").read_text().replace("READY", "NOT READY")),
     "evidence.json: its contents were edited"),
])
def test_an_edited_or_missing_artifact_is_named(tmp_path: Path, damage: Callable[[Path], object], named: str) -> None:
    damage(bundle(tmp_path))
    done = verify(tmp_path)
    assert done.returncode == 1, done.stdout
    assert f"MISMATCH {named}" in done.stdout
    assert "EVIDENCE DOES NOT VERIFY" in done.stdout


def test_each_damaged_file_is_named_not_only_the_first(tmp_path: Path) -> None:
    bundle(tmp_path)
    (tmp_path / "operator-log.md").write_text("x")
    (tmp_path / "sub" / "index.html").unlink()
    done = verify(tmp_path)
    assert done.returncode == 1
    assert "operator-log.md: differs" in done.stdout and "sub/index.html: missing" in done.stdout


def test_a_path_leaving_the_bundle_is_refused(tmp_path: Path) -> None:
    bundle(tmp_path)
    body = json.loads((tmp_path / "evidence.json").read_text())
    body["files"]["operator_log_md"]["path"] = "../../etc/passwd"
    body["bundle_sha256"] = evidence._digest(body)
    (tmp_path / "evidence.json").write_text(json.dumps(body))
    done = verify(tmp_path)
    assert done.returncode == 1 and "is not a path inside the bundle" in done.stdout


@pytest.mark.parametrize("content", [None, "not json", "[]"])
def test_no_bundle_is_a_usage_error(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "evidence.json").write_text(content)
    done = verify(tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("cutover: error: ")


def test_a_rehearsal_bundles_its_evidence_and_verify_catches_an_edit(
        pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    args = example(**REHEARSAL)
    key, line = ssh_signer(pytester.path / "keys", "rehearsal-lead@example.com")
    (pytester.path / "allowed").write_text(line)
    (pytester.path / "answers.yaml").write_text(ALL_PASS)
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", "--answers=answers.yaml",
                                           f"--sign-with={key}", *args)
    assert result.ret == 0, result.stdout.str()
    latest = pytester.path / "artifacts" / "latest"
    assert f"evidence signed: {latest.resolve() / evidence.SIGNATURE}" in result.stdout.str()
    signed = verify_signed(latest, pytester.path / "allowed")
    assert signed.returncode == 0 and "signed by rehearsal-lead@example.com" in signed.stdout, signed.stdout
    body = json.loads((latest / "evidence.json").read_text())
    files = body["files"]
    for role in ("cutover_report", "operator_log_md", "operator_log_json", "journal", "allure_html", "plan",
                 "snapshot_manifest"):
        assert files[role] is not None, role
        assert (latest / files[role]["path"]).is_file(), role
    assert (latest / "plan.toml").read_bytes() == DEFAULT_PLAN.read_bytes()
    assert body["plan"]["sha256"] == evidence.sha256_file(DEFAULT_PLAN)
    assert body["cutover_command"] == f"bundled {module_version()}"
    assert body["passed"] == body["required"] == 21 and body["not_passed"] == []
    assert body["snapshot"]["timestamp"] and body["times"]["restore_s"] is not None
    assert body["times"]["started_at"] and body["times"]["finished_at"] and body["suite_version"]
    assert verify(latest).returncode == 0

    log = latest / "operator-log.json"
    log.write_text(log.read_text().replace('"failed"', '"passed"') + " ")
    done = verify(latest)
    assert done.returncode == 1 and "operator-log.json: differs" in done.stdout, done.stdout


def test_a_missing_signing_key_stops_the_run_before_it_starts(
        pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    args = example(**REHEARSAL)
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", "--sign-with=absent-key", *args)
    assert result.ret == 4, result.stdout.str()
    assert "--sign-with absent-key: no such key file" in result.stderr.str()
    assert not (pytester.path / "artifacts").exists()


def test_the_cutover_command_is_the_bundled_version_or_the_operators_command_masked() -> None:
    assert cutover_command(resolve({}, {}, {})) == f"bundled {module_version()}"
    register_secret("tok-9f8e7d")
    given = resolve({"cutover_cmd": "TOKEN=tok-9f8e7d python scripts/cutover_patient_tenant.py --execute"}, {}, {})
    assert cutover_command(given) == "--cutover-cmd TOKEN=*** python scripts/cutover_patient_tenant.py --execute"


# --- what the hashes prove, and what a signature adds -------------------------------------------------


def verify_signed(directory: Path, allowed: Path | None,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    extra = [f"--allowed-signers={allowed}"] if allowed is not None else []
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    return subprocess.run([sys.executable, "-m", "cutover.cli", "evidence", "verify", str(directory), *extra],
                          capture_output=True, text=True, timeout=120, check=False, env={**environ, **(env or {})})


def rehearsal_bundle(directory: Path, verdict: str) -> Path:
    """A run's bundle whose operator log says ``verdict``, the way the suite writes one."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "operator-log.json").write_text(json.dumps({"verdict": verdict}))
    (directory / "operator-log.md").write_text(f"# Operator log: {verdict}\n")
    evidence.write(directory, {"operator_log_json": directory / "operator-log.json",
                               "operator_log_md": directory / "operator-log.md"}, {"verdict": verdict})
    return directory


def forge_ready(directory: Path) -> None:
    """What anyone who can write the directory can do: edit the claim in, recompute every hash by hand."""
    body = json.loads((directory / "evidence.json").read_text())
    for name in ("operator-log.json", "operator-log.md"):
        path = directory / name
        path.write_text(path.read_text().replace("NOT READY", "READY"))
    body["verdict"] = "REHEARSAL READY: 21 of 21 checks passed"
    body["files"]["operator_log_json"]["sha256"] = evidence.sha256_file(directory / "operator-log.json")
    body["files"]["operator_log_md"]["sha256"] = evidence.sha256_file(directory / "operator-log.md")
    body["bundle_sha256"] = evidence._digest(body)
    (directory / "evidence.json").write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def signers(tmp_path: Path) -> tuple[Path, Path]:
    """alice's private key, and an allowed-signers file that trusts alice only."""
    key, line = ssh_signer(tmp_path / "keys", "alice@example.com")
    allowed = tmp_path / "keys" / "allowed_signers"
    allowed.write_text(line)
    return key, allowed


def test_a_file_replaced_by_a_symlink_is_refused(tmp_path: Path) -> None:
    """The link's target has the recorded content, so every hash matches: the link is what is refused."""
    directory = bundle(tmp_path / "run")
    elsewhere = tmp_path / "elsewhere.md"
    elsewhere.write_bytes((directory / "operator-log.md").read_bytes())
    (directory / "operator-log.md").unlink()
    (directory / "operator-log.md").symlink_to(elsewhere)
    done = verify(directory)
    assert done.returncode == 1, done.stdout
    assert "MISMATCH operator-log.md: a symbolic link" in done.stdout


def test_a_symlinked_directory_or_evidence_json_is_refused(tmp_path: Path) -> None:
    directory = bundle(tmp_path / "run")
    shutil.move(directory / "sub", tmp_path / "sub")
    (directory / "sub").symlink_to(tmp_path / "sub")
    shutil.move(directory / "evidence.json", tmp_path / "evidence.json")
    (directory / "evidence.json").symlink_to(tmp_path / "evidence.json")
    done = verify(directory)
    assert done.returncode == 1, done.stdout
    assert "MISMATCH evidence.json: a symbolic link" in done.stdout and "MISMATCH sub: a symbolic link" in done.stdout


def test_the_latest_link_to_a_run_still_verifies(tmp_path: Path) -> None:
    """artifacts/latest is a link to the run's directory, outside the bundle: that one is fine."""
    bundle(tmp_path / "run")
    (tmp_path / "latest").symlink_to(tmp_path / "run")
    done = verify(tmp_path / "latest")
    assert done.returncode == 0, done.stdout


def test_a_not_ready_bundle_forged_into_ready_passes_hashes_alone_but_not_the_signature(
        tmp_path: Path, signers: tuple[Path, Path]) -> None:
    key, allowed = signers
    run = rehearsal_bundle(tmp_path / "run", "REHEARSAL NOT READY: A12 FAIL")
    evidence.sign(run, key)
    assert verify_signed(run, allowed).returncode == 0
    forge_ready(run)

    hashes_only = verify_signed(run, None)
    assert hashes_only.returncode == 0, hashes_only.stdout  # what hashes cannot prove, and the line says so
    assert "(REHEARSAL READY: 21 of 21 checks passed); hashes only" in hashes_only.stdout

    done = verify_signed(run, allowed)
    assert done.returncode == 1, done.stdout
    assert "MISMATCH evidence.json: its signature does not verify for alice@example.com" in done.stdout
    assert "EVIDENCE DOES NOT VERIFY" in done.stdout

    (run / evidence.SIGNATURE).unlink()  # the forger drops the signature instead
    unsigned = verify_signed(run, allowed)
    assert unsigned.returncode == 1, unsigned.stdout
    assert "MISMATCH evidence.json.sig: missing: the bundle is not signed" in unsigned.stdout


def test_a_signed_bundle_names_its_signer(tmp_path: Path, signers: tuple[Path, Path]) -> None:
    key, allowed = signers
    run = rehearsal_bundle(tmp_path / "run", "REHEARSAL READY: 21 of 21 checks passed")
    evidence.sign(run, key)
    done = verify_signed(run, allowed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "EVIDENCE VERIFIED: 2 files match" in done.stdout
    assert "signed by alice@example.com with ED25519 key SHA256:" in done.stdout
    from_env = verify_signed(run, None, {"CUTOVER_ALLOWED_SIGNERS": str(allowed)})
    assert from_env.returncode == 0 and "signed by alice@example.com" in from_env.stdout, from_env.stdout


def test_a_signature_by_a_key_not_allowed_fails(tmp_path: Path, signers: tuple[Path, Path]) -> None:
    _, allowed = signers
    mallory, _ = ssh_signer(tmp_path / "other", "mallory@example.com")
    run = rehearsal_bundle(tmp_path / "run", "REHEARSAL READY: 21 of 21 checks passed")
    evidence.sign(run, mallory)
    done = verify_signed(run, allowed)
    assert done.returncode == 1, done.stdout
    assert f"MISMATCH evidence.json.sig: not made by a key in {allowed}" in done.stdout


def test_a_signature_for_another_namespace_fails(tmp_path: Path, signers: tuple[Path, Path]) -> None:
    """A signature alice made for git (or anything else) does not vouch for evidence."""
    key, allowed = signers
    run = rehearsal_bundle(tmp_path / "run", "REHEARSAL READY: 21 of 21 checks passed")
    sig = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", "git"], input=(run / "evidence.json")
                         .read_bytes(), capture_output=True, check=True, timeout=60).stdout
    (run / evidence.SIGNATURE).write_bytes(sig)
    done = verify_signed(run, allowed)
    assert done.returncode == 1 and "its signature does not verify" in done.stdout, done.stdout


def test_rewriting_the_bundle_drops_an_earlier_signature(tmp_path: Path, signers: tuple[Path, Path]) -> None:
    key, _ = signers
    run = rehearsal_bundle(tmp_path / "run", "REHEARSAL READY: 21 of 21 checks passed")
    evidence.sign(run, key)
    rehearsal_bundle(run, "REHEARSAL NOT READY: A3 FAIL")
    assert not (run / evidence.SIGNATURE).exists()


def test_a_missing_signers_file_is_a_usage_error(tmp_path: Path) -> None:
    done = verify_signed(bundle(tmp_path), tmp_path / "nope")
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "--allowed-signers" in done.stderr and "no such file" in done.stderr


def test_signing_with_a_key_that_is_not_one_says_so(tmp_path: Path) -> None:
    run = rehearsal_bundle(tmp_path / "run", "REHEARSAL READY: 21 of 21 checks passed")
    (tmp_path / "not-a-key").write_text("hello\n")
    with pytest.raises(CutoverError, match="evidence not signed: ssh-keygen could not sign with"):
        evidence.sign(run, tmp_path / "not-a-key")
    with pytest.raises(CutoverError, match="--sign-with .*: no such key file"):
        evidence.sign(run, tmp_path / "absent")
    assert not (run / evidence.SIGNATURE).exists()


def test_a_signature_asked_for_and_not_made_is_never_a_green_run(
        pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    """--sign-with a file ssh-keygen cannot sign with: the run says so and exits 2, the bundle stays unsigned."""
    args = example(**REHEARSAL)
    (pytester.path / "answers.yaml").write_text(ALL_PASS)
    (pytester.path / "not-a-key").write_text("hello\n")
    result = pytester.runpytest_subprocess("-m", "manual", "-p", "no:randomly", "--answers=answers.yaml",
                                           "--sign-with=not-a-key", *args)
    out = result.stdout.str()
    assert result.ret == 2, out
    assert "evidence not signed: ssh-keygen could not sign with not-a-key" in out
    latest = pytester.path / "artifacts" / "latest"
    assert (latest / evidence.FILE).is_file() and not (latest / evidence.SIGNATURE).exists()
