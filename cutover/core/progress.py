"""Progress reporting: long steps (initdb, generating, restoring) report lines through a ``Log``.

Callers choose the sink (stderr for the CLI, the terminal reporter under pytest); library code
only calls it, and stays silent when given :func:`quiet`.
"""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]


def quiet(_: str) -> None:
    """The sink that drops every line."""
    return None
