"""The cutover report: written atomically, checked for writability before any transaction opens.

The report is the operator's record of the window and the input of the reverse migration, so it must
never disagree with the database: it is written only once the outcome is known, replaced atomically
(a half-written report is worse than none), never overwrites a committed report with a later
failure, and can be rebuilt from the audit events the cutover writes in the same transaction.
"""

from __future__ import annotations

import codecs
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from cutover.core import audit, tenants
from cutover.core.db import Connection, hidden_by_row_security
from cutover.core.errors import CutoverError
from cutover.core.plan import Plan
from cutover.core.row_keys import CutoverReport


def check_writable(path: Path) -> None:
    """Fail before the transaction, not after the commit, if the report cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CutoverError(f"--report-path {path} is a directory; pass a file path")
    if not parent.is_dir():
        raise CutoverError(f"--report-path {path}: directory {parent} does not exist; create it or pass another path")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".cutover-probe-"):
            pass
    except OSError as exc:
        raise CutoverError(f"--report-path {path} is not writable ({exc.strerror}); pass a writable path") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise CutoverError(f"--report-path {path} exists and is not writable; pass another path")


def load(path: Path) -> CutoverReport:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CutoverError(f"report {path} not found; pass the execute's --report-path, or rebuild it with "
                           f"'cutover report --rebuild --report-path {path}'") from None
    except (OSError, ValueError) as exc:
        raise CutoverError(f"report {path} is not a readable cutover report ({exc}); rebuild it with "
                           f"'cutover report --rebuild'") from None
    if not isinstance(data, dict) or "run_id" not in data:
        raise CutoverError(f"report {path} is not a cutover report (no run_id); rebuild it with 'cutover report "
                           f"--rebuild'")
    return cast(CutoverReport, data)


def load_streamed(path: Path) -> CutoverReport:
    """The report with its allow-list left on disk: ``allow_list`` is an :class:`AllowList` that
    streams each table's keys from the file when iterated, so sweep and reverse keep memory flat
    however many rows the cutover moved. A report in another layout is read whole."""
    try:
        head = _streamed_head(path)
    except (OSError, ValueError):
        head = None
    if head is None:
        return load(path)
    report, offset = head
    if not isinstance(report, dict) or "run_id" not in report:
        return load(path)
    try:
        report["allow_list"] = AllowList(path, offset)
    except ValueError:
        return load(path)
    return cast(CutoverReport, report)


_ALLOW_MARK = b'\n  "allow_list": '
_CHUNK = 1 << 20


def _streamed_head(path: Path) -> tuple[Any, int] | None:
    """The report's keys before its allow-list (as :func:`write` lays it out, last and at the top
    level: JSON strings cannot hold a raw newline, so the mark is never inside a value) and the
    allow-list's byte offset; ``None`` when the file is laid out otherwise."""
    with open(path, "rb") as fh:
        head = b""
        while True:
            chunk = fh.read(_CHUNK)
            at = (head[-len(_ALLOW_MARK):] + chunk).find(_ALLOW_MARK)
            if at >= 0:
                start = len(head) - min(len(head), len(_ALLOW_MARK)) + at
                head = (head + chunk)[:start]
                break
            if not chunk:
                return None
            head += chunk
    text = head.decode("utf-8").rstrip()
    body = json.loads(text[:-1] + "}" if text.endswith(",") else text + "\n}")
    return body, start + len(_ALLOW_MARK)


class AllowList(Mapping[str, Iterable[Any]]):
    """A report's allow-list read lazily from the file: table -> keys, each pass a new stream.

    Where each table's list starts is found without parsing the keys: :func:`write` puts every key
    on one line (JSON text has no raw newline), so a table name is the only thing that opens a line
    with four spaces and a quote. A table's keys are then parsed one at a time from there
    (:meth:`texts` gives them as the JSON text the file holds).
    """

    def __init__(self, path: Path, offset: int) -> None:
        self.path, self.offset = path, offset
        self.starts: dict[str, int] = {}
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - len(_END)))
            if fh.read() != _END:
                raise ValueError("not laid out by write()")
            fh.seek(offset)
            if fh.read(1) != b"{":
                raise ValueError("allow_list is not an object")
            for at in _lines_opening(fh, offset, _TABLE_MARK):
                scan = _Scanner(fh, at)
                name, _ = scan.value()
                scan.expect(":")
                scan.expect("[")
                self.starts[str(name)] = scan.offset()
    def __getitem__(self, table: str) -> Iterable[Any]:
        if table not in self.starts:
            raise KeyError(table)
        return _Stream(self.path, self.starts[table], raw=False)

    def texts(self, table: str) -> Iterable[str]:
        return _Stream(self.path, self.starts[table], raw=True)

    def same_text(self, table: str, parts: Iterable[bytes]) -> int | None:
        """How many keys the table's list holds if its bytes are exactly ``parts`` (audit parts' key
        text, a key a line) joined as :func:`write` joins them, else ``None``; never parses a key.

        The execute's report and a rebuilt one are written from that very text, so this answers
        for them at the speed of reading the file; anything else (an edit, an earlier layout)
        gets ``None``, and the caller compares key by key.
        """
        keys = 0
        with open(self.path, "rb") as fh:
            fh.seek(self.starts[table])
            for part in parts:
                expected = (b"," if keys else b"") + part.replace(b"\n", b",")
                if not part or fh.read(len(expected)) != expected:
                    return None
                keys += part.count(b"\n") + 1
            return keys if fh.read(1) == b"]" else None

    def __iter__(self) -> Iterator[str]:
        return iter(self.starts)

    def __len__(self) -> int:
        return len(self.starts)


