"""The exit codes are a contract with operators' scripts: one enum, its numbers pinned, the README's table its copy."""

from __future__ import annotations

from pathlib import Path

from cutover.core.exit_codes import MEANINGS, ExitCode, markdown_table

README = Path(__file__).parent.parent / "README.md"


def test_the_numbers_operators_rely_on_never_change() -> None:
    """Runbooks and CI branch on these numbers; a renumbering (or a meaning moved to another number) fails here."""
    assert {name: int(code) for name, code in ExitCode.__members__.items()} == {
        "OK": 0, "FAILED": 1, "BLOCKED": 1, "NO_GO": 1, "SETUP": 2, "COMMAND_USAGE": 2, "ALREADY_CUT_OVER": 3,
        "ROLLED_BACK": 4, "BAD_PLAN": 4, "USAGE": 4, "REPORT_LOST": 5, "NOTHING_COLLECTED": 5, "INCOMPLETE": 6,
        "INTERRUPTED": 130,
    }


def test_every_name_has_one_meaning_and_no_meaning_lacks_its_name() -> None:
    assert list(MEANINGS) == list(ExitCode.__members__)
    assert all(MEANINGS.values())


def test_readme_exit_code_table_is_the_enum() -> None:
    readme = README.read_text()
    assert markdown_table() in readme, "README's exit-code table differs from cutover/core/exit_codes.py:\n" + (
        markdown_table())
    documented = [line for line in readme.splitlines() if line.startswith("| ") and "` | " in line
                  and line.split(" | ")[0].lstrip("| ").isdigit()]
    assert len(documented) == len(ExitCode.__members__), documented
