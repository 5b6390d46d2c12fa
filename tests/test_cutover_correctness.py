"""The cutover moves exactly the patient-owned rows, and the reverse brings them back.

The expected moves are computed here in Python from the plan's rules and the rows themselves,
independently of the SQL predicates in cutover/rules.py: a predicate bug would make both the
cutover and a check built on the same predicate agree, and only an independent oracle catches it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from cutover.core import db
from cutover.core.plan import Plan
from cutover.core.row_keys import key_order, key_text
from cutover.sandbox.backends import ServerInfo
from tests.support import checksum, reference_database, run_cutover, scalar


def rows_by_tenant(url: str, plan: Plan) -> dict[str, dict[str, tuple[str, str | None]]]:
    """{table: {key: (tenant, owner column value)}} for every tenant-scoped table."""
    out = {}
    with db.connection(url, read_only=True) as conn:
        for rule in plan.tables:
            col = sql.Identifier(rule.column) if rule.column else sql.SQL("NULL")
            rows = conn.execute(sql.SQL("SELECT {k}, {t}, {c}::text FROM {tab}").format(
                k=key_text(rule.key), t=sql.Identifier(plan.tenant_column), c=col,
                tab=sql.Identifier(rule.name))).fetchall()
            out[rule.name] = {k: (t, c) for k, t, c in rows}
    return out


def expected_moves(plan: Plan, before: dict[str, dict[str, tuple[str, str | None]]]) -> dict[str, set[str]]:
    """The ownership rules of the plan, applied row by row in Python."""
    expected: dict[str, set[str]] = {}
    for rule in plan.tables:
        ids = set()
        for key, (tenant, value) in before[rule.name].items():
            if tenant != plan.source or rule.owner == "provider":
                continue
            if rule.owner == "patient":
                ids.add(key)
            elif rule.owner == "column" and value in rule.patient_values:
                ids.add(key)
            elif rule.owner == "classified":
                if plan.classifications[rule.classification or ""].get(value or "") == "patient":
                    ids.add(key)
        expected[rule.name] = ids
    return expected


def assert_cutover_is_exact(url: str, plan: Plan, tmp_path: Path) -> dict[str, Any]:
    before = rows_by_tenant(url, plan)
    expected = expected_moves(plan, before)
    dry = run_cutover(url, "dry-run", "--json")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    planned = json.loads(dry.stdout)["planned"]
    report_path = tmp_path / f"report-{uuid.uuid4().hex[:6]}.json"
    done = run_cutover(url, "execute", "--operator-confirmed", "--report-path", str(report_path))
    assert done.returncode == 0, done.stderr
    assert "CUTOVER COMMITTED" in done.stdout
    after = rows_by_tenant(url, plan)
    report: dict[str, Any] = json.loads(report_path.read_text())
    for rule in plan.tables:
        moved = {k for k, (t, _) in after[rule.name].items() if t == plan.target and before[rule.name].get(k, ("",))[0]
                 == plan.source}
        assert moved == expected[rule.name], rule.name
        assert planned.get(rule.name, 0) == len(expected[rule.name]) == report["moved"].get(rule.name, 0), rule.name
        if rule.owner != "provider":
            assert set(report["allow_list"][rule.name]) == expected[rule.name], rule.name
        untouched = {k: v for k, v in before[rule.name].items() if k not in expected[rule.name]}
        assert {k: after[rule.name][k] for k in untouched} == untouched, f"{rule.name}: a row that stays was changed"
        # cutover.started, cutover.completed and the allow-list's parts (one per non-empty table here)
        parts = sum(report["allow_list_parts"].values())
        assert parts == sum(1 for t in report["moved"] if report["moved"][t] and t in report["allow_list"])
        extra = 2 + parts if rule.name == plan.audit.table else 0
        assert len(after[rule.name]) == len(before[rule.name]) + extra, f"{rule.name}: rows not conserved"
    assert report["commit_status"] == "committed"
    for key in ("run_id", "actor", "started_at", "committed_at", "duration_s", "baseline", "moved", "allow_list"):
        assert report[key] not in (None, ""), key
    return report


def test_cutover_moves_exactly_the_patient_rows_and_reverse_restores_them(
    fresh_db: str, cutover_plan: Plan, tmp_path: Path
) -> None:
    pristine = checksum(fresh_db, cutover_plan)
    report = assert_cutover_is_exact(fresh_db, cutover_plan, tmp_path)
    report_path = next(tmp_path.glob("report-*.json"))

    again = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report_path))
    assert again.returncode == 3, again.stderr
    assert "ALREADY CUT OVER" in again.stderr and report["run_id"] in again.stderr
    assert json.loads(report_path.read_text())["run_id"] == report["run_id"], "a re-run overwrote the report"

    dry = run_cutover(fresh_db, "reverse", "--dry-run", "--report-path", str(report_path), "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["planned"] == {t: n for t, n in report["moved"].items()}
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", "--report-path", str(report_path))
    assert back.returncode == 0, back.stderr
    assert checksum(fresh_db, cutover_plan) == pristine
    assert json.loads(report_path.read_text())["reverse"]["moved"] == report["moved"]
    ready = run_cutover(fresh_db, "dry-run")
    assert ready.returncode == 0 and "READY" in ready.stdout, ready.stdout


@pytest.fixture
def seeded_db(cutover_server: ServerInfo, cutover_plan: Plan, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database generated from another seed (and a smaller scale) than the default snapshot."""
    url = reference_database(cutover_server, cutover_plan, 0.2, request.param)
    yield url
    db.drop_database(cutover_server.admin_url, db.database_name(url))