_END = b"\n  }\n}\n"
_AFTER_VALUE = frozenset(" \t\r\n,]}:")  # ":" ends an object key: without it a name read to the end of the file
_TABLE_MARK = b'\n    "'


def _lines_opening(fh: Any, offset: int, mark: bytes) -> list[int]:
    """Byte offsets just past the newline and indentation of each ``mark`` after ``offset``."""
    fh.seek(offset)
    found: list[int] = []
    base, tail = offset, b""
    while chunk := fh.read(_CHUNK):
        data = tail + chunk
        at = data.find(mark)
        while at >= 0:
            found.append(base - len(tail) + at + len(mark) - 1)
            at = data.find(mark, at + 1)
        tail = data[-(len(mark) - 1):]
        base += len(chunk)
    return found


class _Stream:
    """One table's keys, re-iterable: each iteration opens the file and parses from the list's start."""

    def __init__(self, path: Path, offset: int, raw: bool) -> None:
        self.path, self.offset, self.raw = path, offset, raw

    def __iter__(self) -> Iterator[Any]:
        with open(self.path, "rb") as fh:
            for value, text in _Scanner(fh, self.offset).items():
                yield text if self.raw else value


class _Scanner:
    """A forward JSON reader over a file, a chunk at a time, that knows the byte offset it is at."""

    def __init__(self, fh: Any, offset: int) -> None:
        fh.seek(offset)
        self.fh, self.base, self.buf, self.pos, self.eof = fh, offset, "", 0, False
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.json = json.JSONDecoder()

    def _fill(self) -> bool:
        if self.eof:
            return False
        if self.pos > _CHUNK:
            self.base += len(self.buf[:self.pos].encode("utf-8"))
            self.buf, self.pos = self.buf[self.pos:], 0
        chunk = self.fh.read(_CHUNK)
        self.eof = not chunk
        self.buf += self.decoder.decode(chunk, final=self.eof)
        return True

    def _ws(self) -> None:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf) or not self._fill():
                return

    def take(self, char: str) -> bool:
        self._ws()
        if self.buf.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def expect(self, char: str) -> None:
        if not self.take(char):
            raise ValueError(f"expected {char!r} at byte {self.offset()}")

    def at_end(self) -> bool:
        self._ws()
        return self.pos >= len(self.buf)

    def offset(self) -> int:
        return self.base + len(self.buf[:self.pos].encode("utf-8"))

    def value(self) -> tuple[Any, str]:
        """The next JSON value and its text; a value is only taken whole (``7.25`` cut after ``7`` by
        the chunk's end parses as 7), so it must be followed by a delimiter or by the end of the file."""
        self._ws()
        while True:
            try:
                value, end = self.json.raw_decode(self.buf, self.pos)
                if (end < len(self.buf) and self.buf[end] in _AFTER_VALUE) or self.eof:
                    text, self.pos = self.buf[self.pos:end], end
                    return value, text
            except json.JSONDecodeError:
                if self.eof:
                    raise ValueError(f"not a JSON value at byte {self.offset()}") from None
            self._fill()

    def items(self) -> Iterator[tuple[Any, str]]:
        """The values of a list whose ``[`` was just read, up to and including its ``]``."""
        if self.take("]"):
            return
        while True:
            yield self.value()
            if self.take("]"):
                return
            self.expect(",")


def is_committed_report(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("commit_status") == "committed")
    except (OSError, ValueError, AttributeError):
        return False


