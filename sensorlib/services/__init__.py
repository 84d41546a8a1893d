"""The two HTTP services of the reference sample: the producer API and the processor API.

Both are FastAPI apps with the reference paths (``/api/...`` and ``/health``), JSON
everywhere, and a background worker thread (the simulator or the processor loop) that
starts and stops with the app. :func:`serve` runs one under uvicorn.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import uvicorn

from sensorlib.config import Settings
from sensorlib.observe.logs import configure_logging
from sensorlib.observe.tracing import shutdown_tracing
from sensorlib.services.common import SERVICE_LOG_FORMAT, server_options

__all__ = ["serve"]


def serve(app: Any, host: str, port: int, *, log_level: str = "info") -> None:
    """Run ``app`` with uvicorn on host:port until SIGINT/SIGTERM (graceful shutdown).

    Logs are text, or JSON lines with ``SENSORLIB_LOG_FORMAT=json`` (uvicorn's own lines
    too); buffered spans are exported before the process ends.
    """
    settings = getattr(app.state, "settings", None)
    secrets = [] if settings is None else [settings.sasl_password, settings.api_token]
    service = getattr(app.state, "service_name", "sensorlib")
    log_format = (settings or Settings.from_env()).log_format
    configure_logging(service, text_format=SERVICE_LOG_FORMAT, secrets=secrets,
                      log_format=log_format)
    json_logs = log_format == "json"
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per-connection chatter
    gate = getattr(app.state, "write_gate", None)
    if gate is not None:  # writes need the token beyond loopback: decided by the real address
        gate.bind(host)
        if not gate.loopback:
            logging.getLogger("sensorlib.services").warning(
                "bound beyond loopback (%s): writes %s", host,
                "need the bearer token (SENSORLIB_API_TOKEN)" if gate.required
                else "are open to anyone who can reach this address (SENSORLIB_INSECURE)")
    # A request head must arrive within SENSORLIB_HEADER_TIMEOUT and fit in
    # SENSORLIB_MAX_HEADER_BYTES; idle keep-alive connections close after KEEP_ALIVE_TIMEOUT;
    # a body must arrive within SENSORLIB_BODY_TIMEOUT (common.server_options).
    options = server_options(settings or Settings.from_env())
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5,
                            server_header=False, **options,
                            # JSON logs: uvicorn's loggers go through the root handler.
                            **({"log_config": None} if json_logs else {}))
    server = uvicorn.Server(config)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run()
    finally:
        shutdown_tracing()
