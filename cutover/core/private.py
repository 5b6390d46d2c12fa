"""Files and directories only their owner can read, whatever the umask.

A run's artifacts name patients' rows (sample ids, the allow-list in a report) and the captured
idempotency key; on a shared machine the default umask (022) would let every user read them. Modes
are set explicitly, never left to the umask: a file is created with ``os.open(..., 0o600)`` and then
``fchmod``-ed (an existing file keeps its old mode through ``O_TRUNC``), a directory is ``chmod``-ed
after ``mkdir``. Trees written by other tools (allure-pytest's results, the Allure report) are
tightened afterwards with :func:`make_private`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """``path`` created (with its missing parents) and set to 0700; returns it."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(DIR_MODE)
    return path


def open_private(path: Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for "w", "a", "wb" or "ab", the file 0600 before anything is written."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, text: str) -> None:
    """``path.write_text(text)`` with the file 0600."""
    with open_private(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def make_private(root: Path) -> None:
    """``root`` and every directory under it 0700, every file 0600; symlinks are neither followed
    nor changed (``artifacts/latest`` points at a run, it holds nothing itself)."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod(DIR_MODE if path.is_dir() else FILE_MODE)
