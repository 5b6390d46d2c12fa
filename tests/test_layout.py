"""The borders between the four rooms (docs/architecture.md), as import-linter contracts in pyproject.toml.

They replace a name-matching test: a contract sees indirect imports too, and CI runs the same command.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("cutover", "tests", "smoke", "rehearsal", "benchmarks", "scripts", "conftest.py")


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


def _aliased_project_imports(source: str) -> list[str]:
    """``import cutover.x as y`` / ``from cutover.x import m as y`` where m is a module: a grep for the
    module's name must find its callers (docs/architecture.md, Names)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{a.name} as {a.asname}" for a in node.names
                      if a.name.split(".")[0] == "cutover" and a.asname not in (None, a.name.rsplit(".", 1)[-1])]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "cutover":
            package = ROOT.joinpath(*(node.module or "").split("."))
            found += [f"{node.module}.{a.name} as {a.asname}" for a in node.names
                      if a.asname not in (None, a.name)
                      and ((package / f"{a.name}.py").is_file() or (package / a.name / "__init__.py").is_file())]
    return found


def test_no_project_module_is_imported_under_another_name() -> None:
    files = [f for s in SOURCES for f in ([ROOT / s] if s.endswith(".py") else (ROOT / s).rglob("*.py"))]
    aliased = {str(f.relative_to(ROOT)): hits for f in files if (hits := _aliased_project_imports(f.read_text()))}
    assert aliased == {}


def test_an_aliased_module_import_is_found() -> None:
    """The scan can fail: a module under another name, either spelling; a class alias is not a module."""
    assert _aliased_project_imports("from cutover.reference import engine as execution\n") == [
        "cutover.reference.engine as execution"]
    assert _aliased_project_imports("import cutover.core as core_package\n") == ["cutover.core as core_package"]
    assert _aliased_project_imports("from cutover.reference import engine\nimport cutover.core\n") == []
    assert _aliased_project_imports("from cutover.core.plan import Plan as LoadedPlan\n") == []
