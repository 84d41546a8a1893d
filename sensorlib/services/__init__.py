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

from sensorlib.services.common import SERVICE_LOG_FORMAT

__all__ = ["serve"]


def serve(app: Any, host: str, port: int, *, log_level: str = "info") -> None:
    """Run ``app`` with uvicorn on host:port until SIGINT/SIGTERM (graceful shutdown)."""
    logging.basicConfig(level=logging.INFO, format=SERVICE_LOG_FORMAT)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per-connection chatter
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    server.run()