@pytest.mark.parametrize("seeded_db", [7, 1234, 99991], indirect=True)
def test_cutover_is_exact_on_other_seeds(seeded_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    pristine = checksum(seeded_db, cutover_plan)
    assert_cutover_is_exact(seeded_db, cutover_plan, tmp_path)
    report_path = next(tmp_path.glob("report-*.json"))
    back = run_cutover(seeded_db, "reverse", "--operator-confirmed", "--report-path", str(report_path))
    assert back.returncode == 0, back.stderr
    assert checksum(seeded_db, cutover_plan) == pristine


def test_sweep_moves_late_writes_and_reverse_takes_them_and_new_rows_back(
    fresh_db: str, cutover_plan: Plan, tmp_path: Path
) -> None:
    report_path = tmp_path / "report.json"
    assert run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report_path)).returncode == 0
    nothing = run_cutover(fresh_db, "sweep", "--report-path", str(report_path))
    assert nothing.returncode == 0 and "nothing to move" in nothing.stdout
    assert "sweeps" not in json.loads(report_path.read_text())
    with db.connection(fresh_db, autocommit=True) as conn:
        conn.execute("INSERT INTO events (id, tenant_id, event_type, payload, source_service) VALUES "
                     "('late-1', %s, 'intake.started', '{}', 'sse'), ('late-2', %s, 'quote.issued', '{}', 'portal')",
                     (cutover_plan.source, cutover_plan.source))
        case_id = scalar(fresh_db, "SELECT id FROM cases WHERE tenant_id = %s LIMIT 1", (cutover_plan.target,))
        conn.execute("INSERT INTO messages (id, tenant_id, case_id, sender_role, body) VALUES "
                     "('late-msg', %s, %s, 'patient', 'lost write')", (cutover_plan.source, case_id))
        conn.execute("INSERT INTO messages (id, tenant_id, case_id, sender_role, body) VALUES "
                     "('new-msg', %s, %s, 'patient', 'written after the cutover')", (cutover_plan.target, case_id))
    swept = run_cutover(fresh_db, "sweep", "--report-path", str(report_path), "--json")
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["moved"] == {"messages": 1, "events": 1}
    report = json.loads(report_path.read_text())
    assert report["sweeps"][0]["ids"] == {"messages": ["late-msg"], "events": ["late-1"]}
    with db.connection(fresh_db) as conn:
        assert scalar(fresh_db, "SELECT tenant_id FROM events WHERE id = 'late-2'") == cutover_plan.source
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", "--report-path", str(report_path), "--json")
    assert back.returncode == 0, back.stderr
    reverse = json.loads(report_path.read_text())["reverse"]
    assert reverse["new_since_commit"] == {"messages": 1}
    assert reverse["moved"]["messages"] == report["moved"]["messages"] + 2
    with db.connection(fresh_db) as conn:
        tenants = dict(conn.execute("SELECT id, tenant_id FROM messages WHERE id IN ('late-msg', 'new-msg')")
                       .fetchall())
    assert tenants == {"late-msg": cutover_plan.source, "new-msg": cutover_plan.source}


