"""The runbook's Telegram alerts: ``cutover_started``, ``cutover_completed``, ``cutover_failed``.

The people watching the window learn from these that the transaction began and how it ended. They
are a courtesy, never a gate: an alert runs in a thread beside the transaction, is bounded by short
timeouts and one retry, and when it cannot be delivered the cutover carries on and says so on
stderr, so the operator announces by hand. The bot token sits in the Bot API's URL path
(``/bot<token>/sendMessage``), so it is registered as a secret before any request is built and
nothing derived from a request (URL, exception, response) is shown unredacted.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from cutover.core.redact import mask_url, redact, register_secret

if TYPE_CHECKING:
    import httpx

TOKEN_ENV = "CUTOVER_TELEGRAM_BOT_TOKEN"
CHAT_ENV = "CUTOVER_TELEGRAM_CHAT_ID"
API_ENV = "CUTOVER_TELEGRAM_API_URL"
TIMEOUT_ENV = "CUTOVER_TELEGRAM_TIMEOUT"
DEFAULT_API_URL = "https://api.telegram.org"
DEFAULT_TIMEOUT_S = 5.0
RETRY_PAUSE_S = 0.5
MAX_TEXT = 4000  # the Bot API refuses a message over 4096 characters

STARTED, COMPLETED, FAILED = "cutover_started", "cutover_completed", "cutover_failed"


@dataclass(frozen=True)
class AlertConfig:
    """Where alerts go. Read from the environment only: the token is a secret, never a flag."""

    token: str | None = None
    chat_id: str | None = None
    api_url: str = DEFAULT_API_URL
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertConfig:
        environ = os.environ if env is None else env
        token = (environ.get(TOKEN_ENV) or "").strip() or None
        if token is not None:
            register_secret(token)
            register_secret(quote(token, safe=""))
        raw_timeout = (environ.get(TIMEOUT_ENV) or "").strip()
        try:
            timeout = float(raw_timeout) if raw_timeout else DEFAULT_TIMEOUT_S
        except ValueError:
            timeout = DEFAULT_TIMEOUT_S
        if not 0 < timeout <= 60:
            timeout = DEFAULT_TIMEOUT_S
        return cls(token=token, chat_id=(environ.get(CHAT_ENV) or "").strip() or None,
                   api_url=((environ.get(API_ENV) or "").strip() or DEFAULT_API_URL).rstrip("/"),
                   timeout_s=timeout)

    @property
    def configured(self) -> bool:
        return self.token is not None and self.chat_id is not None

    @property
    def problem(self) -> str | None:
        """Why alerts cannot be sent, as a line naming the fix; None when configured."""
        if self.configured:
            return None
        if self.token is None and self.chat_id is None:
            return f"alerts are not configured: set {TOKEN_ENV} and {CHAT_ENV}"
        missing = TOKEN_ENV if self.token is None else CHAT_ENV
        return f"alerts are half configured: {missing} is not set"

    @property
    def budget_s(self) -> float:
        """The longest one alert may take: two attempts and the pause between them."""
        return 2 * self.timeout_s + RETRY_PAUSE_S

    def endpoint(self) -> str:
        return f"{self.api_url}/bot{self.token}/sendMessage"

    def where(self) -> str:
        """The API as it may be shown: without the token, any password masked."""
        return mask_url(self.api_url)


@dataclass
class Delivery:
    """What became of one alert: ``ok`` True (delivered), False (not delivered) or None (not configured)."""

    event: str
    ok: bool | None
    detail: str
    attempts: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        if self.ok:
            return f"alert {self.event}: delivered ({self.detail})"
        if self.ok is None:
            return f"alert {self.event}: not sent ({self.detail})"
        return (f"alert {self.event}: NOT DELIVERED ({self.detail}); the cutover is not affected, "
                f"announce it by hand")

    def to_json(self) -> dict[str, object]:
        return {"event": self.event, "ok": self.ok, "detail": self.detail, "attempts": self.attempts,
                "seconds": round(self.seconds, 3)}


def _cut(text: str, limit: int = 200) -> str:
    """A foreign text (an answer, an exception) masked, then shortened: cut first, a secret split by
    the cut (the token in an echoed URL) no longer matches the mask and half of it is shown."""
    return redact(text)[:limit]


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _answer(response: httpx.Response) -> str:
    """The Bot API's own description of a refusal (``{"ok": false, "description": ...}``)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and body.get("description"):
        return f"HTTP {response.status_code}: {_cut(str(body['description']))}"
    return f"HTTP {response.status_code}"


def send(config: AlertConfig, event: str, text: str, client: httpx.Client | None = None) -> Delivery:
    """Send one message with ``sendMessage``: short timeouts, one retry on a transport error, 429 or 5xx."""
    if not config.configured:
        return Delivery(event, None, config.problem or "not configured")
    import httpx  # here, not at the top: every cutover command paid ~70 ms to import it, configured or not

    body = {"chat_id": config.chat_id, "text": redact(text)[:MAX_TEXT], "disable_web_page_preview": True}
    start = time.monotonic()
    detail = "no attempt made"
    attempts = 0
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(config.timeout_s, connect=min(3.0, config.timeout_s)))
    try:
        for attempt in (1, 2):
            attempts = attempt
            try:
                response = http.post(config.endpoint(), json=body)
            except httpx.TimeoutException:
                detail = f"no answer from {config.where()} within {config.timeout_s:g} s"
            except httpx.HTTPError as exc:
                detail = f"cannot reach {config.where()} ({type(exc).__name__}: {_cut(str(exc))})"
            else:
                if response.is_success:
                    return Delivery(event, True, f"{config.where()}, attempt {attempt}", attempt,
                                    time.monotonic() - start)
                detail = f"the Bot API at {config.where()} answered {_answer(response)}"
                if not _retryable(response.status_code):
                    break
            if attempt == 1:
                time.sleep(RETRY_PAUSE_S)
    finally:
        if own:
            http.close()
    return Delivery(event, False, redact(detail), attempts, time.monotonic() - start)


@dataclass
class Alerter:
    """Sends alerts in background threads so the transaction never waits on them.

    :meth:`finish` waits for what is still in flight, but never past each alert's own budget, and
    returns one :class:`Delivery` per alert, in the order they were sent.
    """

    config: AlertConfig
    _pending: list[tuple[str, float, threading.Thread, list[Delivery]]] = field(default_factory=list)
    sender: Callable[[AlertConfig, str, str], Delivery] = send

    def __post_init__(self) -> None:
        if self.config.configured:  # imported now, before any transaction: the first alert's thread
            import httpx  # noqa: F401  would otherwise import it while the next one overtakes it

    @classmethod
    def from_env(cls) -> Alerter:
        return cls(AlertConfig.from_env())

    def send(self, event: str, text: str) -> None:
        if not self.config.configured:
            return
        box: list[Delivery] = []

        def run() -> None:
            try:
                box.append(self.sender(self.config, event, text))
            except Exception as exc:  # an alert must never take the cutover down with it
                box.append(Delivery(event, False, _cut(f"{type(exc).__name__}: {exc}")))

        thread = threading.Thread(target=run, name=f"alert-{event}", daemon=True)
        thread.start()
        self._pending.append((event, time.monotonic() + self.config.budget_s + 1.0, thread, box))

    def finish(self) -> list[Delivery]:
        out: list[Delivery] = []
        for event, deadline, thread, box in self._pending:
            thread.join(max(0.0, deadline - time.monotonic()))
            if box:
                out.append(box[0])
            else:
                out.append(Delivery(event, False, f"still unanswered after {self.config.budget_s:g} s, given up"))
        self._pending.clear()
        return out
