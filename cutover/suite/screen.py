"""pytest's own usage errors, masked: a mistyped ``--db-ulr=postgresql://u:PASSWORD@…`` or a URL given
as a bare argument is echoed back by pytest ("unrecognized arguments: …", "file or directory not
found: …") before any of the suite's code has seen the value. Both go through :func:`redact` here.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NoReturn

import pytest

from cutover.core.redact import redact


def _masked(exc: pytest.UsageError) -> pytest.UsageError:
    return pytest.UsageError(*(redact(str(arg)) for arg in exc.args))


def mask_argument_errors(parser: pytest.Parser) -> None:
    """Wrap the argparse parser pytest reports unknown options through (``Parser.optparser``)."""
    optparser: Any = getattr(parser, "optparser", None)
    if optparser is None or getattr(optparser, "_cutover_masked", False):
        return
    original = optparser.error

    def error(message: str) -> NoReturn:
        try:
            original(message)
        except pytest.UsageError as exc:
            raise _masked(exc) from None
        raise pytest.UsageError(redact(message))  # pragma: no cover - argparse's error always raises

    optparser.error = error
    optparser._cutover_masked = True


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Generator[None, object, object]:
    """"file or directory not found: <argument>" is raised while collecting."""
    try:
        return (yield)
    except pytest.UsageError as exc:
        raise _masked(exc) from None