def test_a_lost_report_is_rebuilt_from_the_database(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    original = tmp_path / "report.json"
    assert run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(original)).returncode == 0
    rebuilt_path = tmp_path / "rebuilt.json"
    done = run_cutover(fresh_db, "report", "--rebuild", "--report-path", str(rebuilt_path))
    assert done.returncode == 0, done.stderr
    first, rebuilt = json.loads(original.read_text()), json.loads(rebuilt_path.read_text())
    for key in ("run_id", "actor", "started_at", "committed_at", "baseline", "moved", "allow_list", "commit_status"):
        assert rebuilt[key] == first[key], key
    back = run_cutover(fresh_db, "reverse", "--dry-run", "--report-path", str(rebuilt_path))
    assert back.returncode == 0, back.stderr


def test_the_reverse_selects_its_rows_without_a_subplan_per_row(fresh_db: str, cutover_plan: Plan) -> None:
    """``owned OR EXISTS (listed)`` made PostgreSQL run the EXISTS per row, hashed only while the
    report's keys fit in work_mem: past it, a scan of every listed key per row (163 s for the reverse
    at scale 20). The selection must plan joins whatever work_mem is."""
    from cutover.core.row_keys import key_order
    from cutover.reference import aftercare, ownership
    with db.connection(fresh_db) as conn:
        conn.execute("SET LOCAL work_mem = '64kB'")
        for rule in cutover_plan.moving:
            for name in ("listed", "held"):  # the target's own rows, left out: an anti-join too
                conn.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {k} FROM {t}").format(
                    sql.Identifier(name), k=key_order(rule.key), t=ownership.ident(rule.name)))
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
            plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN {}").format(
                aftercare._reverse_keys(cutover_plan, rule, sql.Identifier("listed"), sql.Identifier("held")))
            ).fetchall())
            assert "SubPlan" not in plan, f"{rule.name}:\n{plan}"
            conn.execute("DROP TABLE listed, held")


def test_the_reverse_selects_its_rows_without_sorting_or_hashing_them_all(fresh_db: str, cutover_plan: Plan) -> None:
    """The selection's two halves are disjoint (patient-owned on the target; listed but not owned),
    so it needs no de-duplication: a UNION sorted or hashed every row twice over (2.6 s of the
    listing for messages at scale 20, an external merge sort on disk) and handed the move its keys
    out of the table's physical order."""
    from cutover.reference import aftercare

    with db.connection(fresh_db) as conn:
        for rule in cutover_plan.moving:
            for name, rows in (("listed", sql.SQL("")), ("held", sql.SQL(" LIMIT 0"))):  # held: the target's own
                conn.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {k} FROM {t}{rows}").format(
                    sql.Identifier(name), k=key_order(rule.key), t=sql.Identifier(rule.name), rows=rows))
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
            plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN {}").format(
                aftercare._reverse_keys(cutover_plan, rule, sql.Identifier("listed"), sql.Identifier("held")))
            ).fetchall())
            for node in ("Unique", "HashAggregate", "Sort", "SubPlan"):
                assert node not in plan, f"{rule.name}: {node}\n{plan}"
            conn.execute("DROP TABLE listed, held")


