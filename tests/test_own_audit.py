"""The audit trail: the insert the cutover will make is tried before anything moves, and where the
schema has no events table of its own the cutover keeps its trail in a table it owns.

Issue 27's billing schema: pointed at the one plausible events table, the dry run said READY and
execute rolled back on a NOT NULL column the audit insert did not fill. And a schema with no events
table had to grow one for the tool. Here: the dry run names the column (read-only, from the catalog
and the planner), execute's pre-flight tries the insert under a savepoint and stops BLOCKED with
nothing changed, and a plan that says ``[audit] own = true`` runs execute, ``report --rebuild``,
sweep and reverse from ``cutover.audit_events``, which the dry run never creates.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from psycopg import sql

from cutover.core import audit, db
from cutover.core.errors import PlanError
from cutover.core.options import Settings
from cutover.core.plan import DEFAULT_PLAN, Plan, load_plan
from cutover.reference import reports
from cutover.sandbox.backends import ServerInfo
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import checksum, execute_sql, failing_evidence, run_cutover, scalar

OWN_TABLE = "SELECT to_regclass('cutover.audit_events') IS NOT NULL"


def _not_null_column(url: str) -> None:
    """An events column the audit insert does not fill: NOT NULL, no default (the rows there have one)."""
    execute_sql(url, "ALTER TABLE events ADD COLUMN origin text NOT NULL DEFAULT 'app'",
                "ALTER TABLE events ALTER COLUMN origin DROP DEFAULT")


def test_the_dry_run_names_a_not_null_column_the_audit_insert_leaves_empty(fresh_db: str, tmp_path: Path) -> None:
    _not_null_column(fresh_db)
    dry = run_cutover(fresh_db, "dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    blocker = next((line for line in dry.stdout.splitlines() if "audit-insert" in line), "")
    assert "events.origin" in blocker and "NOT NULL" in blocker and "own = true" in blocker, dry.stdout
    assert dry.stdout.splitlines()[-1].startswith("BLOCKED")


def test_the_dry_run_names_a_type_the_audit_insert_does_not_fit(fresh_db: str) -> None:
    """The planner, not a row, answers for the types: ``source_service`` as an enum without 'cutover'."""
    values = [r for r in _distinct(fresh_db, "source_service") if r != "cutover"]
    labels = sql.SQL(", ").join(map(sql.Literal, values))
    execute_sql(fresh_db, sql.SQL("CREATE TYPE service AS ENUM ({})").format(labels),
                "ALTER TABLE events ALTER COLUMN source_service TYPE service USING source_service::service")
    dry = run_cutover(fresh_db, "dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    blocker = next((line for line in dry.stdout.splitlines() if "audit-insert" in line), "")
    assert "insert into events fails" in blocker and "enum service" in blocker, dry.stdout


def _distinct(url: str, column: str) -> list[str]:
    with db.connection(url, read_only=True) as conn:
        return [str(r[0]) for r in conn.execute(sql.SQL("SELECT DISTINCT {} FROM events ORDER BY 1").format(
            sql.Identifier(column))).fetchall()]


def test_execute_stops_blocked_on_an_audit_insert_that_fails_with_nothing_changed(
        fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    """A CHECK the catalog cannot evaluate read-only: execute's pre-flight tries the insert itself."""
    execute_sql(fresh_db, "ALTER TABLE events ADD CONSTRAINT no_cutover CHECK (source_service <> 'cutover') NOT VALID")
    before = checksum(fresh_db, cutover_plan, include_audit=True)
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={tmp_path / 'r.json'}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BLOCKED" in done.stderr and "audit-insert" in done.stderr and "no_cutover" in done.stderr, done.stderr
    assert checksum(fresh_db, cutover_plan, include_audit=True) == before


def test_execute_does_not_fail_on_a_good_audit_insert(fresh_db: str, tmp_path: Path) -> None:
    """The control: the same probe on the reference model's own events table is READY, and the
    verification still proves the moves from the transaction's statistics (the probe's rolled-back
    row is not taken for a change)."""
    dry = run_cutover(fresh_db, "dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={tmp_path / 'r.json'}")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["verified_by"] == "statistics"


# -- the cutover's own trail ------------------------------------------------------------------------------


