"""How the suite connects: what the operator put in the URL or PGOPTIONS reaches every connection.

A read-only connection (dry run, plan check, the checks, Set B, ``reverse --dry-run``) adds its own
settings to the URL's libpq ``options`` and to PGOPTIONS; it never replaces them, or reading and
writing (execute keeps them) would see different schemas.
"""

from __future__ import annotations

from urllib.parse import quote

import psycopg
import pytest

from cutover.core import db
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.suite.under_check import check_connection
from tests.support import execute_sql, run_cutover


def with_options(url: str, options: str) -> str:
    """The URL with libpq's ``options`` parameter, percent-encoded as an operator would write it."""
    return f"{url}{'&' if '?' in url else '?'}options={quote(options, safe='')}"


def _shadowed(url: str) -> None:
    """A schema ``elsewhere`` whose table only a search_path naming it resolves."""
    execute_sql(url, "CREATE SCHEMA elsewhere", "CREATE TABLE elsewhere.only_here (n int)",
                "INSERT INTO elsewhere.only_here VALUES (42)")


def test_a_read_only_connection_keeps_the_urls_search_path(empty_db: str) -> None:
    _shadowed(empty_db)
    url = with_options(empty_db, "-csearch_path=elsewhere,public")
    with db.connection(url, read_only=True, options={"statement_timeout": "5s"}) as conn:
        assert db.one(conn, "SELECT n FROM only_here") == (42,)
        assert db.one(conn, "SHOW transaction_read_only") == ("on",)
        assert db.one(conn, "SHOW statement_timeout") == ("5s",)


def test_a_read_only_connection_keeps_pgoptions(empty_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _shadowed(empty_db)
    monkeypatch.setenv("PGOPTIONS", "-c search_path=elsewhere,public")
    with db.connection(empty_db, read_only=True) as conn:
        assert db.one(conn, "SELECT n FROM only_here") == (42,)
        assert db.one(conn, "SHOW transaction_read_only") == ("on",)


def test_the_checks_connection_keeps_the_urls_search_path(empty_db: str, cutover_settings: Settings,
                                                          cutover_plan: Plan) -> None:
    """Set B's and Set A's checks read through this one connection."""
    _shadowed(empty_db)
    conn = check_connection(with_options(empty_db, "-csearch_path=elsewhere,public"), cutover_settings, cutover_plan)
    try:
        assert db.one(conn, "SELECT n FROM only_here") == (42,)
    finally:
        conn.close()


def test_the_urls_options_never_make_a_read_only_connection_writable(empty_db: str) -> None:
    """Ours come last, so an operator's ``-cdefault_transaction_read_only=off`` cannot undo them."""
    url = with_options(empty_db, "-cdefault_transaction_read_only=off")
    with db.connection(url, read_only=True) as conn:
        assert db.one(conn, "SHOW transaction_read_only") == ("on",)


def _schema_moved_to_app(url: str) -> None:
    """The reference schema in ``app`` instead of ``public``: found only through the search_path."""
    execute_sql(url, "ALTER SCHEMA public RENAME TO app", "CREATE SCHEMA public")


def test_dry_run_and_plan_check_read_the_schema_the_urls_search_path_names(fresh_db: str) -> None:
    _schema_moved_to_app(fresh_db)
    url = with_options(fresh_db, "-csearch_path=app")
    dry = run_cutover(url, "dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "READY: " in dry.stdout
    check = run_cutover(url, "plan", "check")
    assert "missing" not in check.stdout, check.stdout


def test_dry_run_reads_the_schema_pgoptions_names(fresh_db: str) -> None:
    _schema_moved_to_app(fresh_db)
    dry = run_cutover(fresh_db, "dry-run", extra_env={"PGOPTIONS": "-c search_path=app"})
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "READY: " in dry.stdout


def test_local_settings_hold_for_their_block_and_are_gone_with_the_transaction(empty_db: str) -> None:
    """The planner switches and the id tables' sample size are set for one stretch of a transaction:
    back to what they were after it, and never past the transaction however the block ends."""
    def current(conn: db.Connection) -> tuple[str, str]:
        row = db.one(conn, "SELECT current_setting('enable_nestloop'), current_setting('default_statistics_target')")
        return str(row[0]), str(row[1])

    with db.connection(empty_db) as conn:
        conn.execute("SET default_statistics_target = 50")  # the session's own value, to be kept
        conn.commit()
        before = current(conn)
        with db.local_settings(conn, {"enable_nestloop": "off", "default_statistics_target": "10"}):
            assert current(conn) == ("off", "10")
        assert current(conn) == before
        with pytest.raises(RuntimeError), db.local_settings(conn, {"enable_nestloop": "off"}):
            raise RuntimeError("the block failed")
        assert current(conn) == before
        with db.local_settings(conn, {"enable_nestloop": "off"}):
            conn.rollback()  # the transaction ends inside the block: the setting ends with it
            assert current(conn) == before
        conn.rollback()


def test_a_statement_failing_under_local_settings_reaches_the_caller_as_itself(empty_db: str) -> None:
    """A statement timeout inside the block must reach the command as the timeout it is (its message
    names the option to raise), not as the restore's 'current transaction is aborted'."""
    with db.connection(empty_db) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero), db.local_settings(conn, {"enable_nestloop": "off"}):
            conn.execute("SELECT 1 / 0")
        conn.rollback()
