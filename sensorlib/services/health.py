"""The small HTTP server of the background services (archiver, notifier): ``GET /health``
and ``GET /metrics``, behind the same Host guard as every other listener.

The producer and processor APIs are FastAPI apps (:mod:`sensorlib.services`); the
archiver and the notifier have no API, only these two routes, so a standard-library
server in a thread is enough. Idle or slow clients lose their thread after
``Settings.header_timeout``.

>>> server = serve_health("archive", lambda: (True, {"status": "ok"}), registry,
...                       settings, "127.0.0.1", 8083)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sensorlib.config import Settings
from sensorlib.errors import ConfigError
from sensorlib.services.hosts import host_allowed

__all__ = ["serve_health"]

Health = Callable[[], tuple[bool, dict[str, Any]]]


def serve_health(service: str, health: Health, registry: CollectorRegistry, settings: Settings,
                 host: str, port: int) -> ThreadingHTTPServer:
    """Answer ``GET /health`` (JSON from ``health()``: 200 healthy, 503 with the reasons) and
    ``GET /metrics`` (Prometheus text of ``registry``) on ``host:port`` in a daemon thread.

    Requests whose Host header is not one of :meth:`Settings.hosts` get 400 (DNS
    rebinding). Raises :class:`~sensorlib.errors.ConfigError` naming the port's setting
    when the port is taken.
    """
    allowed = tuple(settings.hosts())

    class Handler(BaseHTTPRequestHandler):
        timeout = settings.header_timeout  # idle or slow clients: their thread ends

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if not host_allowed(self.headers.get("Host"), allowed, None):
                self._send(400, {"error": "unknown Host header; the service answers to "
                                          "SENSORLIB_ALLOWED_HOSTS"})
            elif path == "/metrics":
                data = generate_latest(registry)
                self._reply(200, CONTENT_TYPE_LATEST, data)
            elif path != "/health":
                self._send(404, {"error": "not found; try /health or /metrics"})
            else:
                healthy, body = health()
                self._send(200 if healthy else 503, body)

        def _send(self, code: int, body: dict[str, Any]) -> None:
            self._reply(code, "application/json", json.dumps(body).encode())

        def _reply(self, code: int, content_type: str, data: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise ConfigError(f"the {service} service's /health cannot listen on {host}:{port} "
                          f"({exc}); choose another port (--port or its SENSORLIB_*_PORT)"
                          ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"sensorlib-{service}-health",
                     daemon=True).start()
    return server