def own_plan(directory: Path) -> Path:
    """The reference plan for the model without its events table: ``[audit] own = true``."""
    text = DEFAULT_PLAN.read_text()
    text = text.replace('    ["idempotency_keys"],\n    ["events"],\n', '    ["idempotency_keys"],\n')
    text = re.sub(r'\nevent_table = "events" +#[^\n]*\n', "\nevent_table = false\n", text)
    text = re.sub(r"\n\[audit\]\n.*?\n\n", "\n[audit]\nown = true\n\n", text, flags=re.S)
    text = re.sub(r"\n\[tables\.events\]\n.*?\n\n", "\n", text, flags=re.S)
    text = re.sub(r"\n\[rehearsal\.straggler\]\n.*?\n\n", (
        '\n[rehearsal.straggler]\ntable = "idempotency_keys"\nmarker_column = "response_body"\nmarker_key = "actor"\n'
        'marker = "rehearsal:synthetic-straggler"\nnow_columns = ["created_at"]\n'
        'values = { route = "POST /api/v1/documents", request_hash = "x", response_status = "201" }\n\n'),
        text, flags=re.S)
    path = directory / "own.toml"
    path.write_text(text)
    return path


def test_a_plan_with_its_own_trail_loads_and_refuses_an_events_table_beside_it(tmp_path: Path) -> None:
    plan = load_plan(own_plan(tmp_path))
    assert plan.audit.own and plan.audit.table == "cutover.audit_events"
    assert plan.audit.completed == "cutover.completed"  # the event types keep their names
    mixed = tmp_path / "mixed.toml"
    mixed.write_text(own_plan(tmp_path).read_text().replace("own = true", 'own = true\ntable = "events"'))
    with pytest.raises(PlanError, match=r"\[audit\].*own = true.*table"):
        load_plan(mixed)
    neither = tmp_path / "neither.toml"
    neither.write_text(own_plan(tmp_path).read_text().replace("own = true", 'started = "cutover.started"'))
    with pytest.raises(PlanError, match=r"\[audit\].*table.*own = true"):
        load_plan(neither)


def _late_key(url: str, plan: Plan, key: str) -> None:
    """A patient row landing on the source after the commit: a straggler for the sweep."""
    execute_sql(url, sql.SQL("INSERT INTO idempotency_keys (key, tenant_id, route, request_hash, response_status) "
                             "VALUES ({k}, {t}, 'POST /api/v1/documents', 'h', 201)").format(
        k=sql.Literal(key), t=sql.Literal(plan.source)))


def test_the_cutover_keeps_its_own_trail_where_the_schema_has_no_events_table(
        fresh_db: str, tmp_path: Path, cutover_settings: Settings) -> None:
    path = own_plan(tmp_path)
    plan = load_plan(path)
    execute_sql(fresh_db, "DROP TABLE events")
    before = checksum(fresh_db, plan)
    at = ("--plan", str(path))

    dry = run_cutover(fresh_db, "dry-run", *at)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert not scalar(fresh_db, OWN_TABLE), "the dry run created the cutover's table"

    report = tmp_path / "r.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={report}", *at)
    assert done.returncode == 0, done.stderr
    assert scalar(fresh_db, OWN_TABLE)
    executed = json.loads(report.read_text())
    assert scalar(fresh_db, "SELECT count(*) FROM cutover.audit_events WHERE tenant = %s AND event_type = %s",
                  (plan.target, plan.audit.completed)) == 1
    assert not scalar(fresh_db, "SELECT has_table_privilege('public', 'cutover.audit_events', 'SELECT')")
    from cutover.suite import timeline

    assert timeline.read(fresh_db, plan).run_id == executed["run_id"]  # the window's T+ and the go/no-go's
    # Every check passes (A8's subject, an events table, is declared absent: event_table = false).
    under_check = DatabaseUnderCheck(fresh_db, reports.load(report), report, sandbox=True)
    assert set(failing_evidence(under_check, plan, cutover_settings)) == set()

    rebuilt = tmp_path / "rebuilt.json"
    again = run_cutover(fresh_db, "report", "--rebuild", f"--report-path={rebuilt}", *at)
    assert again.returncode == 0, again.stderr
    found = json.loads(rebuilt.read_text())
    assert (found["run_id"], found["moved"], found["allow_list"]) == (
        executed["run_id"], executed["moved"], executed["allow_list"])

    _late_key(fresh_db, plan, "late-own-1")
    swept = run_cutover(fresh_db, "sweep", f"--report-path={report}", *at)
    assert swept.returncode == 0, swept.stderr
    assert scalar(fresh_db, "SELECT tenant_id FROM idempotency_keys WHERE key = 'late-own-1'") == plan.target
    with_sweep = [e.payload for e in _events(fresh_db, plan, plan.audit.swept)]
    assert with_sweep and with_sweep[0]["ids"] == {"idempotency_keys": ["late-own-1"]}

    back = run_cutover(fresh_db, "reverse", "--operator-confirmed", f"--report-path={report}", *at)
    assert back.returncode == 0, back.stderr
    assert scalar(fresh_db, "SELECT tenant_id FROM idempotency_keys WHERE key = 'late-own-1'") == plan.source
    execute_sql(fresh_db, "DELETE FROM idempotency_keys WHERE key = 'late-own-1'")
    assert checksum(fresh_db, plan) == before, "the reverse did not put every row back"
    assert [e.kind for e in _events(fresh_db, plan, plan.audit.reversed)] == [plan.audit.reversed]


