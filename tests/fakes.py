"""Fakes of the services around the cutover, on 127.0.0.1, for the tests that must not reach the real ones.

- :func:`telegram`: the Telegram Bot API (``POST /bot<token>/sendMessage``) as the alerts call it, and
  production's drain-streams route as the go/no-go probes it (``GET`` answered with
  ``state["drain_status"]``, 405 by default as a POST-only route does), recording the method. It
  answers like the real one (``{"ok": true, "result": ...}``, 401 for a wrong token, 400 for an
  unknown chat); its state sets a status to answer with (and its ``description``, where ``{path}``
  echoes the request's path as some proxies do), how many first requests fail with 500, a delay
  before answering. It records every request and every message.
- :func:`dev_branch`: the dev branch's services (HTTP and WebSocket) for the manual checks' assists.
  Its state sets statuses, bodies, the trace's tenant, whether the case WebSocket sends the drained
  frame and how long it waits before closing. It records requests.

Each fake's behaviour is a plain dict the test changes.
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


class JsonHandler(BaseHTTPRequestHandler):
    """Quiet, and answers JSON; a client that gave up waiting (the timeout tests) is not an error."""

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass


# -- Telegram ----------------------------------------------------------------------------------------------

TOKEN = "123456789:AAF-canaryBotToken-" + "x7Q2"
CHAT = "-1001234567890"


@dataclass
class FakeBot:
    url: str
    token: str
    chat: str
    state: dict[str, Any]
    requests: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment that points the alerts at this fake."""
        return {"CUTOVER_TELEGRAM_BOT_TOKEN": self.token, "CUTOVER_TELEGRAM_CHAT_ID": self.chat,
                "CUTOVER_TELEGRAM_API_URL": self.url, **extra}

    def events(self) -> list[str]:
        return [m.split(":", 1)[0] for m in self.messages]


@contextmanager
def telegram(token: str = TOKEN, chat: str = CHAT) -> Iterator[FakeBot]:
    bot = FakeBot("", token, chat, {"status": 200, "fail_first": 0, "delay": 0.0, "drain_status": 405})
    lock = threading.Lock()

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            with lock:
                bot.requests.append({"method": "GET", "path": self.path, "body": "",
                                     "auth": self.headers.get("Authorization")})
            if self.path == "/api/v1/admin/system/drain-streams":
                self._send(bot.state["drain_status"], {"detail": "Method Not Allowed"})
            else:
                self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            with lock:
                bot.requests.append({"method": "POST", "path": self.path, "body": raw})
                n = len(bot.requests)
            time.sleep(bot.state["delay"])
            if self.path != f"/bot{bot.token}/sendMessage":
                self._send(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                return
            if n <= bot.state["fail_first"]:
                self._send(500, {"ok": False, "error_code": 500, "description": "Internal Server Error"})
                return
            if bot.state["status"] != 200:
                said = str(bot.state.get("description") or "Too Many Requests: retry later")
                self._send(bot.state["status"], {"ok": False, "error_code": bot.state["status"],
                                                 "description": said.replace("{path}", self.path)})
                return
            body = json.loads(raw)
            if str(body.get("chat_id")) != bot.chat:
                self._send(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
                return
            with lock:
                bot.messages.append(body["text"])
            self._send(200, {"ok": True, "result": {"message_id": len(bot.messages), "text": body["text"]}})

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    bot.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield bot
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- the dev branch ---------------------------------------------------------------------------------------

TARGET = "tenant-curaway-patients"


@dataclass
class DevBranch:
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
def dev_branch() -> Iterator[DevBranch]:
    fake = DevBranch("", "", defaults())

    class Handler(JsonHandler):
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
