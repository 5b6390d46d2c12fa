"""Server encodings: a SQL_ASCII or LATIN1 database gives the same results as a UTF8 one, on each
backend. On SQL_ASCII psycopg hands back bytes unless the client encoding is forced: the snapshot
manifest once held keys like "b'tenant-apollo-001'" and the dry run said every table was missing."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from cutover.core import db
from cutover.core.options import Settings
from cutover.core.plan import Plan
from cutover.reference import preflight
from cutover.sandbox import snapshot
from cutover.sandbox.backends import ServerInfo
from cutover.sandbox.pgbin import ClientTools
from cutover.suite.under_check import DatabaseUnderCheck
from tests.support import executed, run_checks

ENCODINGS = ("UTF8", "SQL_ASCII", "LATIN1")


def encoded_database(server: ServerInfo, encoding: str) -> str:
    name = f"enc_{encoding.lower()}_{uuid.uuid4().hex[:6]}"
    with db.connection(server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
                     .format(sql.Identifier(name), sql.Literal(encoding)))
    return db.with_database(server.admin_url, name)


def outcomes(server: ServerInfo, snap: Path, plan: Plan, settings: Settings, encoding: str) -> dict[str, Any]:
    """Everything an operator sees from one database: counts, the dry run, the cutover, the checks."""
    url = encoded_database(server, encoding)
    try:
        with db.connection(url) as conn:
            assert conn.execute("SHOW server_encoding").fetchone() == (encoding,)
        with db.connection(url, autocommit=True) as conn:
            snapshot.ensure_roles(conn, plan)
        restored = snapshot.restore(snap, url, plan, tools=server.tools())
        with db.connection(url, read_only=True) as conn:
            counts = snapshot.count_rows(conn, plan)
            dry_run = preflight.run(conn, plan).to_json()
        report = executed(url, plan, "test:encodings")
        failing = run_checks(DatabaseUnderCheck(url, report, None, True), plan, settings)
        return {"rows": restored.rows, "counts": counts, "dry_run": dry_run, "moved": report["moved"],
                "failing_checks": sorted(failing)}
    finally:
        db.drop_database(server.admin_url, db.database_name(url))


def test_sql_ascii_and_latin1_give_the_same_results_as_utf8(any_server: ServerInfo, cutover_plan: Plan,
                                                             cutover_settings: Settings, tmp_path: Path) -> None:
    snap = tmp_path / "snap.sql.gz"
    manifest = snapshot.make(snap, cutover_plan, any_server.admin_url, scale=0.05, seed=11,
                             tools=any_server.tools())
    assert cutover_plan.source in json.dumps(manifest["rows"])
    results = {enc: outcomes(any_server, snap, cutover_plan, cutover_settings, enc) for enc in ENCODINGS}
    utf8 = results["UTF8"]
    assert utf8["counts"] == manifest["rows"] and utf8["dry_run"]["verdict"] == "READY"
    assert utf8["failing_checks"] == [] and sum(utf8["moved"].values()) > 0
    for encoding in ENCODINGS[1:]:
        assert results[encoding] == utf8, f"{encoding} differs from UTF8"


def test_a_snapshot_made_on_a_sql_ascii_server_has_a_text_manifest(any_server: ServerInfo, cutover_plan: Plan,
                                                                    tmp_path: Path) -> None:
    """Made through a SQL_ASCII database's URL (as on a server whose template is SQL_ASCII)."""
    url = encoded_database(any_server, "SQL_ASCII")
    try:
        with db.connection(url, autocommit=True) as conn:
            snapshot.ensure_roles(conn, cutover_plan)
        counts = snapshot.load_reference(url, cutover_plan, 0.05, 11)
    finally:
        db.drop_database(any_server.admin_url, db.database_name(url))
    keys = {tenant for per_tenant in counts.values() for tenant in per_tenant}
    assert cutover_plan.source in keys and not any(k.startswith("b'") for k in keys), sorted(keys)


def test_a_cached_snapshot_with_a_broken_manifest_is_made_again(local_server: ServerInfo, cutover_plan: Plan,
                                                                 tmp_path: Path) -> None:
    out = snapshot.default_snapshot(tmp_path, cutover_plan, local_server.admin_url, 0.05, 11)
    manifest_file = snapshot.manifest_path(out)
    good = json.loads(manifest_file.read_text())
    broken = {**good, "rows": {t: {f"b'{k}'" if k != "*" else k: n for k, n in per.items()}
                               for t, per in good["rows"].items()}}
    broken.pop("manifest_version", None)
    manifest_file.write_text(json.dumps(broken))
    again = snapshot.default_snapshot(tmp_path, cutover_plan, local_server.admin_url, 0.05, 11)
    assert again == out
    assert json.loads(manifest_file.read_text())["rows"] == good["rows"]


def test_the_cache_key_covers_plan_schema_generator_server_and_dump_tool(cutover_plan: Plan, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    base = snapshot.cache_key(cutover_plan, ClientTools())
    plan_copy = tmp_path / "plan.toml"
    plan_copy.write_bytes(cutover_plan.path.read_bytes() + b"\n# edited\n")
    assert snapshot.cache_key(replace(cutover_plan, path=plan_copy), ClientTools()) != base
    assert snapshot.cache_key(cutover_plan, ClientTools(), "15.20") != snapshot.cache_key(
        cutover_plan, ClientTools(), "15.18"), "the server's version shapes the dump"
    monkeypatch.setattr(snapshot, "MANIFEST_VERSION", snapshot.MANIFEST_VERSION + 1)
    assert snapshot.cache_key(cutover_plan, ClientTools()) != base
