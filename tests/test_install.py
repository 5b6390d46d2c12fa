"""A plain (non-editable) install works away from the checkout: what an operator's machine has.

The package is built from a copy of the sources (pyproject.toml, README.md, cutover/ only: no tools/,
no tests, no git) and installed with ``pip install --no-deps --no-build-isolation --no-index`` into a
new virtualenv; the dependencies come from the dev venv through a .pth file that names links to every
package but this project's own, so nothing is downloaded and the editable install is not seen.
Everything then runs from a directory outside the checkout.

The operator-facing checks (smoke/, rehearsal/) are test files, not part of the package: with the
package alone, ``pytest -m setA`` collects nothing; with those two directories beside it, it collects
every check and Set B passes on a cut-over database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import OPERATOR_TESTS, ROOT, operator_tests

pytestmark = pytest.mark.install


@dataclass(frozen=True)
class Installed:
    venv: Path
    elsewhere: Path  # an empty directory outside the checkout, to run from

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def run(self, *argv: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_") and k != "PYTHONPATH"}
        return subprocess.run(list(argv), cwd=cwd or self.elsewhere, env={**clean, **(env or {})},
                              capture_output=True, text=True, timeout=300, check=False)


def dependencies_without_this_project(into: Path) -> Path:
    """Links to everything the dev venv has installed, except this project's own (editable) install."""
    into.mkdir()
    for site in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in Path(site).iterdir():
            name = entry.name
            if name.startswith(("cutover_suite", "__editable__", "cutover")) or (into / name).exists():
                continue
            (into / name).symlink_to(entry.resolve())
    return into


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    backend = metadata.version("setuptools")
    assert tuple(int(x) for x in backend.split(".")[:2]) >= (70, 1), (
        f"setuptools {backend} cannot build the wheel offline: re-run scripts/bootstrap.sh (the dev extra "
        "pins setuptools>=70.1)")
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "cutover", src / "cutover", ignore=shutil.ignore_patterns("__pycache__"))
    deps = dependencies_without_this_project(base / "deps")
    venv = base / "venv"
    python = str(getattr(sys, "_base_executable", "") or sys.executable)
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "dev-dependencies.pth").write_text(f"{deps}\n")
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    it = Installed(venv, elsewhere)
    done = it.run(it.python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                  str(src))
    assert done.returncode == 0, done.stdout + done.stderr
    yield it


def test_the_installed_package_finds_its_reference_model_and_sandbox_files(installed: Installed) -> None:
    probe = ("import json, cutover\n"
             "from cutover.core.plan import DEFAULT_PLAN, load_plan\n"
             "from cutover.sandbox import docker_image, snapshot\n"
             "plan = load_plan(DEFAULT_PLAN)\n"
             "print(json.dumps({'package': cutover.__file__, 'plan': str(DEFAULT_PLAN), 'tables': len(plan.tables),\n"
             "  'schema': str(snapshot.REFERENCE_DIR / 'schema.sql'),\n"
             "  'entrypoint': docker_image.ENTRYPOINT.is_file()}))")
    done = installed.run(installed.python, "-c", probe)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["package"]).is_relative_to(installed.venv), f"imported from the checkout: {found['package']}"
    for shipped in ("plan", "schema"):
        path = Path(found[shipped])
        assert path.is_relative_to(installed.venv), f"{shipped} read from the checkout: {path}"
        assert path.read_bytes() == (ROOT / "cutover" / "model" / path.name).read_bytes()
    assert found["tables"] > 0 and found["entrypoint"]


def test_the_installed_command_dry_runs_a_database_with_the_packaged_plan(installed: Installed,
                                                                          fresh_db: str) -> None:
    helped = installed.run(str(installed.venv / "bin" / "cutover"), "plan", "check", "--help")
    assert helped.returncode == 0 and "--plan" in helped.stdout, helped.stderr
    ready = installed.run(str(installed.venv / "bin" / "cutover"), "dry-run",
                          env={"DATABASE_URL": fresh_db, "CUTOVER_ACTOR": "test:install"})
    assert ready.returncode == 0 and "READY" in ready.stdout, ready.stdout + ready.stderr


def test_the_installed_plugin_loads_by_its_entry_point_but_the_checks_are_files(installed: Installed) -> None:
    helped = installed.run(installed.python, "-m", "pytest", "--help")
    assert helped.returncode == 0 and "--db-url" in helped.stdout, helped.stderr
    alone = installed.run(installed.python, "-m", "pytest", "--co", "-q", "-m", "setA")
    assert alone.returncode == 5 and "no tests collected" in alone.stdout, alone.stdout + alone.stderr


def test_with_the_operator_test_files_the_installed_suite_collects_and_runs_the_checks(
        installed: Installed, tmp_path: Path, cut_over_db: DatabaseUnderCheck) -> None:
    project = tmp_path / "operator"
    project.mkdir()
    for name, text in operator_tests(*OPERATOR_TESTS).items():
        (project / f"{name}.py").write_text(text)
    collected = installed.run(installed.python, "-m", "pytest", "--co", "-q", "-m", "setA", cwd=project)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    ids = collected.stdout
    assert all(f"test_A{i}_" in ids for i in range(1, 22)) and "test_A20active_" in ids, ids
    assert str(ROOT) not in ids
    set_b = installed.run(installed.python, "-m", "pytest", "-m", "setB", f"--db-url={cut_over_db.url}",
                          "-p", "no:cacheprovider", cwd=project)
    assert set_b.returncode == 0 and "SET B PASSED: 8 of 8" in set_b.stdout, set_b.stdout[-3000:] + set_b.stderr
