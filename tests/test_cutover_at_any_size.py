"""The cutover at any size: nothing left behind, errors named by their cause, no ceiling in the audit trail.

Every test drives the CLI as an operator would (a real process on a real PostgreSQL 15). Faults
are real server errors: a trigger installed only in the test database raises the SQLSTATE of the
fault (disk full, out of memory, ...) in the middle of a move, or really sleeps past the
statement timeout; a lost connection is a real ``pg_terminate_backend``.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from psycopg import sql

from cutover.core import db
from cutover.core.plan import DEFAULT_PLAN, Plan, load_plan
from tests.support import (
    PART_BYTES_ENV,
    PAUSE_ENV,
    SIGINT_AFTER_COMMIT_ENV,
    checksum,
    execute_sql,
    run_cutover,
    scalar,
    spawn_cutover,
)

APP = "cutover-execute"


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def last_step(plan: Plan) -> int:
    """The last step before COMMIT: every row has moved and every id is spooled (6 + the moves + 1)."""
    return 7 + len(plan.move_steps)


def paused(proc: object, step: int) -> None:
    stderr = proc.stderr  # type: ignore[attr-defined]
    for line in stderr:
        if "paused after step" in line:
            assert f"paused after step {step} " in line
            return
    raise AssertionError(f"execute ended without pausing: rc={proc.wait()}")  # type: ignore[attr-defined]


def test_a_committed_execute_leaves_no_spool_and_a_private_report(fresh_db: str, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report),
                       extra_env={"TMPDIR": str(tmp)})
    assert done.returncode == 0, done.stderr
    assert list(tmp.iterdir()) == []
    assert private(report)
    assert json.loads(report.read_text())["allow_list"]


def test_a_failed_execute_leaves_no_spool_and_a_private_report(fresh_db: str, cutover_plan: Plan,
                                                               tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    report = tmp_path / "report.json"
    step = last_step(cutover_plan)
    proc = spawn_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report),
                         extra_env={PAUSE_ENV: str(step), "TMPDIR": str(tmp)})
    paused(proc, step)
    spools = list(tmp.iterdir())
    assert spools and all(list(p.iterdir()) for p in spools), "the spool should hold the ids while the run is open"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in spools)
    assert all(private(f) for p in spools for f in p.iterdir())
    pid = scalar(fresh_db, "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP,))
    assert scalar(fresh_db, "SELECT pg_terminate_backend(%s)", (pid,))
    assert proc.wait(timeout=60) == 4
    assert list(tmp.iterdir()) == []
    assert private(report)
    assert json.loads(report.read_text())["commit_status"] == "rolled_back"


STEPS = range(1, last_step(load_plan(DEFAULT_PLAN)) + 1)
INTERRUPT_WAIT_S = 60  # a bound on a hang, not a measurement: a working Ctrl-C ends it in about a second


def interrupted_cleanly(proc: subprocess.Popen[str], url: str, plan: Plan, before: dict[str, str], tmp: Path,
                        report: Path) -> None:
    """Exit 130, the database as it was, no spool left, the rolled-back report written and private."""
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=INTERRUPT_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"execute still running {INTERRUPT_WAIT_S} s after its SIGINT") from None
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 130, err
    assert "interrupted, rolled back" in err and "Traceback" not in err, err
    assert checksum(url, plan, include_audit=True) == before
    assert list(tmp.iterdir()) == []
    assert private(report)
    written = json.loads(report.read_text())
    assert written["commit_status"] == "rolled_back" and written["error"] == "interrupted by the operator"


@pytest.mark.parametrize("step", STEPS)
def test_ctrl_c_leaves_no_spool(fresh_db: str, cutover_plan: Plan, tmp_path: Path, step: int) -> None:
    """Ctrl-C after each step, with SIGINT inherited ignored as a script's background job has it (how
    the full test run once timed out here: the SIGINT was dropped and the execute held on)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    report = tmp_path / "report.json"
    before = checksum(fresh_db, cutover_plan, include_audit=True)
    proc = spawn_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report),
                         extra_env={PAUSE_ENV: str(step), "TMPDIR": str(tmp)}, sigint_ignored=True)
    paused(proc, step)
    interrupted_cleanly(proc, fresh_db, cutover_plan, before, tmp, report)


