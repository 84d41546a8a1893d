"""The producer service: the simulated fleet plus ``/api/sensors``, ``/api/events``, ``/health``.

``POST /api/events`` accepts the reference sample's curl payload (``application/json``;
415 otherwise), validates it (422 naming the field and the reason; the event time must
lie in the accepted window around the wall clock), publishes it keyed by sensorId with
acks=all in the reference .NET producer's PascalCase and answers like the reference,
``{"status": "published", "sensorEvent": {...}}``, plus where Kafka stored it. Kafka
being down gives 503 with a clear message. Requests for other Host names or from other
browser origins are refused (see :func:`sensorlib.services.common.guard`). ``/metrics``
counts accepted and refused readings (:class:`sensorlib.telemetry.ProducerMetrics`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry import context as otel_context
from opentelemetry.propagate import extract

from sensorlib.config import Settings
from sensorlib.errors import KafkaUnavailable, SensorlibError
from sensorlib.events import EventTimeWindow, InvalidReading, Reading, parse_reading
from sensorlib.kafka_io import ensure_topics, kafka_reachable
from sensorlib.produce import ReadingProducer, run_simulation
from sensorlib.services.common import (
    BodyTooLarge,
    BodyTooSlow,
    guard,
    health_body,
    health_response,
    json_content_type,
    metrics_response,
    problem,
    read_limited_body,
    trace_app,
)
from sensorlib.simulate import REFERENCE_FLEET
from sensorlib.telemetry import TRACEPARENT, ProducerMetrics, tracing_enabled

log = logging.getLogger("sensorlib.producer")


class ProducerService:
    """Owns the Kafka producer (created in the background, re-created after failures)
    and the simulator thread."""

    def __init__(self, settings: Settings, *, simulate: bool = True,
                 interval: float | None = None) -> None:
        self.settings = settings
        self.simulate = simulate
        self.interval = interval
        self.stop = threading.Event()
        self.producer: ReadingProducer | None = None
        self.simulated = 0
        self.posted = 0
        self.last_error: str | None = None
        self.metrics = ProducerMetrics()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        worker = threading.Thread(target=self._work, name="producer-worker", daemon=True)
        worker.start()
        self._threads.append(worker)

    def _connect(self) -> None:
        while not self.stop.is_set() and self.producer is None:
            try:
                if kafka_reachable(self.settings):
                    ensure_topics(self.settings)
                    self.producer = ReadingProducer(self.settings, max_block_ms=5000, linger_ms=0)
                    self.last_error = None
                    log.info("connected to Kafka at %s", self.settings.bootstrap_servers)
                    return
                self.last_error = f"Kafka is not reachable at {self.settings.bootstrap_servers}"
            except Exception as exc:  # noqa: BLE001 - keep trying; /health says why
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.stop.wait(1.0)

    def _work(self) -> None:
        self._connect()
        while self.simulate and not self.stop.is_set() and self.producer is not None:
            try:
                run_simulation(self.settings, interval=self.interval, stop=self.stop,
                               producer=self.producer, on_batch=self._count)
            except SensorlibError as exc:
                self.last_error = str(exc)
                log.warning("simulator paused: %s", exc)
                self.stop.wait(1.0)

    def _count(self, batch: list[Reading]) -> None:
        # Counted per acknowledged tick: the simulation itself runs until stopped.
        self.simulated += len(batch)
        self.metrics.accepted.labels("simulator").inc(len(batch))

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.producer is not None:
            try:
                self.producer.close(timeout=5)
            except Exception as exc:  # noqa: BLE001 - shutting down
                log.warning("producer close: %s", exc)

    def health(self) -> dict[str, Any]:
        """The ``/health`` answer: unhealthy until the Kafka producer is connected."""
        problems = [] if self.producer is not None else [
            f"not connected to Kafka yet: {self.last_error or 'connecting'}"]
        body = health_body(self.settings, problems, topic=self.settings.topic_readings,
                           simulating=self.simulate, simulated=self.simulated,
                           posted=self.posted)
        body["lastError"] = None if body["ok"] else self.last_error
        return body


def create_app(settings: Settings | None = None, *, simulate: bool = True,
               interval: float | None = None) -> FastAPI:
    """The producer service's FastAPI app (the simulator starts with the app)."""
    settings = settings or Settings.from_env()
    body_timeout = settings.body_timeout
    service = ProducerService(settings, simulate=simulate, interval=interval)
    accept = EventTimeWindow(settings.max_past, settings.max_future)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        service.close()

    app = FastAPI(title="sensorlib producer", version="0.2.0", lifespan=lifespan)
    app.state.service = service
    metrics = service.metrics
    guard(app, settings)
    trace_app(app, "producer", settings)

    @app.get("/api/sensors")
    def sensors() -> list[dict[str, Any]]:
        """The simulated fleet (the reference sample's five sensors, in its shape)."""
        return [
            {"id": s.sensor_id, "location": s.location,
             "baseTemperature": s.base_temperature, "baseHumidity": s.base_humidity}
            for s in REFERENCE_FLEET
        ]

    @app.post("/api/events", status_code=201)
    async def publish(request: Request) -> JSONResponse:
        """Validate one reading and publish it to the readings topic."""
        if not json_content_type(request):
            metrics.refuse("unsupported_media_type")
            shown = request.headers.get("content-type", "none")[:60]
            return problem(415, [{"field": "Content-Type", "reason": "must be application/json, "
                                  f"not {shown}"}], "unsupported media type")
        try:
            body = await read_limited_body(request, timeout=body_timeout)
        except BodyTooLarge:
            metrics.refuse("body_too_large")
            return problem(422, [{"field": "body", "reason": "larger than 64 KiB (65536 bytes)"}],
                           "invalid reading")
        except BodyTooSlow:
            metrics.refuse("body_timeout")
            return problem(408, [{"field": "body", "reason": f"not received within "
                                  f"{body_timeout:g}s"}], "request timeout")
        try:
            reading = parse_reading(body, now=datetime.now(UTC), accept=accept)
        except InvalidReading as exc:
            metrics.refuse("invalid", [e.field for e in exc.errors][:1])
            return problem(422, [{"field": e.field, "reason": e.reason} for e in exc.errors],
                           "invalid reading")
        producer = service.producer
        if producer is None:
            metrics.refuse("kafka_unavailable")
            return problem(503, [], service.last_error or "Kafka is not connected yet")
        # Tracing on: the request's server span is current. Off: an incoming traceparent
        # is forwarded unchanged (nothing is recorded).
        if tracing_enabled():
            ctx = otel_context.get_current()
        else:
            ctx = extract(request.headers) if TRACEPARENT in request.headers else None
        started = time.perf_counter()
        try:
            where = await _in_thread(lambda: producer.publish(reading, context=ctx))
        except (KafkaUnavailable, SensorlibError) as exc:
            metrics.refuse("kafka_unavailable")
            return problem(503, [], str(exc))
        metrics.publish_seconds.observe(time.perf_counter() - started)
        metrics.accepted.labels("api").inc()
        service.posted += 1
        return JSONResponse(
            status_code=201,
            content={
                "status": "published",
                "sensorEvent": reading.to_dict(),
                "topic": where.topic,
                "partition": where.partition,
                "offset": where.offset,
                "ackMs": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    @app.get("/health")
    def health() -> JSONResponse:
        return health_response(service.health())

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus text exposition of the producer's metrics."""
        return metrics_response(metrics.registry)

    return app


async def _in_thread(fn: Any, *args: Any) -> Any:
    import anyio

    return await anyio.to_thread.run_sync(fn, *args)
