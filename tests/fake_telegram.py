"""A fake Telegram Bot API on 127.0.0.1: ``POST /bot<token>/sendMessage``, as the alerts call it.

It also serves production's drain-streams route as the go/no-go probes it (``GET`` answered with
``state["drain_status"]``, 405 by default as a POST-only route does), recording the method.

It answers like the real one (``{"ok": true, "result": ...}``, 401 for a wrong token, 400 for an
unknown chat) and its behaviour is a dict the test changes: a status to answer with, how many first
requests fail with 500, a delay before answering. It records every request and every message.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
def running(token: str = TOKEN, chat: str = CHAT) -> Iterator[FakeBot]:
    bot = FakeBot("", token, chat, {"status": 200, "fail_first": 0, "delay": 0.0, "drain_status": 405})
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
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
                pass  # the client gave up waiting (the timeout tests)

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
                self._send(bot.state["status"], {"ok": False, "error_code": bot.state["status"],
                                                 "description": "Too Many Requests: retry later"})
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
