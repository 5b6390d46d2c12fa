"""Sweep and reverse take the allow-list from the database's own audit trail, never from the report file.

The reverse used to move back whatever the report listed: a report with one key added (the
cutover's own completed event) planned one row more than the cutover moved. The sweep appended its
record to whatever report it was given, another run's included. Now a report whose allow-list (or
sweeps) disagrees with the audit events is refused naming the difference, and one of another run is
refused; an untouched report, the control, goes through.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from cutover.core import audit
from cutover.core.plan import Plan
from cutover.reference import aftercare, reports
from tests.support import checksum, execute_sql, run_cutover, scalar


def cut_over(url: str, path: Path) -> dict[str, Any]:
    done = run_cutover(url, "execute", "--operator-confirmed", f"--report-path={path}")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(path.read_text()))


def completed_event_key(url: str, plan: Plan, run_id: str) -> str:
    a = plan.audit
    return str(scalar(url, sql.SQL("SELECT {k} FROM {t} WHERE {ty} = %s AND {pl} ->> 'run_id' = %s").format(
        k=sql.Identifier(a.key), t=sql.Identifier(a.table), ty=sql.Identifier(a.type_column),
        pl=sql.Identifier(a.payload_column)), (a.completed, run_id)))


def edited(path: Path, change: Any) -> Path:
    """The report at ``path`` with its allow-list changed by ``change`` (table -> keys), written the
    way the execute writes it (so the streamed reader, not a fallback, reads it back)."""
    report = json.loads(path.read_text())
    change(report["allow_list"])
    out = path.with_name("edited-" + path.name)
    reports.write(out, report)
    return out


def test_reverse_refuses_a_report_with_a_key_the_cutover_did_not_move(
        fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    report = cut_over(fresh_db, tmp_path / "r.json")
    events = cutover_plan.audit.table
    extra = completed_event_key(fresh_db, cutover_plan, report["run_id"])
    forged = edited(tmp_path / "r.json", lambda allow: allow[events].append(extra))
    before = checksum(fresh_db, cutover_plan, include_audit=True)

    dry = run_cutover(fresh_db, "reverse", "--dry-run", f"--report-path={forged}")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    first = dry.stderr.splitlines()[0]
    assert "reverse refused" in first and events in first and "nothing changed" in first, first
    counts = f"{report['moved'][events] + 1} keys in the report, {report['moved'][events]} in the database"
    assert counts in first, first
    assert extra in dry.stderr and "only in the report" in dry.stderr, dry.stderr

    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", f"--report-path={forged}")
    assert back.returncode == 1, back.stdout + back.stderr
    assert "reverse refused" in back.stderr and extra in back.stderr
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before, "a refused reverse changed the database"
    assert "reverse" not in json.loads(forged.read_text())

    control = run_cutover(fresh_db, "reverse", "--dry-run", f"--report-path={tmp_path / 'r.json'}", "--json")
    assert control.returncode == 0, control.stderr
    assert json.loads(control.stdout)["planned"] == report["moved"]


@pytest.mark.parametrize("change", ["missing", "altered"])
def test_reverse_refuses_a_report_missing_or_altering_a_key(
        fresh_db: str, cutover_plan: Plan, tmp_path: Path, change: str) -> None:
    report = cut_over(fresh_db, tmp_path / "r.json")
    gone = report["allow_list"]["messages"][3]

    def edit(allow: dict[str, list[Any]]) -> None:
        if change == "missing":
            allow["messages"].remove(gone)
        else:
            allow["messages"][3] = "msg-not-moved"

    back = run_cutover(fresh_db, "reverse", "--dry-run", f"--report-path={edited(tmp_path / 'r.json', edit)}")
    assert back.returncode == 1, back.stdout + back.stderr
    assert "reverse refused" in back.stderr and "messages" in back.stderr.splitlines()[0]
    assert f"only in the database: {gone}" in back.stderr, back.stderr
    if change == "altered":
        assert "only in the report: msg-not-moved" in back.stderr, back.stderr


def straggler(url: str, plan: Plan, key: str) -> None:
    execute_sql(url, sql.SQL("INSERT INTO events (id, tenant_id, event_type, payload, source_service) VALUES "
                             "({k}, {t}, 'intake.started', '{{}}', 'sse')").format(
        k=sql.Literal(key), t=sql.Literal(plan.source)))


def test_sweep_refuses_the_report_of_another_run(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    first = cut_over(fresh_db, tmp_path / "first.json")
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", f"--report-path={tmp_path / 'first.json'}")
    assert back.returncode == 0, back.stderr
    second = cut_over(fresh_db, tmp_path / "second.json")
    straggler(fresh_db, cutover_plan, "late-1")
    old = (tmp_path / "first.json").read_bytes()

    done = run_cutover(fresh_db, "sweep", f"--report-path={tmp_path / 'first.json'}")
    assert done.returncode == 1, done.stdout + done.stderr
    line = done.stderr.splitlines()[0]
    assert "sweep refused" in line and first["run_id"] in line and second["run_id"] in line, line
    assert (tmp_path / "first.json").read_bytes() == old, "the sweep wrote to another run's report"
    assert scalar(fresh_db, "SELECT tenant_id FROM events WHERE id = 'late-1'") == cutover_plan.source

    control = run_cutover(fresh_db, "sweep", f"--report-path={tmp_path / 'second.json'}", "--json")
    assert control.returncode == 0, control.stderr
    assert json.loads((tmp_path / "second.json").read_text())["sweeps"][0]["ids"] == {"events": ["late-1"]}


def test_sweep_refuses_a_report_whose_allow_list_was_edited(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    cut_over(fresh_db, tmp_path / "r.json")
    forged = edited(tmp_path / "r.json", lambda allow: allow["messages"].pop())
    straggler(fresh_db, cutover_plan, "late-1")
    old = forged.read_bytes()
    done = run_cutover(fresh_db, "sweep", f"--report-path={forged}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "sweep refused" in done.stderr.splitlines()[0] and "messages" in done.stderr.splitlines()[0]
    assert forged.read_bytes() == old
    assert scalar(fresh_db, "SELECT tenant_id FROM events WHERE id = 'late-1'") == cutover_plan.source


def test_reverse_refuses_a_report_whose_sweep_was_edited(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    cut_over(fresh_db, path)
    straggler(fresh_db, cutover_plan, "late-1")
    assert run_cutover(fresh_db, "sweep", f"--report-path={path}").returncode == 0
    report = json.loads(path.read_text())
    report["sweeps"][0]["ids"]["events"].append("evt-never-swept")
    reports.write(path, report)
    back = run_cutover(fresh_db, "reverse", "--dry-run", f"--report-path={path}")
    assert back.returncode == 1, back.stdout + back.stderr
    assert "reverse refused" in back.stderr and "evt-never-swept" in back.stderr


def test_reverse_moves_back_what_the_database_recorded(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    """Through the library as the property tests call it: the rows listed are the audit trail's,
    a sweep that the report never heard of (swept without --report-path) included."""
    pristine = checksum(fresh_db, cutover_plan)
    path = tmp_path / "r.json"
    cut_over(fresh_db, path)
    straggler(fresh_db, cutover_plan, "late-1")
    assert run_cutover(fresh_db, "sweep").returncode == 0
    dry = run_cutover(fresh_db, "reverse", "--dry-run", f"--report-path={path}", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(path.read_text())
    assert json.loads(dry.stdout)["planned"]["events"] == report["moved"]["events"] + 1
    assert json.loads(dry.stdout)["new_since_commit"] == {}
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", f"--report-path={path}")
    assert back.returncode == 0, back.stderr
    assert scalar(fresh_db, "SELECT tenant_id FROM events WHERE id = 'late-1'") == cutover_plan.source
    execute_sql(fresh_db, "DELETE FROM events WHERE id = 'late-1'")
    assert checksum(fresh_db, cutover_plan) == pristine


def keys(n: int, extra: str | None = None) -> Iterator[str]:
    for i in range(n):
        yield json.dumps(f"{i:0100d}")
        if extra is not None and i == n // 2:
            yield json.dumps(extra)


def test_the_comparison_holds_only_the_differences() -> None:
    """Memory flat at any size: two streams of 200,000 keys (20 MB of text) compared with only the
    keys that do not match yet in memory."""
    tracemalloc.start()
    try:
        same = aftercare.compare_keys(keys(200_000), keys(200_000))
        one_more = aftercare.compare_keys(keys(200_000, "extra"), keys(200_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert same.agrees and same.counts == (200_000, 200_000)
    assert not one_more.agrees and one_more.counts == (200_001, 200_000)
    assert one_more.only_left == ["extra"] and one_more.only_right == []
    assert peak < 1_000_000, f"{peak / 1e6:.1f} MB to compare 2 x 20 MB of keys"


def test_the_comparison_counts_past_its_memory_bound() -> None:
    left = (json.dumps(i) for i in range(1000))
    right = (json.dumps(i) for i in range(1000, 2000))
    out = aftercare.compare_keys(left, right, bound=10)
    assert not out.agrees and out.counts == (1000, 1000) and out.overflowed
    assert len(out.only_left) <= 10


def test_keys_are_compared_as_values_and_in_any_order() -> None:
    left = ['[1, "a"]', '"x"', "2"]
    right = ["2", '[1,"a"]', '"x"']
    assert aftercare.compare_keys(left, right).agrees
    assert not aftercare.compare_keys(['"2"'], ["2"]).agrees  # a text key is not the number


def test_reverse_refuses_an_audit_trail_that_lost_a_key(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    """The audit parts must list as many keys as the completed event says moved: a part edited in
    the database is not a list to move rows back by."""
    report = cut_over(fresh_db, tmp_path / "r.json")
    a = cutover_plan.audit
    execute_sql(fresh_db, sql.SQL("UPDATE {t} SET {pl} = jsonb_set({pl}, '{{keys}}', to_jsonb(regexp_replace({pl} ->> "
                                  "'keys', E'\\n[^\\n]*$', ''))) WHERE {ty} = {part} AND {pl} ->> 'table' = 'messages'")
                .format(t=sql.Identifier(a.table), pl=sql.Identifier(a.payload_column),
                        ty=sql.Identifier(a.type_column), part=sql.Literal(a.allow_list_part)))
    back = run_cutover(fresh_db, "reverse", "--dry-run", f"--report-path={tmp_path / 'r.json'}")
    assert back.returncode == 1, back.stdout + back.stderr
    line = back.stderr.splitlines()[0]
    assert "the audit trail was altered" in line, line
    assert f"{report['moved']['messages'] - 1} messages keys" in line and f"says {report['moved']['messages']}" in line


AWKWARD = ["plain", "co,mma", 'qu"ote', "br]ack[et", "back\\slash", "ünïcödé ✓ 𝄞", "", [1, "a,b"]]


def test_a_report_written_from_the_parts_is_recognised_byte_for_byte(tmp_path: Path) -> None:
    """The fast path: the execute's report is the audit parts' text joined; it is recognised without
    parsing a key, and anything else is left to the key-by-key comparison."""
    lines = [json.dumps(k, ensure_ascii=False).encode() for k in AWKWARD]
    parts = [b"\n".join(lines[:3]), b"\n".join(lines[3:])]
    path = reports.write(tmp_path / "r.json", {"run_id": "r-1"},
                         {"cases": (line.decode() for line in lines), "empty": iter([])})
    allow = reports.load_streamed(path)["allow_list"]
    assert isinstance(allow, reports.AllowList)
    assert allow.same_text("cases", parts) == len(AWKWARD)
    assert allow.same_text("empty", []) == 0
    assert allow.same_text("cases", parts[:1]) is None, "a report listing more keys than the parts"
    assert allow.same_text("cases", [parts[0], parts[1] + b'\n"extra"']) is None
    assert allow.same_text("empty", parts) is None
    assert [json.loads(k) for k in allow.texts("cases")] == AWKWARD


def test_the_executes_report_is_its_audit_parts_byte_for_byte(fresh_db: str, cutover_plan: Plan,
                                                              tmp_path: Path) -> None:
    from cutover.core import db

    report = cut_over(fresh_db, tmp_path / "r.json")
    allow = reports.load_streamed(tmp_path / "r.json")["allow_list"]
    assert isinstance(allow, reports.AllowList)
    with db.connection(fresh_db, read_only=True) as conn:
        parts = audit.part_keys(conn, cutover_plan, report["run_id"])
        for rule in cutover_plan.moving:
            same = allow.same_text(rule.name, audit.part_texts(conn, cutover_plan, parts.get(rule.name, [])))
            assert same == report["moved"].get(rule.name, 0), rule.name
