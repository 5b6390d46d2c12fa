"""``cutover plan upgrade``: a plan of an earlier format rewritten in the current one, comments kept.

An earlier format already loads, with the defaults of the keys added since (``ADDED_SINCE``); the
upgrade writes those defaults into the file, so that the plan an operator reviews and keeps in the
evidence says everything the suite will do. It shows the difference first and writes only when asked:
the operator reviews a change to a rehearsed plan before it is made.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
from pathlib import Path

from cutover.core.errors import PlanError
from cutover.core.plan import ADDED_SINCE, FEATURES_SINCE, PLAN_FORMAT, features_toml, load_plan, plan_from

# A section header on a line of its own ([audit], [classification.event_type]), not an array's line.
_HEADER = r"\[\s*{}\s*\]\s*(#.*)?"


def upgraded(path: Path) -> tuple[str, str]:
    """(the file's text, the same plan in the current format); equal when there is nothing to do.

    Either plan failing to load, or the upgrade changing what the plan means, is a :class:`PlanError`.
    """
    plan = load_plan(path)
    text = path.read_text()
    if plan.format == PLAN_FORMAT:
        return text, text
    raw = tomllib.loads(text)
    new = _with_format(text, "format" in raw["plan"])
    for (since, section, key), value in ADDED_SINCE.items():
        if plan.format < since and key not in raw.get(section, {}):
            new = _add(new, section, f"{key} = {json.dumps(value)}")
    # The cutover's own table ([audit] own = true) has no classification to extend.
    classification = None if plan.audit.own else plan.table(plan.audit.table).classification
    kind = plan.audit.allow_list_part
    if classification is not None and kind not in raw.get("classification", {}).get(classification, {}):
        new = _add(new, f"classification.{classification}", f"{json.dumps(kind)} = \"system\"")
    if plan.format < FEATURES_SINCE and "features" not in raw:  # a new section: the earlier plan's features
        new = (new.rstrip("\n") + "\n\n# What the schema has (docs/plan.md, [features]); added by `cutover plan "
               "upgrade`.\n" + features_toml(plan.features))
    again = plan_from(tomllib.loads(new), path)
    if dataclasses.replace(again, format=plan.format) != plan:
        raise PlanError(f"plan upgrade: the upgraded {path} would not mean the same plan; upgrade it by hand "
                        f"(docs/plan.md, Formats)")
    return text, new


def diff(path: Path, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=str(path), tofile=f"{path} (format {PLAN_FORMAT})"))


def write(path: Path, text: str) -> None:
    """Replace the file whole or not at all."""
    tmp = path.with_name(f".{path.name}.upgrade.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _with_format(text: str, present: bool) -> str:
    if present:
        return re.sub(r"(?m)^(\s*format\s*=\s*)\d+", rf"\g<1>{PLAN_FORMAT}", text, count=1)
    return _add(text, "plan", f"format = {PLAN_FORMAT}", first=True)


def _add(text: str, section: str, line: str, first: bool = False) -> str:
    """``line`` in ``[section]``: right after its header, or after its last key (comments stay below it)."""
    lines = text.splitlines(keepends=True)
    header = re.compile(_HEADER.format(re.escape(section)))
    start = next((i for i, ln in enumerate(lines) if header.fullmatch(ln.rstrip("\r\n"))), None)
    if start is None:
        raise PlanError(f"plan upgrade: no [{section}] header to add '{line}' under; add it by hand")
    at = start
    if not first:
        any_header = re.compile(_HEADER.format(r"[^\[\]]+"))
        for i in range(start + 1, len(lines)):
            if any_header.fullmatch(lines[i].rstrip("\r\n")):
                break
            if lines[i].strip() and not lines[i].lstrip().startswith("#"):
                at = i
    if not lines[at].endswith("\n"):
        lines[at] += "\n"
    lines.insert(at + 1, line + "\n")
    return "".join(lines)

