"""The git revision of the checkout a run is started from, for the operator log's environment.

Read from the working directory (a run started from a checkout's root), not from the package: an
installed suite has no repository, and then the log says "unknown" rather than failing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_sha() -> str:
    """The short commit of the working directory's checkout, or "unknown": never a reason for no log."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path.cwd(), capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"
