"""The processor service: the processor loop plus ``/api/aggregates``, ``/api/alerts``, ``/health``.

The loop runs in one background thread; the API reads copies of its committed state
under a lock, so a request never sees a half-applied batch (the reference has races here).
``/api/aggregates`` answers the reference's shape, an object keyed by sensorId.
``/metrics`` is the loop's Prometheus metrics (:class:`sensorlib.observe.metrics.ProcessorMetrics`).
``/health`` is 503 with ``problems`` naming each reason whenever the loop is not doing
its job (see :meth:`sensorlib.processor.loop.Processor.problems`).

``GET /api/rules`` shows the rule settings table in force (layers, version, the defaults and
each known sensor's effective settings); ``PUT /api/rules/{layer}`` (a JSON object of
settings) and ``DELETE /api/rules/{layer}`` write the ``sensor-rules`` topic, after the
table's validator (422 naming the field), and answer once the loop has applied the record
from the topic (200; 202 when it did not within :data:`APPLY_WAIT`): one path for every
writer, the topic.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from kafka.errors import KafkaError
from starlette.concurrency import run_in_threadpool

from sensorlib import __version__
from sensorlib.config import Settings
from sensorlib.errors import BodyTooLarge, BodyTooSlow, InvalidSetting, KafkaUnavailable
from sensorlib.kafka.admin import ensure_topics, wait_for_kafka
from sensorlib.kafka.ruletable import write_layer
from sensorlib.processor.loop import Processor
from sensorlib.rules.table import decode_value
from sensorlib.services.common import (
    guard,
    health_body,
    health_response,
    metrics_response,
    problem,
    read_limited_body,
    trace_app,
)

#: How long ``PUT``/``DELETE /api/rules/{layer}`` waits for the loop to apply its record.
APPLY_WAIT = 10.0


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

    @app.get("/api/rules")
    def rules() -> dict[str, Any]:
        """The rule settings in force: ``version`` (stamped on alerts as ``rulesVersion``),
        ``offset`` (the newest ``sensor-rules`` record applied), ``layers``, ``defaults``
        and ``sensors`` (each known sensor's effective settings)."""
        return processor.rules_view()

    async def write(layer: str, values: Mapping[str, Any] | None) -> JSONResponse:
        try:
            offset = await run_in_threadpool(write_layer, settings, layer, values)
        except InvalidSetting as exc:
            return problem(422, [{"field": exc.field, "reason": exc.reason}],
                           "invalid rule settings")
        except (KafkaUnavailable, KafkaError, OSError) as exc:
            return problem(503, [{"field": "kafka", "reason": str(exc)}],
                           "could not write the rule settings", retry_after=5)
        deadline = time.monotonic() + APPLY_WAIT
        while processor.rules_table.offset < offset and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        applied = processor.rules_table.offset >= offset
        view = processor.rules_table.to_json()
        return JSONResponse(status_code=200 if applied else 202, content={
            "layer": layer, "settings": view["layers"].get(layer), "offset": offset,
            "applied": applied, "version": view["version"] if applied else None})

    @app.put("/api/rules/{layer:path}")
    async def put_rules(layer: str, request: Request) -> JSONResponse:
        """Set one layer (``defaults``, ``location:<name>``, ``glob:<pattern>``,
        ``sensor:<id>``) to a JSON object of settings; it replaces the layer."""
        try:
            body = await read_limited_body(request)
        except (BodyTooLarge, BodyTooSlow):
            return problem(413, [{"field": "body", "reason": "too large or too slow"}],
                           "invalid request body")
        try:  # the topic's own decoder: deep, huge or undecodable bodies are refused alike
            values = decode_value(body)
        except InvalidSetting as exc:
            return problem(422, [{"field": "body", "reason": exc.reason}],
                           "invalid rule settings")
        if not isinstance(values, dict):
            return problem(422, [{"field": "body", "reason": "must be a JSON object of "
                                  "setting -> value"}], "invalid rule settings")
        return await write(layer, values)

    @app.delete("/api/rules/{layer:path}")
    async def delete_rules(layer: str) -> JSONResponse:
        """Delete one layer (a tombstone on ``sensor-rules``)."""
        return await write(layer, None)

    @app.get("/health")
    def health() -> JSONResponse:
        return health_response(health_body(settings, processor.problems(),
                                           **processor.details()))

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus text exposition of the processor's metrics."""
        return metrics_response(processor.metrics.registry)

    return app
