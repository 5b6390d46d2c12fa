"""The borders between the four rooms (docs/architecture.md), as import-linter contracts in pyproject.toml.

They replace a name-matching test: a contract sees indirect imports too, and CI runs the same command.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(exe)], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_check_that_imports_the_cutover_breaks_a_contract(tmp_path: Path) -> None:
    """The contracts can fail: a copy of the package where a check imports the reference cutover."""
    shutil.copytree(ROOT / "cutover", tmp_path / "cutover")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    leak = tmp_path / "cutover" / "suite" / "checks" / "leak.py"
    leak.write_text("from cutover.reference import engine  # noqa: F401\n")
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout and "cutover.suite.checks.leak" in result.stdout