def _events(url: str, plan: Plan, kind: str) -> list[audit.Event]:
    with db.connection(url, read_only=True) as conn:
        return audit.events(conn, plan, [kind])


def test_the_dry_run_says_when_the_role_may_not_make_the_cutovers_table(
        fresh_db: str, cutover_server: ServerInfo, tmp_path: Path) -> None:
    """The table is made by execute; the dry run, which makes nothing, asks whether the role may."""
    path = own_plan(tmp_path)
    execute_sql(fresh_db, "DROP TABLE events")
    role, password = f"window_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    execute_sql(cutover_server.admin_url, sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(password)))
    try:
        execute_sql(fresh_db, sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
        url = db.with_login(fresh_db, role, password)

        refused = run_cutover(url, "dry-run", "--plan", str(path))
        blocker = next((line for line in refused.stdout.splitlines() if "audit-insert" in line), "")
        grant = f"GRANT CREATE ON DATABASE {db.database_name(fresh_db)} TO {role}"
        assert "may not create" in blocker and grant in blocker, refused.stdout + refused.stderr

        execute_sql(fresh_db, sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(db.database_name(fresh_db)), sql.Identifier(role)))
        allowed = run_cutover(url, "dry-run", "--plan", str(path))
        assert "audit-insert" not in allowed.stdout, allowed.stdout
        assert not scalar(fresh_db, OWN_TABLE)
    finally:
        execute_sql(fresh_db, sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        execute_sql(cutover_server.admin_url, sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_statements_that_make_the_cutovers_table_are_the_ones_docs_plan_md_shows() -> None:
    """The dry run's refusal sends a role without CREATE to them."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "plan.md").read_text()
    missing = [statement for statement in audit.OWN_DDL if f"{statement};" not in text]
    assert not missing, missing


# -- one reader, one meaning of "newest" ------------------------------------------------------------------


def test_every_reader_takes_the_same_run_for_the_newest(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    """A completed event without a commit time (hand-made, or an earlier version's) is the oldest for
    all of them: the rebuilt report took it for the newest while the pre-flight did not."""
    from cutover.reference import preflight
    from cutover.suite import nextstep, timeline

    done = run_cutover(fresh_db, "execute", "--operator-confirmed", f"--report-path={tmp_path / 'r.json'}")
    assert done.returncode == 0, done.stderr
    run_id = json.loads((tmp_path / "r.json").read_text())["run_id"]
    a = cutover_plan.audit
    execute_sql(fresh_db, sql.SQL("INSERT INTO events (id, tenant_id, event_type, payload, source_service) VALUES "
                                  "('undated', {t}, {k}, '{{\"run_id\": \"undated\"}}', {s})").format(
        t=sql.Literal(cutover_plan.target), k=sql.Literal(a.completed), s=sql.Literal(a.source_value)))
    with db.connection(fresh_db, read_only=True) as conn:
        rebuilt, _ = reports.rebuild(conn, cutover_plan)
        last = preflight.last_audit_run(conn, cutover_plan)
    commit = nextstep.committed_at(fresh_db, cutover_plan)
    assert last is not None and commit is not None
    assert (rebuilt["run_id"], last["run_id"], timeline.read(fresh_db, cutover_plan).run_id, commit[1]) == (
        run_id, run_id, run_id, run_id)
