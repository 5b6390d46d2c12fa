"""Assists for the manual checks: the parts a machine can do, so the operator only confirms.

Each assist is optional: it runs when its URL or command is configured in the environment and
otherwise says what to set. It returns an :class:`Assist` whose ``ok`` is True, False, or None
(not configured), a one-line summary, and the evidence attached to the check in Allure. Tokens are
registered as secrets at load time, so no evidence, log or report can carry them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from cutover.core.redact import redact, register_secret, shell_command

ENV = {
    "api_url": "CUTOVER_API_URL",
    "ws_url": "CUTOVER_WS_URL",
    "patient_jwt": "CUTOVER_PATIENT_JWT",
    "provider_jwt": "CUTOVER_PROVIDER_JWT",
    "admin_jwt": "CUTOVER_ADMIN_JWT",
    "langfuse_url": "CUTOVER_LANGFUSE_URL",
    "langfuse_public_key": "CUTOVER_LANGFUSE_PUBLIC_KEY",
    "langfuse_secret_key": "CUTOVER_LANGFUSE_SECRET_KEY",
    "a18_cmd": "CUTOVER_A18_CMD",
}
SECRETS = ("patient_jwt", "provider_jwt", "admin_jwt", "langfuse_secret_key")
TIMEOUT_S = 10.0
DRAIN_CLOSE_S = 1.0


@dataclass(frozen=True)
class AssistConfig:
    """URLs and credentials of the dev branch's services, from the environment (never the command line)."""

    api_url: str | None = None
    ws_url: str | None = None
    patient_jwt: str | None = None
    provider_jwt: str | None = None
    admin_jwt: str | None = None
    langfuse_url: str | None = None
    langfuse_public_key: str | None = None
    langfuse_secret_key: str | None = None
    a18_cmd: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AssistConfig:
        environ = os.environ if env is None else env
        values = {k: (environ.get(v) or None) for k, v in ENV.items()}
        for key in SECRETS:
            register_secret(values[key])
        api = values["api_url"]
        if values["ws_url"] is None and api is not None:
            values["ws_url"] = "ws" + api[4:] if api.startswith("http") else None
        return cls(**{k: (v.rstrip("/") if k.endswith("_url") and v else v) for k, v in values.items()})

    def urls(self) -> dict[str, str]:
        """What the manual checks' steps show as {api_url} and {ws_url}."""
        # Unset, they show as shell variables: the step can then be pasted as it is.
        return {"api_url": self.api_url or "$CUTOVER_API_URL", "ws_url": self.ws_url or "$CUTOVER_WS_URL"}


@dataclass
class Assist:
    """An assist's finding: ok True/False, or None when it was not configured.

    ``check`` is the id of the check it helps, set by the test that runs it from the check's catalogue
    entry (the manual_check fixture): an assist never writes its own id, so it cannot name another check."""

    ok: bool | None
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    check: str = ""

    def line(self) -> str:
        word = {True: "PASS", False: "FAIL", None: "NOT RUN"}[self.ok]
        return redact(f"{word}: {self.summary}")


def _missing(*names: str) -> Assist:
    return Assist(None, f"not configured: set {', '.join(ENV[n] for n in names)} to automate this check")


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _http_error(what: str, exc: httpx.HTTPError) -> Assist:
    return Assist(False, f"{what} failed: {type(exc).__name__}: {exc}")


