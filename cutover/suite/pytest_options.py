"""From pytest's config to the resolved :class:`Settings`: the glue between pytest and the option table.

The table itself (flags, ini keys, environment, defaults, precedence) is in ``cutover.core.options``,
shared with the ``cutover`` command; this module only reads pytest's side of it and turns a bad value
or a misread command line into a usage error.
"""

from __future__ import annotations

import pytest

from cutover.core import options
from cutover.core.errors import CutoverError
from cutover.core.redact import redact


def add_options(parser: pytest.Parser) -> None:
    """Every option of the table, as a flag and an ini key, in one group of ``pytest --help``."""
    group = parser.getgroup("cutover", "Phase 2a patient tenant cutover suite")
    options.add_to_parser(group.addoption, parser.addini)


def resolve(config: pytest.Config) -> options.Settings:
    """CLI > ini > environment > default, once; a bad value is a usage error naming the option."""
    cli = {o.name: config.getoption(f"cutover_{o.name}") for o in options.OPTIONS}
    ini = {o.name: config.getini(o.ini) for o in options.OPTIONS}
    try:
        options.refuse_outside_the_command_line(ini)
        return options.resolve(cli, ini)
    except CutoverError as exc:
        raise pytest.UsageError(redact(str(exc))) from None


def check_write_opt_in(settings: options.Settings, reads_only: str | None) -> None:
    """Refuse, before anything connects, a ``--rehearse`` that a read-only run (``reads_only`` names it) was
    given or that does not say which database it may write to. The name is what makes the opt-in
    deliberate: a URL pasted from the wrong shell variable then fails the name check (on the database
    itself) instead of being cut over."""
    if settings.rehearse is None:
        return
    if reads_only is not None:
        raise pytest.UsageError(f"{reads_only} only reads its database; drop --rehearse (it would let the "
                                "rehearsal write to the --db-url target)")
    if settings.db_url is not None and not settings.rehearse:
        raise pytest.UsageError("a rehearsal on --db-url writes there, so --rehearse must name that database: pass "
                                "--rehearse=DBNAME, the dev-branch database the URL connects to (with '=')")
    if settings.db_url is None and settings.rehearse:
        raise pytest.UsageError(f"--rehearse={settings.rehearse} names a --db-url database, but no --db-url (or "
                                "DATABASE_URL) is given; pass the dev branch's --db-url, or a bare --rehearse "
                                "(or none) to rehearse on the sandbox")


def check_rootdir(config: pytest.Config) -> None:
    """pytest looks for its ini before it knows our options, so ``--report-path /abs/r.json`` makes it
    treat the file as a test path, miss pytest.ini (markers, testpaths, addopts) and collect the wrong
    tests. Say so instead of running a half-configured suite in a maintenance window."""
    here = config.invocation_params.dir
    if config.inipath is None and (here / "pytest.ini").is_file() and (here / "conftest.py").is_file():
        raise pytest.UsageError(
            f"pytest did not read {here / 'pytest.ini'} (rootdir became {config.rootpath}): an option's value "
            "was taken for a test path; write path options with '=', e.g. --report-path=/tmp/r.json")
