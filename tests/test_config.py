"""Option precedence CLI > ini > environment > default, with `is None` semantics."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from cutover.core.errors import SetupError
from cutover.core.options import (
    DEFAULTS,
    OPTIONS,
    Settings,
    add_to_parser,
    option_table,
    refuse_outside_the_command_line,
    resolve,
)
from cutover.reference.engine import Timeouts
from cutover.sandbox.backends import SandboxSpec


def test_defaults_when_nothing_is_given() -> None:
    settings = resolve({}, {}, {})
    assert settings.sandbox == "auto"
    assert settings.db_url is None
    assert settings.snapshot_scale == 1
    assert settings.sources["sandbox"] == "default"


def test_cli_beats_ini_beats_env_beats_default() -> None:
    env = {"CUTOVER_SANDBOX": "docker", "CUTOVER_SNAPSHOT_SEED": "7"}
    assert resolve({}, {}, env).sandbox == "docker"
    assert resolve({}, {"sandbox": "local"}, env).sandbox == "local"
    assert resolve({"sandbox": "url"}, {"sandbox": "local"}, env).sandbox == "url"
    settings = resolve({"sandbox": "url"}, {"sandbox": "local"}, env)
    assert settings.sources["sandbox"] == "--sandbox"
    assert settings.snapshot_seed == 7 and settings.sources["snapshot_seed"] == "$CUTOVER_SNAPSHOT_SEED"


def test_zero_is_a_value_not_a_missing_option() -> None:
    # `or`-based resolution would replace 0 by the ini's 5: precedence must test `is None`.
    assert resolve({"snapshot_seed": 0}, {"snapshot_seed": 5}, {}).snapshot_seed == 0
    assert resolve({}, {"snapshot_seed": 0}, {"CUTOVER_SNAPSHOT_SEED": "9"}).snapshot_seed == 0


def test_database_url_is_the_last_fallback_and_empty_env_is_unset() -> None:
    assert resolve({}, {}, {"DATABASE_URL": "postgresql://a/b"}).db_url == "postgresql://a/b"
    both = {"DATABASE_URL": "postgresql://a/b", "CUTOVER_DB_URL": "postgresql://c/d"}
    assert resolve({}, {}, both).db_url == "postgresql://c/d"
    assert resolve({}, {}, {"CUTOVER_DB_URL": "", "DATABASE_URL": "postgresql://a/b"}).db_url == "postgresql://a/b"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CUTOVER_SNAPSHOT_SCALE": "big"}, r"\$CUTOVER_SNAPSHOT_SCALE must be a whole number"),
        ({"CUTOVER_SANDBOX": "podman"}, r"\$CUTOVER_SANDBOX must be one of auto, url, docker, local"),
    ],
)
def test_bad_values_name_their_source(env: dict[str, str], message: str) -> None:
    with pytest.raises(SetupError, match=message):
        resolve({}, {}, env)


def test_readme_configuration_table_matches_the_options() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for flag, ini, env, default in option_table():
        row = f"| `{flag}` | {ini if ini == '-' else f'`{ini}`'} | {env} | {default} |"
        assert row in readme, f"README configuration table lacks or misstates: {row}"
    documented = set(re.findall(r"^\| `(--[a-z-]+)` \|", readme, re.M))
    assert documented == {o.flag for o in OPTIONS}


def test_precedence_through_a_real_pytest_run(
    pytester: pytest.Pytester, example: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    example(test_show="""
        def test_show(cutover_settings):
            print("SEED", cutover_settings.snapshot_seed, cutover_settings.sources["snapshot_seed"])
            print("SCALE", cutover_settings.snapshot_scale, cutover_settings.sources["snapshot_scale"])
    """)
    pytester.makeini("[pytest]\ncutover_snapshot_seed = 11\ncutover_snapshot_scale = 3\n")
    monkeypatch.setenv("CUTOVER_SNAPSHOT_SEED", "22")
    monkeypatch.setenv("CUTOVER_SNAPSHOT_SCALE", "4")
    result = pytester.runpytest("-s", "--snapshot-seed", "33")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SEED 33 --snapshot-seed", "SCALE 3 ini cutover_snapshot_scale"])


def test_bad_option_value_is_a_usage_error(pytester: pytest.Pytester, example: Callable[..., list[str]]) -> None:
    example(test_x="def test_x(): pass")
    result = pytester.runpytest("--sandbox", "podman")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--sandbox*invalid choice*podman*"])


def test_a_write_switch_is_taken_from_the_command_line_only() -> None:
    """--rehearse lets a run write: its ini key and the variable it would have had stop the run, naming
    where it was found; on the command line it is a database name, a bare flag being the empty name."""
    assert [row for row in option_table() if row[0] == "--rehearse"] == [("--rehearse", "-", "-", "-")]
    assert resolve({}, {"rehearse": "true"}, {"CUTOVER_REHEARSE": "1"}).rehearse is None
    assert resolve({"rehearse": "dev"}, {"rehearse": "other"}, {"CUTOVER_REHEARSE": "x"}).rehearse == "dev"
    assert resolve({"rehearse": ""}, {}, {}).rehearse == ""
    with pytest.raises(SetupError, match=r"^\$CUTOVER_REHEARSE is not read: --rehearse .* command line only; "
                                         r"unset CUTOVER_REHEARSE and"):
        refuse_outside_the_command_line({}, {"CUTOVER_REHEARSE": "1"})
    with pytest.raises(SetupError, match=r"^ini cutover_rehearse is not read: .*; remove cutover_rehearse from "
                                         r"the ini file and"):
        refuse_outside_the_command_line({"rehearse": "true"}, {})
    refuse_outside_the_command_line({"sandbox": "local"}, {"CUTOVER_REHEARSE": "", "CUTOVER_SANDBOX": "local"})


@pytest.mark.parametrize(("argv", "value"), [([], None), (["--rehearse"], ""), (["--rehearse=dev_1"], "dev_1")])
def test_rehearse_on_the_command_line_is_bare_or_names_a_database(argv: list[str], value: str | None) -> None:
    parser = argparse.ArgumentParser()
    add_to_parser(parser.add_argument)
    assert parser.parse_args(argv).cutover_rehearse == value


def test_every_default_is_the_option_tables() -> None:
    """A default written a second time (Settings, the sandbox's spec, the cutover's timeouts) drifts from the table
    and from the README generated from it; they all read it."""
    assert Settings() == resolve({}, {}, {})
    assert Timeouts() == Timeouts(DEFAULTS["lock_timeout"], DEFAULTS["statement_timeout"])
    spec = SandboxSpec()
    assert (spec.backend, spec.startup_timeout, spec.snapshot_scale, spec.snapshot_seed) == (
        DEFAULTS["sandbox"], DEFAULTS["startup_timeout"], DEFAULTS["snapshot_scale"], DEFAULTS["snapshot_seed"])
