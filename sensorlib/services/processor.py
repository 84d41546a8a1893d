"""The processor service: the processor loop plus ``/api/aggregates``, ``/api/alerts``, ``/health``.

The loop runs in one background thread; the API reads copies of its committed state
under a lock, so a request never sees a half-applied batch (the reference has races here).
``/api/aggregates`` answers the reference's shape, an object keyed by sensorId.
``/metrics`` is the loop's Prometheus metrics (:class:`sensorlib.observe.metrics.ProcessorMetrics`).
``/health`` is 503 with ``problems`` naming each reason whenever the loop is not doing
its job (see :meth:`sensorlib.processor.loop.Processor.problems`).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response

from sensorlib import __version__
from sensorlib.config import Settings
from sensorlib.kafka.admin import ensure_topics, wait_for_kafka
from sensorlib.processor.loop import Processor
from sensorlib.services.common import (
    guard,
    health_body,
    health_response,
    metrics_response,
    trace_app,
)


def create_app(settings: Settings | None = None, *, instance: str = "1") -> FastAPI:
    """The processor service's FastAPI app (the processor loop starts with the app)."""
    settings = settings or Settings.from_env()
    processor = Processor(settings, instance=instance)
    stop = threading.Event()

    def work() -> None:
        # Topics first (idempotent); the loop itself retries while Kafka is away.
        while not stop.is_set():
            try:
                wait_for_kafka(settings, timeout=5)
                ensure_topics(settings)
                break
            except Exception as exc:  # noqa: BLE001 - /health reports it
                processor.stats.last_error = str(exc)
                stop.wait(1.0)
        processor.run(stop)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        thread = threading.Thread(target=work, name="processor-loop", daemon=True)
        thread.start()
        yield
        stop.set()
        thread.join(timeout=15)

    app = FastAPI(title="sensorlib processor", version=__version__, lifespan=lifespan)
    app.state.processor = processor
    guard(app, settings)
    trace_app(app, "processor", settings)

    @app.get("/api/aggregates")
    def aggregates() -> dict[str, dict[str, Any]]:
        """Per-sensor aggregates over the last window of event time, keyed by sensorId."""
        return {a["sensorId"]: a for a in processor.aggregates()}

    @app.get("/api/alerts")
    def alerts(
        limit: int = Query(100, ge=1, le=1000),
        sensorId: str | None = Query(None, max_length=64),
    ) -> list[dict[str, Any]]:
        """Recent alerts, newest first."""
        return processor.alerts(limit=limit, sensor_id=sensorId)

    @app.get("/health")
    def health() -> JSONResponse:
        return health_response(health_body(settings, processor.problems(),
                                           **processor.details()))

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus text exposition of the processor's metrics."""
        return metrics_response(processor.metrics.registry)

    return app
