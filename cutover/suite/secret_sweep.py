"""The secret sweep of a run's artifacts: every text file under a directory redacted in place.

The operator log, the journal, the Allure results and the evidence bundle are written by different
hands; one sweep over the directory, before the HTML report embeds them encoded (where no later sweep
could see a secret) and again after, is what keeps a password out of all of them. Every pattern it
masks is ``core/redact``'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cutover.core.redact import redact


def _redact_json(value: Any) -> Any:
    """Every string of a parsed JSON document redacted. Its text is not what was said: a password
    with a quote or a non-ASCII letter is escaped there (``p\\u00e4ss``), where no mask finds it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_json(v) for k, v in value.items()}
    return value


def _redact_file_text(path: Path, text: str) -> str:
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError:
            return redact(text)
        clean = _redact_json(data)
        return text if clean == data else json.dumps(clean, indent=2, default=str)
    if path.suffix == ".jsonl":
        lines = []
        for line in text.splitlines():
            try:
                lines.append(json.dumps(_redact_json(json.loads(line))) if line.strip() else line)
            except ValueError:
                lines.append(redact(line))
        return "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    return redact(text)


def sweep_secrets(root: Path) -> int:
    """Redact every text file under ``root`` in place (JSON by its strings); returns how many files changed."""
    changed = 0
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        clean = _redact_file_text(path, text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")
            changed += 1
    return changed
