"""What both services share: error bodies, health answers, body limits, request guards."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from sensorlib.config import Settings
from sensorlib.events import MAX_BODY_BYTES
from sensorlib.kafka_io import kafka_reachable
from sensorlib.telemetry import setup_tracing

#: Longest a client may take to send a request body by default (``SENSORLIB_BODY_TIMEOUT``).
BODY_TIMEOUT = 10.0
#: Idle keep-alive connections are closed after this (uvicorn's ``timeout_keep_alive``).
KEEP_ALIVE_TIMEOUT = 5

SERVICE_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class BodyTooLarge(Exception):
    """The request body exceeds the 64 KiB contract."""


class BodyTooSlow(Exception):
    """The client did not send its whole body within :data:`BODY_TIMEOUT`."""


async def read_limited_body(request: Request, limit: int = MAX_BODY_BYTES,
                            timeout: float = BODY_TIMEOUT) -> bytes:
    """The request body, refusing (without buffering it all) anything over ``limit`` bytes
    or taking longer than ``timeout`` seconds to arrive (a slow-body client holds a
    connection and a task for as long as it likes otherwise: uvicorn has no body timeout).
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTooSlow from None
    return b"".join(chunks)


def guard(app: FastAPI, settings: Settings) -> None:
    """Refuse requests a browser could be tricked into sending (README "Security").

    - Host: only the names the service is reached by (:meth:`Settings.hosts`, with any
      port): a DNS-rebinding page on ``evil.example`` gets 400.
    - Origin: a browser request from another origin is refused (403) unless listed in
      ``SENSORLIB_CORS_ORIGINS``, which also get CORS headers.

    Plain ASGI middleware (Starlette's ``BaseHTTPMiddleware`` costs a task group per
    request: it was a third of the producer's time per POST).
    """
    allowed = frozenset(settings.cors_origins)
    app.add_middleware(SameOriginGuard, allowed=allowed)
    if allowed:
        app.add_middleware(CORSMiddleware, allow_origins=sorted(allowed),
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type"])
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.hosts()))


class SameOriginGuard:
    """ASGI middleware: a request whose ``Origin`` is neither the service's own (the Host
    it was sent to) nor in ``allowed`` gets 403 (see :func:`guard`)."""

    def __init__(self, app: Any, allowed: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            origin = host = None
            for name, value in scope["headers"]:
                if name == b"origin":
                    origin = value.decode("latin-1")
                elif name == b"host":
                    host = value.decode("latin-1")
            if origin and origin not in self.allowed and not _same_origin(origin, host):
                answer = problem(403, [{"field": "Origin", "reason": f"{origin[:100]} may not "
                                        "call this API (set SENSORLIB_CORS_ORIGINS to allow it)"}],
                                 "cross-origin request refused")
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _same_origin(origin: str, host: str | None) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return bool(parts.netloc) and parts.netloc == (host or "")


def json_content_type(request: Request) -> bool:
    """Whether the request says its body is JSON (``application/json``, any charset).

    Browsers send ``text/plain`` cross-origin without a preflight: requiring JSON closes
    that CSRF door.
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


def problem(status: int, errors: list[dict[str, str]], message: str, *,
            retry_after: int | None = None) -> JSONResponse:
    """A JSON error answer: ``{"error": message, "detail": [{"field", "reason"}]}``.

    ``retry_after`` (seconds) adds a ``Retry-After`` header (429 and 503 answers).
    """
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return JSONResponse(status_code=status, content={"error": message, "detail": errors},
                        headers=headers)


def health_body(settings: Settings, problems: list[str], **details: Any) -> dict[str, Any]:
    """The ``/health`` answer both services give: healthy when Kafka answers and there is
    no problem; ``problems`` says why not, in words; ``details`` are the service's own."""
    reachable = kafka_reachable(settings)
    if not reachable:
        problems = [f"Kafka is not reachable at {settings.bootstrap_servers}", *problems]
    ok = not problems
    return {
        "status": "healthy" if ok else "unhealthy",
        "ok": ok,
        "problems": problems,
        "kafka": "reachable" if reachable else "unreachable",
        "bootstrapServers": settings.bootstrap_servers,
        **details,
    }


def health_response(body: dict[str, Any]) -> JSONResponse:
    """200 when ``body["ok"]``, else 503 — the contract of ``GET /health``."""
    return JSONResponse(status_code=200 if body.get("ok") else 503, content=body)


def metrics_response(registry: CollectorRegistry) -> Response:
    """``GET /metrics``: the registry in Prometheus's text exposition format."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def trace_app(app: FastAPI, service: str, settings: Settings) -> None:
    """Trace the app's requests when tracing is configured (:func:`setup_tracing`).

    The server span of each API request continues an incoming W3C ``traceparent``;
    ``/health`` and ``/metrics`` (polled by supervisors and Prometheus) are not traced.
    Also records the service's name and settings for :func:`sensorlib.services.serve`.
    """
    app.state.service_name = service
    app.state.settings = settings
    if not setup_tracing(service):
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="health,metrics",
                                       exclude_spans=["receive", "send"])
