"""What both services share: error bodies, health answers, body limits, request guards,
the write token and the connection guard of the HTTP server."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import resource
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.middleware.cors import CORSMiddleware

from sensorlib.config import Settings, is_loopback
from sensorlib.errors import BodyTooLarge, BodyTooSlow
from sensorlib.kafka.admin import kafka_reachable
from sensorlib.model.limits import MAX_BODY_BYTES
from sensorlib.observe.tracing import setup_tracing
from sensorlib.services.hosts import HostGuard

#: Longest a client may take to send a request body by default (``SENSORLIB_BODY_TIMEOUT``).
BODY_TIMEOUT = 10.0
#: Idle keep-alive connections are closed after this (uvicorn's ``timeout_keep_alive``).
KEEP_ALIVE_TIMEOUT = 5
#: Requests being answered at once beyond which new ones get 503 (``/health`` and
#: ``/metrics`` excepted). Counts requests, never idle connections.
MAX_ACTIVE_REQUESTS = 1000
#: Open connections at most; past it the oldest one that never sent a request is closed.
MAX_CONNECTIONS = 10_000
#: Methods that write: they need the bearer token when one is required (:class:`WriteAuth`).
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

log = logging.getLogger("sensorlib.services")

SERVICE_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    gate = WriteGate(settings)
    app.state.write_gate = gate
    app.add_middleware(WriteAuth, gate=gate)  # innermost: CORS headers on its 401s too
    app.add_middleware(SameOriginGuard, allowed=allowed)
    if allowed:
        app.add_middleware(CORSMiddleware, allow_origins=sorted(allowed),
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Content-Type", "Authorization", "Idempotency-Key"])
    app.add_middleware(HostGuard, allowed=settings.hosts())
    app.add_middleware(ActiveRequestLimit, limit=MAX_ACTIVE_REQUESTS)


class WriteGate:
    """Who may write (README "Security: binding beyond loopback").

    With ``SENSORLIB_API_TOKEN`` set, every write (POST, PUT, PATCH, DELETE) must carry
    ``Authorization: Bearer <token>``, wherever the service is bound. Without one, a
    service bound to loopback accepts writes as before; one bound beyond loopback refuses
    them all (401 naming the fix) unless ``SENSORLIB_INSECURE=1`` (``sensorlib up
    --insecure``) says anyone on the network may write. Reads stay open.
    :func:`sensorlib.services.serve` calls :meth:`bind` with the address it really binds.
    """

    def __init__(self, settings: Settings) -> None:
        token = settings.api_token
        self._token = token.encode() if token else None
        self._insecure = settings.insecure
        self.bind(settings.host)

    def bind(self, host: str) -> None:
        """The server listens on ``host``: decide whether writes need the token."""
        self.host = host
        self.loopback = is_loopback(host)
        self.required = self._token is not None or not (self.loopback or self._insecure)

    def refusal(self, headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
        """None when a write with these headers may go ahead; else (reason, error code)."""
        if self._token is None:
            reason = (f"this server is bound beyond loopback ({self.host}) and has no "
                      "SENSORLIB_API_TOKEN: set one (clients send it as a bearer token), or "
                      "SENSORLIB_INSECURE=1 to let anyone on the network write")
            return reason, "invalid_token"
        given = None
        for name, value in headers:
            if name == b"authorization":
                given = value
                break
        if given is None:
            return "a bearer token is required to write (Authorization: Bearer …)", ""
        scheme, _, token = given.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._token):
            return "the bearer token is not valid", "invalid_token"
        return None


class WriteAuth:
    """ASGI middleware: a write that :class:`WriteGate` refuses gets 401 with
    ``WWW-Authenticate: Bearer`` and a problem body; everything else passes."""

    def __init__(self, app: Any, gate: WriteGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        gate = self.gate
        if scope["type"] == "http" and gate.required and scope["method"] in WRITE_METHODS:
            refused = gate.refusal(scope["headers"])
            if refused is not None:
                reason, code = refused
                challenge = 'Bearer realm="sensorlib"' + (f', error="{code}"' if code else "")
                answer = problem(401, [{"field": "Authorization", "reason": reason}],
                                 "unauthorized")
                answer.headers["WWW-Authenticate"] = challenge
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


#: Paths answered even when :data:`MAX_ACTIVE_REQUESTS` are being served.
_ALWAYS = frozenset({"/health", "/metrics"})


class ActiveRequestLimit:
    """ASGI middleware: past ``limit`` requests being answered at once, a new one gets 503
    with ``Retry-After`` (``/health`` and ``/metrics`` always pass). This replaces uvicorn's
    ``limit_concurrency``, which also counts open connections: 1,000 sockets that never
    sent a byte made it answer 503 to everyone."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit and scope["path"] not in _ALWAYS:
            answer = problem(503, [], f"more than {self.limit} requests at once; retry",
                             retry_after=1)
            await answer(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


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


# --------------------------------------------------------------------------- the HTTP server


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (as Go's runtime
    does): idle sockets must not run a service out of descriptors. Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options of both services: the guarded protocol (:func:`guarded_protocol`),
    keep-alive timeout, no ``limit_concurrency`` (see :class:`ActiveRequestLimit`)."""
    files = raise_fd_limit()
    protocol = guarded_protocol(header_timeout=settings.header_timeout,
                                max_head_bytes=settings.max_header_bytes,
                                max_connections=max(64, min(MAX_CONNECTIONS, files - 256)))
    return {"http": protocol, "timeout_keep_alive": KEEP_ALIVE_TIMEOUT,
            "limit_concurrency": None}


def _raw_problem(status: int, phrase: str, reason: str, field: str) -> bytes:
    body = json.dumps({"error": phrase.lower(), "detail": [{"field": field, "reason": reason}]},
                      ensure_ascii=True).encode()
    return (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def guarded_protocol(*, header_timeout: float, max_head_bytes: int,
                     max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with what it lacks against idle and slow clients:

    - a **header timeout**: a connection must deliver a complete request head within
      ``header_timeout`` seconds of opening (and each later head within as long of its
      first byte); otherwise it is closed (408 first when part of a head came). uvicorn
      arms its keep-alive timer only after a first response, so a socket that never
      sent a byte stayed open for ever;
    - a **head size cap**: a request line and headers over ``max_head_bytes`` get 431
      and the connection is closed, before the parser buffers more (httptools keeps a
      header value whole in memory however long it is: a 128 MiB header took 230 MB);
    - **fairness under a connection flood**: past ``max_connections`` open connections
      the oldest one that has not completed a request head yet is closed, so sockets
      that send nothing can never crowd out a client that sends requests.

    Everything else is uvicorn's (the subclass only wraps its callbacks).
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    waiting: dict[Any, None] = {}  # connections with no complete request head yet, oldest first
    timed_out = _raw_problem(408, "Request Timeout",
                             f"request head not received within {header_timeout:g}s",
                             "headers")
    too_large = _raw_problem(431, "Request Header Fields Too Large",
                             f"request line and headers over {max_head_bytes} bytes "
                             "(SENSORLIB_MAX_HEADER_BYTES)", "headers")

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _head_open = False
        _head_bytes = 0
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_open = True
            self._head_timer = self.loop.call_later(header_timeout, self._head_timeout)
            waiting[self] = None
            while len(self.connections) > max_connections and waiting:
                oldest = next(iter(waiting))
                if oldest is self:
                    break
                oldest._drop(None)

        def connection_lost(self, exc: Exception | None) -> None:
            waiting.pop(self, None)
            self._cancel_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            was_open = self._head_open
            super().data_received(data)
            if self._head_open and not self.transport.is_closing():
                # Bytes of a head still incomplete (an upper bound when it began mid-chunk).
                self._head_bytes = self._head_bytes + len(data) if was_open else len(data)
                if self._head_bytes > max_head_bytes:
                    self._drop(too_large)
                elif self._head_timer is None:
                    self._head_timer = self.loop.call_later(header_timeout, self._head_timeout)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_open = True

        def on_headers_complete(self) -> None:
            self._head_open = False
            self._head_bytes = 0
            self._cancel_head_timer()
            waiting.pop(self, None)
            # A whole head that came in one read was never counted as incomplete.
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > max_head_bytes:
                self._drop(too_large)
                return
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if self.cycle is not None:  # None: the first head was refused (431)
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self.cycle is not None:
                super().on_message_complete()

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self._head_open and not self.transport.is_closing():
                self._drop(timed_out if self._head_bytes else None)

        def _drop(self, answer: bytes | None) -> None:
            waiting.pop(self, None)
            self._cancel_head_timer()
            self._head_open = False
            if answer is not None:
                self.transport.write(answer)
            self.transport.close()

    return GuardedHttpToolsProtocol