def test_ctrl_c_after_the_commit_reports_the_commit(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    """Too late to roll back: the report must say committed and the exit must not be 130 ("unchanged")."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report),
                       extra_env={SIGINT_AFTER_COMMIT_ENV: "1", "TMPDIR": str(tmp)})
    assert done.returncode == 0, done.stderr
    assert "Ctrl-C came after the COMMIT" in done.stderr and "CUTOVER COMMITTED" in done.stdout, done.stderr
    written = json.loads(report.read_text())
    assert written["commit_status"] == "committed" and "error" not in written
    assert list(tmp.iterdir()) == []
    assert scalar(fresh_db, sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
        sql.Identifier(cutover_plan.audit.table), sql.Identifier(cutover_plan.audit.type_column)),
        (cutover_plan.audit.completed,)) == 1


def _wait_until_blocked(proc: subprocess.Popen[str], url: str, wait_event: str) -> None:
    """Until the execute's session waits on ``wait_event`` (in a server call, not between them)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event = %s"
    for _ in range(600):
        if scalar(url, query, (APP, wait_event)):
            return
        assert proc.poll() is None, f"execute ended before blocking: rc={proc.returncode} {proc.stderr}"
        time.sleep(0.1)
    raise AssertionError(f"the execute never waited on {wait_event}")


@pytest.mark.parametrize("where", ["in a move's statement", "waiting for the table locks"])
def test_ctrl_c_inside_a_blocking_server_call_rolls_back(fresh_db: str, cutover_plan: Plan, tmp_path: Path,
                                                          where: str) -> None:
    """SIGINT while psycopg waits on the server: the query is cancelled, then the transaction rolled back."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    report = tmp_path / "report.json"
    holder = None
    if where == "in a move's statement":
        _raise_in_move(fresh_db, cutover_plan, "PERFORM pg_sleep(600)")
        event = "PgSleep"
    else:  # a writer's open transaction holds the first table: the execute retries its LOCK until lock_timeout
        holder = db.connect(fresh_db, application_name="writer")
        holder.execute(sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(
            sql.Identifier(cutover_plan.moving[0].name)))
        event = "relation"
    try:
        before = checksum(fresh_db, cutover_plan, include_audit=True)
        proc = spawn_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report),
                             "--lock-timeout=10min", extra_env={"TMPDIR": str(tmp)}, sigint_ignored=True)
        _wait_until_blocked(proc, fresh_db, event)
        interrupted_cleanly(proc, fresh_db, cutover_plan, before, tmp, report)
    finally:
        if holder is not None:
            holder.close()


def _raise_in_move(url: str, plan: Plan, body: str) -> None:
    """A statement trigger on the first moving table that fails the way ``body`` says."""
    table = plan.moving[0].name
    execute_sql(url, f"CREATE FUNCTION fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}; RETURN NULL; "
                     "END $$",
                sql.SQL("CREATE TRIGGER fault AFTER UPDATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION fault()")
                .format(sql.Identifier(table)))


CAUSES = {
    "program limit": ("RAISE EXCEPTION 'total size of jsonb array elements exceeds the maximum' "
                      "USING ERRCODE = 'program_limit_exceeded'", "program limit"),
    "disk full": ("RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'", "disk full"),
    "out of memory": ("RAISE EXCEPTION 'out of memory' USING ERRCODE = 'out_of_memory'", "out of memory"),
    "serialization": ("RAISE EXCEPTION 'could not serialize access' USING ERRCODE = 'serialization_failure'",
                      "serialization failure"),
    "privilege": ("RAISE EXCEPTION 'permission denied for table events' USING ERRCODE = 'insufficient_privilege'",
                  "lacks a privilege"),
    "lock timeout": ("RAISE EXCEPTION 'canceling statement due to lock timeout' "
                     "USING ERRCODE = 'lock_not_available'", "lock_timeout"),
    "statement timeout": ("PERFORM pg_sleep(30)", "statement_timeout"),
}


@pytest.mark.parametrize("cause", list(CAUSES))
def test_a_failure_is_named_by_its_real_cause(fresh_db: str, cutover_plan: Plan, tmp_path: Path, cause: str) -> None:
    body, named = CAUSES[cause]
    _raise_in_move(fresh_db, cutover_plan, body)
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report),
                       "--statement-timeout", "2s")
    assert done.returncode == 4, done.stderr
    error = json.loads(report.read_text())["error"]
    assert named in error and "connection lost" not in error, error
    assert named in done.stderr
    assert scalar(fresh_db, sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
        sql.Identifier(cutover_plan.audit.table), sql.Identifier(cutover_plan.audit.type_column)),
        (cutover_plan.audit.completed,)) == 0


def test_a_lost_connection_is_named_so(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    step = last_step(cutover_plan)
    proc = spawn_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report),
                         extra_env={PAUSE_ENV: str(step)})
    paused(proc, step)
    pid = scalar(fresh_db, "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP,))
    assert scalar(fresh_db, "SELECT pg_terminate_backend(%s)", (pid,))
    assert proc.wait(timeout=60) == 4
    assert "connection lost" in json.loads(report.read_text())["error"]



def test_an_allow_list_past_the_payload_ceiling_is_stored_in_parts_and_rebuilt(
    fresh_db: str, cutover_plan: Plan, tmp_path: Path
) -> None:
    """The ceiling lowered to 4 kB stands for jsonb's 256 MB (the next test proves the real constant):
    the same code path, with a database small enough for every CI run."""
    part = 4096
    env = {PART_BYTES_ENV: str(part)}
    dry = run_cutover(fresh_db, "dry-run", extra_env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"{cutover_plan.audit.allow_list_part} audit events" in dry.stdout
    original = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(original), extra_env=env)
    assert done.returncode == 0, done.stderr
    first = json.loads(original.read_text())
    a = cutover_plan.audit
    parts = scalar(fresh_db, sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
        sql.Identifier(a.table), sql.Identifier(a.type_column)), (a.allow_list_part,))
    assert parts == sum(first["allow_list_parts"].values()) > len(cutover_plan.moving)
    biggest = scalar(fresh_db, sql.SQL("SELECT max(octet_length({pl} ->> 'keys')) FROM {t} WHERE {ty} = %s").format(
        pl=sql.Identifier(a.payload_column), t=sql.Identifier(a.table), ty=sql.Identifier(a.type_column)),
        (a.allow_list_part,))
    assert part // 2 < biggest <= part  # split no finer than needed, and never past the ceiling
    assert first["written"][a.table] == 2 + parts
    rebuilt_path = tmp_path / "rebuilt.json"
    again = run_cutover(fresh_db, "report", "--rebuild", "--report-path", str(rebuilt_path))
    assert again.returncode == 0, again.stderr
    rebuilt = json.loads(rebuilt_path.read_text())
    for key in ("run_id", "baseline", "moved", "written", "allow_list", "commit_status"):
        assert rebuilt[key] == first[key], key
    assert private(rebuilt_path)
    back = run_cutover(fresh_db, "reverse", "--dry-run", "--report-path", str(rebuilt_path), "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["new_since_commit"] == {}


def test_a_part_is_well_below_the_real_jsonb_ceiling(fresh_db: str) -> None:
    """The real constant against the real server: PostgreSQL refuses a jsonb string past its ceiling
    as a program limit, and accepts one as large as a part's key text."""
    import psycopg
    from psycopg import errors as pgerr

    from cutover.core import db
    from cutover.reference.engine import AUDIT_PART_BYTES

    with db.connection(fresh_db, autocommit=True) as conn:
        size = conn.execute("SELECT octet_length(jsonb_build_object('keys', repeat('x', %s)) ->> 'keys')",
                            (AUDIT_PART_BYTES,)).fetchone()
        assert size is not None and size[0] == AUDIT_PART_BYTES
        with pytest.raises(psycopg.OperationalError) as refused:
            conn.execute("SELECT octet_length(jsonb_build_object('keys', repeat('x', %s))::text)",
                         (4 * AUDIT_PART_BYTES,))
    assert isinstance(refused.value, pgerr.ProgramLimitExceeded), refused.value


def test_a_key_larger_than_a_part_rolls_back_and_says_so(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    """Ranges are halved down to one key; a key whose text alone passes the part size cannot be
    stored, and the run must say which table, not fail in the server."""
    report = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(report),
                       extra_env={PART_BYTES_ENV: "3"})
    assert done.returncode == 4, done.stderr
    assert "more than an audit part holds (3)" in done.stderr
    assert json.loads(report.read_text())["commit_status"] == "rolled_back"
    assert scalar(fresh_db, sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
        sql.Identifier(cutover_plan.audit.table), sql.Identifier(cutover_plan.audit.type_column)),
        (cutover_plan.audit.allow_list_part,)) == 0


