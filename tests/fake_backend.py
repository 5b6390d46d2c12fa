"""A small fake of the dev branch's services on 127.0.0.1 (HTTP and WebSocket) for the assists' tests.

Its behaviour is a plain dict the test changes: statuses, bodies, the trace's tenant, whether the
case WebSocket sends the drained frame and how long it waits before closing. It records requests.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from websockets.sync.server import ServerConnection, serve

TARGET = "tenant-curaway-patients"


@dataclass
class Fake:
    http_url: str
    ws_url: str
    state: dict[str, Any]
    requests: list[dict[str, Any]] = field(default_factory=list)
    drain: threading.Event = field(default_factory=threading.Event)


def defaults() -> dict[str, Any]:
    return {"replay_status": 200, "replay_body": None, "patient_status": 403, "trace_tenant": TARGET,
            "traces": True, "langfuse_auth": ("pk-test", "sk-test"), "qstash_status": 200, "drain_status": 202,
            "send_drained": True, "close_delay": 0.05}


@contextmanager
def running() -> Iterator[Fake]:
    fake = Fake("", "", defaults())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            fake.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                  "body": body})

        def do_GET(self) -> None:
            self._record()
            s = fake.state
            if self.path.startswith("/api/v1/patients/"):
                self._send(s["patient_status"], {"detail": "forbidden" if s["patient_status"] == 403 else "ok"})
            elif self.path.startswith("/api/public/traces"):
                user, key = s["langfuse_auth"]
                expected = "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._send(401, {"error": "unauthorized"})
                    return
                data = [{"id": "trace-1", "timestamp": "2026-11-24T00:00:00Z",
                         "metadata": {"tenant_id": s["trace_tenant"]}}] if s["traces"] else []
                self._send(200, {"data": data})
            else:
                self._send(404, {})

        def do_POST(self) -> None:
            self._record()
            s = fake.state
            if self.path == "/qstash/document-processed":
                self._send(s["qstash_status"], {"status": "processed"})
            elif self.path == "/api/v1/admin/system/drain-streams":
                if 200 <= s["drain_status"] < 300:
                    fake.drain.set()
                self._send(s["drain_status"], {"drained": True})
            elif self.headers.get("X-Idempotency-Key"):
                self._send(s["replay_status"], s["replay_body"])
            else:
                self._send(404, {})

    def ws_handler(conn: ServerConnection) -> None:
        fake.requests.append({"method": "WS", "path": conn.request.path if conn.request else ""})
        fake.drain.wait(10)
        if fake.state["send_drained"]:
            conn.send(json.dumps({"type": "drained", "message": "server draining"}))
        else:
            conn.send(json.dumps({"type": "message", "message": "still here"}))
        time.sleep(fake.state["close_delay"])
        conn.close()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    wsd = serve(ws_handler, "127.0.0.1", 0)
    threads = [threading.Thread(target=httpd.serve_forever, daemon=True),
               threading.Thread(target=wsd.serve_forever, daemon=True)]
    for t in threads:
        t.start()
    fake.http_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    fake.ws_url = f"ws://127.0.0.1:{wsd.socket.getsockname()[1]}"
    try:
        yield fake
    finally:
        fake.drain.set()
        httpd.shutdown()
        wsd.shutdown()
        httpd.server_close()
