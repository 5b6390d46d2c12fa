"""Live step progress for the cutover commands: what is running, for how long, how many rows.

In a maintenance window a silent terminal is indistinguishable from a hung one. On a TTY the
running step shows a live spinner with its elapsed time; in a pipe or a log each step is one plain,
greppable line when it starts and when it ends. Everything goes to stderr: stdout is for results.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from cutover.core.redact import redact
from cutover.reference.engine import StepEvent


class StepDisplay:
    """Prints :class:`StepEvent`s; call it as the engine's progress callback."""

    def __init__(self, stream: IO[str] | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._status: Any = None
        self._console: Any = None
        if self.live:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def __call__(self, event: StepEvent) -> None:
        label = f"[{event.number:2d}/{event.total}] {event.name}"
        if not event.done:
            if self.live:
                self._status = self._console.status(redact(label) + " ...")
                self._status.start()
            else:
                print(redact(f"{label} ..."), file=self.stream, flush=True)
            return
        rows = "" if event.rows is None else f", {event.rows} rows"
        line = redact(f"{label}: done in {event.seconds:.2f} s{rows}")
        if self.live:
            self.close()
            self._console.print(line, markup=False)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """Stop a running spinner (also on failure, so the terminal is left clean)."""
        if self._status is not None:
            self._status.stop()
            self._status = None