def a12_replay(cfg: AssistConfig, key: str | None, route: str | None, cached: Any, case_tenant: str | None,
               target: str) -> Assist:
    """Replay a pre-cutover idempotency key: same 2xx, same body, and its case now on the patient tenant.

    Catches a client's retry across the cutover being run again, or answered from a case the patient
    tenant no longer finds."""
    if cfg.api_url is None:
        return _missing("api_url")
    if not key or not route:
        return Assist(False, "no idempotency key naming a case was captured before the cutover")
    url = f"{cfg.api_url}{route}"
    try:
        resp = httpx.post(url, headers={"X-Idempotency-Key": key, **_auth(cfg.patient_jwt)}, json={},
                          timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return _http_error(f"POST {route}", exc)
    try:
        body: Any = resp.json()
    except ValueError:
        body = redact(resp.text, limit=500)
    evidence = {"request": f"POST {url}", "idempotency_key": key, "status": resp.status_code, "body": body,
                "cached_body": cached, "case_tenant": case_tenant}
    problems = []
    if not 200 <= resp.status_code < 300:
        problems.append(f"HTTP {resp.status_code}, expected 2xx")
    if body != cached:
        problems.append("the body differs from the cached response")
    if case_tenant != target:
        problems.append(f"the cached case is on {case_tenant}, expected {target}")
    if problems:
        return Assist(False, "; ".join(problems), evidence)
    return Assist(True, f"replayed {key}: HTTP {resp.status_code}, cached body returned, case on {target}",
                  evidence)


def a15_cross_tenant(cfg: AssistConfig, patient_id: str | None, visible_to_source: int | None) -> Assist:
    """A non-patient-tenant user reading a moved patient gets 403; the SQL probe sees nothing either.

    Catches the API handing a moved patient to another tenant's user: RLS can hold in SQL while a
    route reads past it."""
    if cfg.api_url is None or cfg.provider_jwt is None:
        return _missing("api_url", "provider_jwt")
    url = f"{cfg.api_url}/api/v1/patients/{patient_id}"
    try:
        resp = httpx.get(url, headers=_auth(cfg.provider_jwt), timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return _http_error("GET patient", exc)
    evidence = {"request": f"GET {url}", "status": resp.status_code, "sql_rows_visible_as_app_role": visible_to_source}
    problems = []
    if resp.status_code != 403:
        problems.append(f"HTTP {resp.status_code}, expected 403")
    if visible_to_source:
        problems.append(f"the SQL probe as the app role on the source sees {visible_to_source} rows")
    if problems:
        return Assist(False, "; ".join(problems), evidence)
    return Assist(True, "cross-tenant read refused with 403; the SQL probe sees 0 rows", evidence)


def a16_langfuse(cfg: AssistConfig, target: str) -> Assist:
    """The latest Langfuse trace carries the patient tenant in its metadata.

    Catches the app still tagging a patient's work with the old tenant (a tenant id cached or
    configured outside the database)."""
    if cfg.langfuse_url is None or cfg.langfuse_public_key is None or cfg.langfuse_secret_key is None:
        return _missing("langfuse_url", "langfuse_public_key", "langfuse_secret_key")
    url = f"{cfg.langfuse_url}/api/public/traces"
    try:
        resp = httpx.get(url, params={"limit": 1, "orderBy": "timestamp.desc"},
                         auth=(cfg.langfuse_public_key, cfg.langfuse_secret_key), timeout=TIMEOUT_S)
        resp.raise_for_status()
        traces = resp.json().get("data") or []
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return Assist(False, f"GET {url} failed: {type(exc).__name__}: {exc}")
    if not traces:
        return Assist(False, "Langfuse returned no trace: send a patient message first")
    trace = traces[0]
    tenant = (trace.get("metadata") or {}).get("tenant_id")
    evidence = {"trace_id": trace.get("id"), "timestamp": trace.get("timestamp"), "metadata": trace.get("metadata")}
    if tenant != target:
        return Assist(False, f"latest trace {trace.get('id')} has tenant_id={tenant!r}, expected {target}",
                      evidence)
    return Assist(True, f"latest trace {trace.get('id')} has tenant_id={target}", evidence)


def a17_callback(cfg: AssistConfig, document_id: str | None, document_tenant: str | None, target: str) -> Assist:
    """The QStash document-processed callback completes for a moved document that sits on the target.

    Catches a background job that still looks for a moved row on the old tenant and fails to find it."""
    if cfg.api_url is None:
        return _missing("api_url")
    url = f"{cfg.api_url}/qstash/document-processed"
    try:
        resp = httpx.post(url, json={"document_reference_id": document_id}, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return _http_error("POST document-processed", exc)
    evidence = {"request": f"POST {url}", "document_reference_id": document_id, "status": resp.status_code,
                "body": redact(resp.text, limit=500), "document_tenant": document_tenant}
    problems = []
    if not 200 <= resp.status_code < 300:
        problems.append(f"HTTP {resp.status_code}, expected 2xx")
    if document_tenant != target:
        problems.append(f"document {document_id} is on {document_tenant}, expected {target}")
    if problems:
        return Assist(False, "; ".join(problems), evidence)
    return Assist(True, f"callback completed (HTTP {resp.status_code}) for document {document_id} on {target}",
                  evidence)


def a18_constant(cfg: AssistConfig, target: str) -> Assist:
    """The configured command (e.g. railway run -- python -c ...) prints the new default tenant.

    Catches a deployed process still holding the old default tenant in a module constant (it needs
    the redeploy the runbook orders)."""
    if cfg.a18_cmd is None:
        return _missing("a18_cmd")
    try:
        argv, env = shell_command(cfg.a18_cmd, os.environ)  # its text stays out of argv (ps)
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return Assist(False, "the command did not finish within 60 s")
    printed = (proc.stdout.strip().splitlines() or [""])[-1].strip()
    evidence = {"command": cfg.a18_cmd, "exit": proc.returncode, "stdout": redact(proc.stdout)[-500:],
                "stderr": redact(proc.stderr)[-500:]}
    if proc.returncode != 0:
        return Assist(False, f"the command exited {proc.returncode}", evidence)
    if printed != target:
        return Assist(False, f"it printed {printed!r}, expected {target}", evidence)
    return Assist(True, f"it printed {target}", evidence)


async def _drain(cfg: AssistConfig, case_id: str) -> Assist:
    assert cfg.ws_url is not None and cfg.api_url is not None
    ws_url = f"{cfg.ws_url}/api/v1/cases/{case_id}/ws?token={cfg.patient_jwt or ''}"
    frames: list[Any] = []
    evidence: dict[str, Any] = {"websocket": f"{cfg.ws_url}/api/v1/cases/{case_id}/ws?token=***", "frames": frames}
    async with websockets.connect(ws_url, open_timeout=TIMEOUT_S, close_timeout=DRAIN_CLOSE_S) as ws:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            resp = await client.post(f"{cfg.api_url}/api/v1/admin/system/drain-streams", headers=_auth(cfg.admin_jwt))
        posted = time.monotonic()
        evidence["drain_status"] = resp.status_code
        if not 200 <= resp.status_code < 300:
            return Assist(False, f"drain-streams returned HTTP {resp.status_code}", evidence)
        drained = False
        try:
            async with asyncio.timeout(DRAIN_CLOSE_S):
                async for message in ws:
                    try:
                        frame = json.loads(message)
                    except (TypeError, ValueError):
                        frame = str(message)
                    frames.append(frame)
                    drained = drained or (isinstance(frame, dict) and frame.get("type") == "drained")
        except TimeoutError:
            evidence["closed_after_s"] = None
            what = "no drained frame and " if not drained else ""
            return Assist(False, f"{what}the socket was still open {DRAIN_CLOSE_S:g} s after drain-streams",
                          evidence)
        closed = round(time.monotonic() - posted, 3)
        evidence["closed_after_s"] = closed
        evidence["close_code"] = ws.close_code
    if not drained:
        return Assist(False, f"the socket closed after {closed} s without a {{\"type\":\"drained\"}} frame",
                      evidence)
    return Assist(True, f"drained frame received and the socket closed {closed} s after drain-streams",
                  evidence)


def a19_drain(cfg: AssistConfig, case_id: str | None) -> Assist:
    """Open the case WebSocket, POST drain-streams: a drained frame and the close within 1 s.

    Catches a stream left open across the cutover, writing on the old tenant after the move: the
    pollution the post-cutover sweep would otherwise have to catch."""
    if cfg.api_url is None or cfg.ws_url is None:
        return _missing("api_url")
    if not case_id:
        return Assist(False, "no moved case to open a WebSocket on")
    try:
        return asyncio.run(_drain(cfg, case_id))
    except (OSError, httpx.HTTPError, websockets.exceptions.WebSocketException) as exc:
        return Assist(False, f"{type(exc).__name__}: {redact(str(exc))}")
