"""The two HTTP services of the reference sample: the producer API and the processor API.

Both are FastAPI apps with the reference paths (``/api/...`` and ``/health``), JSON
everywhere, and a background worker thread (the simulator or the processor loop) that
starts and stops with the app. :func:`serve` runs one under uvicorn.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import uvicorn

from sensorlib.services.common import KEEP_ALIVE_TIMEOUT, SERVICE_LOG_FORMAT
from sensorlib.telemetry import configure_logging, shutdown_tracing

__all__ = ["serve"]


def serve(app: Any, host: str, port: int, *, log_level: str = "info") -> None:
    """Run ``app`` with uvicorn on host:port until SIGINT/SIGTERM (graceful shutdown).

    Logs are text, or JSON lines with ``SENSORLIB_LOG_FORMAT=json`` (uvicorn's own lines
    too); buffered spans are exported before the process ends.
    """
    settings = getattr(app.state, "settings", None)
    secrets = [] if settings is None else [settings.sasl_password]
    service = getattr(app.state, "service_name", "sensorlib")
    configure_logging(service, text_format=SERVICE_LOG_FORMAT, secrets=secrets)
    json_logs = os.environ.get("SENSORLIB_LOG_FORMAT", "").strip().lower() == "json"
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per-connection chatter
    # Idle keep-alive connections close after KEEP_ALIVE_TIMEOUT; a body must arrive within
    # common.BODY_TIMEOUT; past limit_concurrency connections, new requests get 503.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5,
                            timeout_keep_alive=KEEP_ALIVE_TIMEOUT, limit_concurrency=1000,
                            server_header=False,
                            # JSON logs: uvicorn's loggers go through the root handler.
                            **({"log_config": None} if json_logs else {}))
    server = uvicorn.Server(config)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run()
    finally:
        shutdown_tracing()