def write(path: Path, report: Mapping[str, Any], id_files: Mapping[str, Path | Iterable[str]] | None = None) -> Path:
    """Write ``report`` atomically; allow-list keys are streamed from ``id_files`` (a spool file, or
    any iterable of keys as JSON text, such as the audit parts read back by a cursor), never held in
    memory whole. Without ``id_files`` the report keeps its own allow-list: one streamed from its
    file (:func:`load_streamed`) is copied byte for byte, one read whole (a report another tool laid
    out, which sweep and reverse write back with their record) is written key by key.

    A failed run never replaces a committed report at the same path: it goes next to it instead,
    and the returned path says where.
    """
    if report.get("commit_status") != "committed" and path.exists() and is_committed_report(path):
        path = path.with_name(f"{path.name}.{report['run_id']}.{report.get('commit_status', 'failed')}.json")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            body = {k: v for k, v in report.items() if k != "allow_list"}
            text = json.dumps(body, indent=2, sort_keys=False, default=str)
            out.write(text[:-2] if len(text) > 2 else "{")
            streamed = report.get("allow_list")
            if isinstance(streamed, AllowList) and not id_files:  # unchanged: copied, never parsed
                out.write(",\n  \"allow_list\": ")
                out.flush()
                with open(streamed.path, "rb") as src:
                    src.seek(streamed.offset)
                    shutil.copyfileobj(src, out.buffer, _CHUNK)
            else:
                out.write(",\n  \"allow_list\": {")
                sources = id_files or _key_texts(streamed or {})
                for i, (table, source) in enumerate(sources.items()):
                    out.write(("," if i else "") + f"\n    {json.dumps(table)}: [")
                    if isinstance(source, Path):
                        out.flush()
                        _copy_lines(source, out.buffer.write)
                    else:
                        for j, row_id in enumerate(source):
                            out.write(("," if j else "") + row_id)
                    out.write("]")
                out.write(_END.decode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _key_texts(allow: Mapping[str, Iterable[Any]]) -> dict[str, Iterable[str]]:
    """A report's own allow-list (table -> keys) as :func:`write` takes ``id_files``: each key as its JSON text."""
    return {table: (json.dumps(key) for key in keys) for table, keys in allow.items()}


def _copy_lines(path: Path, write: Callable[[bytes], object]) -> None:
    """A spool file's keys as the body of a JSON array: one key per line there (a JSON text never
    holds a raw newline), so each newline becomes a comma, chunk by chunk, never a key at a time."""
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            write(chunk.replace(b"\n", b","))


def rebuild(conn: Connection, plan: Plan, run_id: str | None = None) -> tuple[CutoverReport, dict[str, Iterable[str]]]:
    """The report of a committed run, from the database alone (its audit events), and its allow-list
    (keys as JSON text, for :func:`write`).

    The allow-list is stored in audit parts (see the execute's ``write_parts``; a run of an earlier
    version kept a small one in the completed event); they are streamed with a server-side cursor,
    one part at a time, so write the report before closing ``conn``.
    """
    hidden = hidden_by_row_security(conn, plan.all_tables)
    if hidden is not None:
        raise CutoverError(f"cannot rebuild the report: {hidden}")
    plan = tenants.typed(conn, plan)
    done = audit.events(conn, plan, [plan.audit.completed], run_id=run_id)
    if not done:
        which = f"run {run_id}" if run_id else "any run"
        raise CutoverError(f"no {plan.audit.completed} event for {which} on '{plan.target}'; nothing was committed")
    event = done[-1].payload
    report = dict(event)
    report["commit_status"] = "committed"
    report["rebuilt_from_database"] = True
    mine = event["run_id"]
    report["sweeps"] = [e.payload for e in audit.events(conn, plan, [plan.audit.swept], cutover_run_id=mine)]
    reverses = audit.events(conn, plan, [plan.audit.reversed], cutover_run_id=mine)
    if reverses:
        report["reverse"] = reverses[-1].payload
    ids: dict[str, Iterable[str]] = {}
    parts = report.pop("allow_list_parts", None) or {}
    if "allow_list" not in report:  # in parts: always since the parts hold key text (see write_parts)
        keys = audit.part_keys(conn, plan, mine)
        for table, n in parts.items():
            found = keys.get(table, [])
            if len(found) != n:
                raise CutoverError(f"run {mine}: {table}'s allow-list was stored in {n} {plan.audit.allow_list_part} "
                                   f"events but {len(found)} are in the database; the audit trail was altered")
            ids[table] = audit.part_ids(conn, plan, found)
    else:
        ids = {t: [json.dumps(k) for k in v] for t, v in (report.pop("allow_list", None) or {}).items()}
    return cast(CutoverReport, report), ids
