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

from sensorlib.services.common import KEEP_ALIVE_TIMEOUT, SERVICE_LOG_FORMAT

__all__ = ["serve"]


def serve(app: Any, host: str, port: int, *, log_level: str = "info") -> None:
    """Run ``app`` with uvicorn on host:port until SIGINT/SIGTERM (graceful shutdown)."""
    logging.basicConfig(level=logging.INFO, format=SERVICE_LOG_FORMAT)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per-connection chatter
    # Idle keep-alive connections close after KEEP_ALIVE_TIMEOUT; a body must arrive within
    # common.BODY_TIMEOUT; past limit_concurrency connections, new requests get 503.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5,
                            timeout_keep_alive=KEEP_ALIVE_TIMEOUT, limit_concurrency=1000,
                            server_header=False)
    server = uvicorn.Server(config)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    server.run()