def test_a_listed_move_hashes_its_keys_in_memory_whatever_work_mem_is(fresh_db: str, cutover_plan: Plan) -> None:
    """A move of listed rows (the reverse's, the sweep's) is ``UPDATE ... FROM`` its id table, a hash
    join: past work_mem the join batched to disk, writing every row of both sides to temp files (the
    bare reverse UPDATEs took 202 s at scale 100 against 67 s for the forward ones). The move sizes
    work_mem from its keys for its own transaction, so no temp file is written even at 64kB (and
    ``temp_file_limit = 0`` turns any temp file into an error)."""
    from cutover.reference import engine

    with db.connection(fresh_db) as conn:
        conn.execute("SET LOCAL work_mem = '64kB'")
        conn.execute("SET LOCAL temp_file_limit = 0")
        ids: dict[str, str] = {}
        planned: dict[str, int] = {}
        for rule in cutover_plan.moving:
            ids[rule.name] = engine.id_table(rule, "test")
            planned[rule.name] = engine.build_owned_ids(conn, cutover_plan, rule, cutover_plan.source, ids[rule.name])
        assert max(planned.values()) > 5_000  # far past what 64kB hashes
        moved = engine.move_listed(conn, cutover_plan, ids, cutover_plan.source, cutover_plan.target)
        assert moved == planned
        conn.rollback()


def test_the_reverse_moves_back_a_listed_row_no_longer_patient_owned_once(
    fresh_db: str, cutover_plan: Plan, tmp_path: Path
) -> None:
    """A moved event reclassified since the commit (now a provider type) is still the cutover's row:
    the reverse takes it back through the allow-list, counted once, beside a patient row created
    on the target since (taken back as patient-owned, not listed)."""
    report_path = tmp_path / "report.json"
    assert run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report_path)).returncode == 0
    report = json.loads(report_path.read_text())
    moved_event = scalar(fresh_db, "SELECT id FROM events WHERE tenant_id = %s AND event_type = 'intake.started' "
                                   "ORDER BY id LIMIT 1", (cutover_plan.target,))
    with db.connection(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE events SET event_type = 'quote.issued' WHERE id = %s", (moved_event,))
        conn.execute("INSERT INTO events (id, tenant_id, event_type, payload, source_service) VALUES "
                     "('new-evt', %s, 'message.sent', '{}', 'sse')", (cutover_plan.target,))
    dry = run_cutover(fresh_db, "reverse", "--dry-run", "--report-path", str(report_path), "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["planned"]["events"] == report["moved"]["events"] + 1
    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", "--report-path", str(report_path))
    assert back.returncode == 0, back.stderr
    reverse = json.loads(report_path.read_text())["reverse"]
    assert reverse["moved"]["events"] == report["moved"]["events"] + 1
    assert reverse["planned"]["events"] == reverse["moved"]["events"]
    assert reverse["new_since_commit"] == {"events": 1}
    with db.connection(fresh_db) as conn:
        tenants = dict(conn.execute("SELECT id, tenant_id FROM events WHERE id IN (%s, 'new-evt')",
                                    (moved_event,)).fetchall())
    assert tenants == {moved_event: cutover_plan.source, "new-evt": cutover_plan.source}


def test_the_reverse_dry_run_counts_with_hash_joins_where_the_statistics_predate_the_cutover(
    fresh_db: str, cutover_plan: Plan, tmp_path: Path
) -> None:
    """The dry run cannot make temp tables (it runs read-only in production): its listed keys and its
    selection are CTEs, and the table's statistics predate the cutover (the target held none of the
    moved rows). The planner then took the selection for one row and counted the rows created since
    with a nested loop over every listed key per selected row (137 s for the dry run at scale 20).
    Its count must join the keys by hashing, whatever the statistics say."""
    from cutover.reference import aftercare

    with db.connection(fresh_db, autocommit=True) as conn:
        conn.execute("ANALYZE")  # statistics from before the cutover
    report_path = tmp_path / "report.json"
    assert run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report_path)).returncode == 0
    run_id = json.loads(report_path.read_text())["run_id"]
    with db.connection(fresh_db) as conn:
        for rule in cutover_plan.moving:
            query = aftercare.count_statement(conn, cutover_plan, rule, run_id, sql.Identifier("listed"))
            with aftercare._no_nested_loops(conn):
                plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN {}").format(query)).fetchall())
            for node in ("Nested Loop Anti Join", "Nested Loop Semi Join", "Join Filter"):
                assert node not in plan, f"{rule.name}: {node}\n{plan}"
