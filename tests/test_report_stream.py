"""The report read back without its allow-list in memory (sweep and reverse at any size).

Sweep and reverse used to load the whole report, allow-list included, to append one record to it:
hundreds of MB at scale 100. They now read the report's head and stream the keys from the file,
and write the report back by copying the allow-list's bytes. These tests hold the streamed reading
to the plain ``json`` reading on keys chosen to break a hand-written reader, with chunks small
enough that every key straddles a boundary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cutover.reference import reports

AWKWARD = ["plain", "co,mma", 'qu"ote', "br]ack[et", "new\nline", "back\\slash", "tab\t", "ünïcödé ✓ 𝄞",
           '\n    "looks like a table": [', "", " "]
REPORT: dict[str, Any] = {"run_id": "r-1", "commit_status": "committed", "moved": {"cases": 3}, "note": "x,\n]"}
ALLOW: dict[str, list[Any]] = {
    "cases": AWKWARD,
    "case_shares": [[k, i] for i, k in enumerate(AWKWARD)] + [[1.5, -2], [10**20, None]],
    "empty": [],
    "numbers": [1, 22, 333, 4444, 55555, -6, 7.25],
}


@pytest.fixture(params=[1, 3, 7, 1 << 20], ids=lambda n: f"chunk{n}")
def chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(reports, "_CHUNK", request.param)
    return int(request.param)


def written(tmp_path: Path) -> Path:
    return reports.write(tmp_path / "report.json", {**REPORT, "allow_list": ALLOW})


def test_a_streamed_report_reads_as_the_whole_file_does(tmp_path: Path, chunk: int) -> None:
    path = written(tmp_path)
    streamed = reports.load_streamed(path)
    assert isinstance(streamed["allow_list"], reports.AllowList)
    assert {k: v for k, v in streamed.items() if k != "allow_list"} == REPORT
    assert {t: list(keys) for t, keys in streamed["allow_list"].items()} == ALLOW
    assert {t: list(keys) for t, keys in streamed["allow_list"].items()} == ALLOW, "a second pass reads the same"
    assert {t: [json.loads(k) for k in streamed["allow_list"].texts(t)] for t in ALLOW} == ALLOW


def test_a_streamed_report_written_back_keeps_its_allow_list_and_takes_the_new_record(
    tmp_path: Path, chunk: int
) -> None:
    path = written(tmp_path)
    streamed = reports.load_streamed(path)
    streamed["reverse"] = {"run_id": "r-2", "moved": {"cases": 3}}
    reports.write(path, streamed)
    again = json.loads(path.read_text())
    assert again == {**REPORT, "reverse": {"run_id": "r-2", "moved": {"cases": 3}}, "allow_list": ALLOW}
    assert again == reports.load(path)


@pytest.mark.parametrize("layout", ["pretty, allow-list first", "compact", "pretty, no trailing newline"])
def test_a_report_laid_out_otherwise_is_read_whole(tmp_path: Path, layout: str) -> None:
    """A report saved by another tool (an operator's editor, jq) is still a report: read whole."""
    path = tmp_path / "report.json"
    if layout == "compact":
        text = json.dumps({**REPORT, "allow_list": ALLOW})
    elif layout == "pretty, allow-list first":
        text = json.dumps({"allow_list": ALLOW, **REPORT}, indent=2) + "\n"
    else:
        text = json.dumps({**REPORT, "allow_list": ALLOW}, indent=2)
    path.write_text(text)
    loaded = reports.load_streamed(path)
    assert {t: list(keys) for t, keys in loaded["allow_list"].items()} == ALLOW
    assert {k: v for k, v in loaded.items() if k != "allow_list"} == REPORT


@pytest.mark.parametrize("layout", ["pretty, allow-list first", "compact"])
def test_a_report_read_whole_written_back_keeps_its_allow_list(tmp_path: Path, layout: str) -> None:
    """Sweep and reverse write the report they read back with their record; one another tool laid
    out is read whole, and its allow-list, a plain mapping then, must come through key for key."""
    path = tmp_path / "report.json"
    whole = {"allow_list": ALLOW, **REPORT} if layout == "pretty, allow-list first" else {**REPORT, "allow_list": ALLOW}
    path.write_text(json.dumps(whole, indent=2 if layout.startswith("pretty") else None))
    loaded = reports.load_streamed(path)
    assert not isinstance(loaded["allow_list"], reports.AllowList), "the control: this layout is read whole"
    loaded["reverse"] = {"run_id": "r-2", "moved": {"cases": 3}}
    reports.write(path, loaded)
    assert json.loads(path.read_text()) == {**REPORT, "reverse": {"run_id": "r-2", "moved": {"cases": 3}},
                                            "allow_list": ALLOW}
    assert isinstance(reports.load_streamed(path)["allow_list"], reports.AllowList), "written back as write lays out"


def test_a_report_written_from_spool_files_holds_every_key(tmp_path: Path, chunk: int) -> None:
    """The execute's spool holds a key per line, as JSON; the report turns each newline into a comma
    a chunk at a time, so a key's own escaped newline, comma or bracket must come through whole."""
    files = {}
    for table, keys in ALLOW.items():
        files[table] = tmp_path / f"{table}.ids"
        files[table].write_bytes("\n".join(json.dumps(k) for k in keys).encode())
    path = reports.write(tmp_path / "report.json", REPORT, files)
    assert json.loads(path.read_text())["allow_list"] == ALLOW
    streamed = reports.load_streamed(path)["allow_list"]
    assert {table: list(streamed[table]) for table in streamed} == ALLOW


def test_finding_the_tables_of_a_large_report_reads_it_a_chunk_at_a_time(tmp_path: Path) -> None:
    """Reading a table's name stopped only at a delimiter it knew, and ':' was not one: the scanner
    read on to the end of the file, so sweep held the whole report (184 MB at scale 100)."""
    import tracemalloc

    keys = [f"{i:0100d}" for i in range(200_000)]  # a 20 MB allow-list
    path = reports.write(tmp_path / "report.json", {**REPORT, "allow_list": {"cases": keys, "events": keys}})
    tracemalloc.start()
    try:
        streamed = reports.load_streamed(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert list(streamed["allow_list"]) == ["cases", "events"]
    size = path.stat().st_size
    assert peak < 8 * reports._CHUNK, f"{peak / 1e6:.1f} MB to find the tables of a {size / 1e6:.0f} MB report"
