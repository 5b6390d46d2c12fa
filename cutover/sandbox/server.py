"""The one session-wide provider behind the fixtures: a server, a template database, clones.

Under pytest-xdist the workers share one server (the FileLock recipe): the first worker to ask
starts it and writes ``server.json`` into a directory the controller created; the others read it.
The snapshot is restored once into a template database and every consumer gets its own clone
(``CREATE DATABASE ... TEMPLATE``), which takes a fraction of a second instead of a restore.
Only the controller (or the sole process without xdist) stops the server, at the very end, because
a worker that finishes early must not pull the server from under the others.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from filelock import FileLock

from cutover.core import db
from cutover.core.errors import SetupError
from cutover.core.plan import Plan
from cutover.core.progress import Log, quiet
from cutover.sandbox import backends, snapshot
from cutover.sandbox.backends import SandboxSpec, ServerInfo

TEMPLATE_DB = "cutover_template"


class SessionSandbox:
    """Lazily started, shared, always-cleaned-up sandbox for one pytest run."""

    def __init__(self, settings: SandboxSpec, plan: Plan, shared_dir: Path, worker: str, owner_pid: int,
                 log: Log = quiet) -> None:
        self.settings = settings
        self.plan = plan
        self.shared_dir = shared_dir
        self.worker = worker
        self.owner_pid = owner_pid
        self.log = log
        self._server: ServerInfo | None = None
        self._clones = 0
        # One instance, so that nested use (template() → server()) re-enters instead of deadlocking.
        self._lock = FileLock(str(shared_dir / "sandbox.lock"))

    def server(self) -> ServerInfo:
        """The running server, started by whichever process asks first."""
        if self._server is None:
            info_file = self.shared_dir / "server.json"
            with self._lock:
                failed = self.shared_dir / "failed.txt"
                if failed.exists():  # another worker already failed: fail the same way, fast
                    raise SetupError(failed.read_text())
                if info_file.exists():
                    self._server = ServerInfo.from_json(info_file.read_text())
                else:
                    try:
                        self._server = backends.start(self.settings, self.owner_pid, self.log)
                    except SetupError as exc:
                        failed.write_text(str(exc))
                        raise
                    info_file.write_text(self._server.to_json())
        return self._server

    @property
    def is_url(self) -> bool:
        return self.server().backend == "url"

    def snapshot_file(self) -> Path:
        """--snapshot if given, else the generated default (made once, cached across runs)."""
        if self.settings.snapshot is not None:
            return Path(self.settings.snapshot)
        return snapshot.default_snapshot(self.settings.cache_path, self.plan, self.server().admin_url,
                                         self.settings.snapshot_scale, self.settings.snapshot_seed, self.log,
                                         tools=self.server().tools())

    def template(self) -> str:
        """Name of the template database holding the restored snapshot (restored once per run)."""
        if self.is_url:
            raise SetupError("a --db-url target is never restored into; this step needs a sandbox "
                             "(drop --db-url, or pass --sandbox local)")
        marker = self.shared_dir / "template.json"
        with self._lock:
            if not marker.exists():
                path = self.snapshot_file()
                admin = self.server().admin_url
                url = db.create_database(admin, TEMPLATE_DB)
                try:
                    result = snapshot.restore(path, url, self.plan, log=self.log, tools=self.server().tools(),
                                              create_roles=True)  # a sandbox: ours to add roles to
                except BaseException:
                    db.drop_database(admin, TEMPLATE_DB)
                    raise
                marker.write_text(json.dumps({"snapshot": str(path), "restore_seconds": result.total_seconds,
                                              "rows": result.rows, "format": result.format,
                                              "created_roles": list(result.created_roles)}))
        return TEMPLATE_DB

    def restore_info(self) -> dict[str, object]:
        marker = self.shared_dir / "template.json"
        return dict(json.loads(marker.read_text())) if marker.exists() else {}

    def clone(self, label: str = "db") -> str:
        """A fresh database cloned from the template; the caller drops it with :meth:`drop`."""
        template = self.template()
        self._clones += 1
        name = f"cutover_{self.worker}_{label}_{self._clones}"
        admin = self.server().admin_url
        db.drop_database(admin, name)
        return db.create_database(admin, name, template=template)

    def drop(self, url: str) -> None:
        db.drop_database(self.server().admin_url, db.database_name(url))


def release(shared_dir: Path) -> None:
    """Stop the shared server (if one was started) and remove the shared directory. Idempotent."""
    info_file = shared_dir / "server.json"
    if info_file.exists():
        backends.stop(ServerInfo.from_json(info_file.read_text()))
    shutil.rmtree(shared_dir, ignore_errors=True)