def test_the_last_run_is_read_without_its_allow_list(fresh_db: str, cutover_plan: Plan, tmp_path: Path) -> None:
    """Sweep and reverse first ask the database for the last run; with its allow-list in the answer
    they parsed every moved key (a sweep peaked at 234 MB at scale 20 with a streamed report)."""
    from cutover.core import db
    from cutover.reference import preflight

    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    with db.connection(fresh_db, read_only=True) as conn:
        last = preflight.last_audit_run(conn, cutover_plan)
    assert last is not None and last["kind"] == cutover_plan.audit.completed and last["moved"]
    assert "allow_list" not in last


def test_a_report_is_rebuilt_from_an_earlier_versions_audit_events(fresh_db: str, cutover_plan: Plan,
                                                                   tmp_path: Path) -> None:
    """An earlier version stored a small allow-list inside the completed event and a large one in
    parts holding jsonb arrays ('ids'); a database it cut over must still give back its report."""
    original = tmp_path / "report.json"
    done = run_cutover(fresh_db, "execute", "--operator-confirmed", "--report-path", str(original),
                       extra_env={PART_BYTES_ENV: "4096"})
    assert done.returncode == 0, done.stderr
    first = json.loads(original.read_text())
    a = cutover_plan.audit
    names = {"t": sql.Identifier(a.table), "pl": sql.Identifier(a.payload_column),
             "ty": sql.Identifier(a.type_column)}

    def rebuilt(name: str) -> dict[str, object]:
        path = tmp_path / name
        again = run_cutover(fresh_db, "report", "--rebuild", "--report-path", str(path))
        assert again.returncode == 0, again.stderr
        # the reverse reads the same layout from the database, and takes the original report
        dry = run_cutover(fresh_db, "reverse", "--dry-run", "--report-path", str(original), "--json")
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout)["planned"] == first["moved"] and json.loads(dry.stdout)["new_since_commit"] == {}
        return dict(json.loads(path.read_text()))

    execute_sql(fresh_db, sql.SQL(
        "UPDATE {t} SET {pl} = ({pl} - 'keys') || jsonb_build_object('ids', (SELECT jsonb_agg(k::jsonb ORDER BY n) "
        "FROM regexp_split_to_table({pl} ->> 'keys', E'\\n') WITH ORDINALITY x(k, n))) WHERE {ty} = {kind}").format(
        **names, kind=sql.Literal(a.allow_list_part)))
    assert scalar(fresh_db, sql.SQL("SELECT count(*) FROM {t} WHERE {pl} ? 'keys'").format(**names)) == 0
    assert rebuilt("arrays.json")["allow_list"] == first["allow_list"]

    execute_sql(fresh_db, sql.SQL("DELETE FROM {t} WHERE {ty} = {kind}").format(
        **names, kind=sql.Literal(a.allow_list_part)), sql.SQL(
        "UPDATE {t} SET {pl} = ({pl} - 'allow_list_parts') || jsonb_build_object('allow_list', {allow}::jsonb) "
        "WHERE {ty} = {kind}").format(**names, allow=sql.Literal(json.dumps(first["allow_list"])),
                                      kind=sql.Literal(a.completed)))
    assert rebuilt("inline.json")["allow_list"] == first["allow_list"]
