"""The producer service: the simulated fleet plus ``/api/sensors``, ``/api/events``, ``/health``.

``POST /api/events`` accepts the reference sample's curl payload (``application/json``;
415 otherwise), validates it (422 naming the field and the reason; the event time must
lie in the accepted window around the wall clock), publishes it keyed by sensorId with
acks=all in the reference .NET producer's PascalCase and answers like the reference,
``{"status": "published", "sensorEvent": {...}}``, plus where Kafka stored it, once Kafka
acknowledged it (awaited on the event loop: :class:`sensorlib.ingest.bridge.Ingest`).
``POST /api/events/batch`` takes up to 10,000 readings (a JSON array or NDJSON) and
answers per-item results. Too many readings in flight gives 429, Kafka down or stalled
503, both with ``Retry-After``; an ``Idempotency-Key`` header (or ``eventId`` field)
makes a retried POST store its reading once. Requests for other Host names or from other
browser origins are refused (see :func:`sensorlib.services.common.guard`). ``/metrics``
counts accepted and refused readings (:class:`sensorlib.observe.metrics.ProducerMetrics`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract

from sensorlib import __version__
from sensorlib.config import IngestSettings, Settings
from sensorlib.errors import BodyTooLarge, BodyTooSlow, Conflict, Refused
from sensorlib.ingest.body import NDJSON_TYPES, check_event_id, parse_posted, split_batch
from sensorlib.ingest.bridge import Ingest
from sensorlib.ingest.produce import ReadingProducer, SimulatorLoop
from sensorlib.ingest.simulate import REFERENCE_FLEET
from sensorlib.kafka.admin import ensure_topics, kafka_reachable
from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.model.events import Reading
from sensorlib.model.rejections import InvalidReading
from sensorlib.observe.metrics import ProducerMetrics
from sensorlib.observe.tracing import TRACEPARENT, headers_for, tracing_enabled
from sensorlib.services.common import (
    guard,
    health_body,
    health_response,
    json_content_type,
    metrics_response,
    problem,
    read_limited_body,
    trace_app,
)

log = logging.getLogger("sensorlib.producer")

#: The request header that makes a retried POST store its reading once.
IDEMPOTENCY_KEY = "Idempotency-Key"


class ProducerService:
    """Owns the Kafka producer (created in the background, re-created after failures)
    and the simulator thread."""

    def __init__(self, settings: Settings, *, simulate: bool = True,
                 interval: float | None = None, limits: IngestSettings | None = None) -> None:
        self.settings = settings
        self.limits = limits or settings.ingest
        self.ingest: Ingest | None = None
        self.simulate = simulate
        self.interval = interval
        self.stop = threading.Event()
        self.producer: ReadingProducer | None = None
        self.simulated = 0
        self.posted = 0
        self.last_error: str | None = None
        self.metrics = ProducerMetrics()
        self.simulator: SimulatorLoop | None = None
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
                    producer = ReadingProducer(self.settings, max_block_ms=5000, linger_ms=0)
                    producer.client.partitions_for(self.settings.topic_readings)  # metadata
                    self.ingest = Ingest(producer.client, self.settings.topic_readings,
                                         producer.partition_ids, self.limits)
                    self.producer = producer
                    self.last_error = None
                    log.info("connected to Kafka at %s", self.settings.bootstrap_servers)
                    return
                self.last_error = f"Kafka is not reachable at {self.settings.bootstrap_servers}"
            except Exception as exc:  # noqa: BLE001 - keep trying; /health says why
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.stop.wait(1.0)

    def _work(self) -> None:
        self._connect()
        if self.simulate and not self.stop.is_set() and self.producer is not None:
            # Survives any Kafka error (backs off, retries); /health shows its state.
            self.simulator = SimulatorLoop(self.settings, self.producer, interval=self.interval,
                                           on_batch=self._count)
            self.simulator.run(self.stop)

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
        """The ``/health`` answer: unhealthy until the Kafka producer is connected, while
        sends are stalled (readings in flight, no acknowledgement for the ack timeout) and
        while the simulator (when on) is not publishing."""
        problems = [] if self.producer is not None else [
            f"not connected to Kafka yet: {self.last_error or 'connecting'}"]
        ingest = self.ingest
        stalled = ingest.stall_reason() if ingest is not None else None
        if stalled:
            problems.append(stalled)
        simulator = self.simulator
        worker_alive = any(t.is_alive() for t in self._threads)
        if simulator is not None:
            problems += simulator.problems(self.limits.ack_timeout)
        elif self.simulate and self._threads and not worker_alive and not self.stop.is_set():
            problems.append("the simulator is not running: its thread ended before it started")
        body = health_body(self.settings, problems, topic=self.settings.topic_readings,
                           simulating=self.simulate, simulated=self.simulated,
                           posted=self.posted, inFlight=ingest.in_flight if ingest else 0,
                           maxInFlight=self.limits.max_in_flight)
        body["simulator"] = (simulator.details() if simulator is not None else
                             {"state": "off" if not self.simulate else "starting"})
        last = simulator.last_error if simulator is not None and simulator.last_error else None
        body["lastError"] = None if body["ok"] else (self.last_error or last)
        return body


def create_app(settings: Settings | None = None, *, simulate: bool = True,
               interval: float | None = None, limits: IngestSettings | None = None) -> FastAPI:
    """The producer service's FastAPI app (the simulator starts with the app).

    ``limits`` are the ingestion limits (default: ``settings.ingest``).
    """
    settings = settings or Settings.from_env()
    body_timeout = settings.body_timeout
    service = ProducerService(settings, simulate=simulate, interval=interval, limits=limits)
    limits = service.limits
    accept = EventTimeWindow(settings.max_past, settings.max_future)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        service.close()

    app = FastAPI(title="sensorlib producer", version=__version__, lifespan=lifespan)
    app.state.service = service
    metrics = service.metrics

    def too_slow() -> JSONResponse:
        """408: the body did not arrive within SENSORLIB_BODY_TIMEOUT."""
        metrics.refuse("body_timeout")
        return problem(408, [{"field": "body", "reason": f"not received within "
                              f"{body_timeout:g}s"}], "request timeout")
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
    async def publish(request: Request) -> Response:
        """Validate one reading and publish it to the readings topic (201 after Kafka's ack).

        ``Idempotency-Key`` (or an ``eventId`` field) makes a retry store it once; 429/503
        with ``Retry-After`` when too many readings are in flight or Kafka is unavailable.
        """
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
            return too_slow()
        try:
            key = request.headers.get(IDEMPOTENCY_KEY)
            if key is not None:
                key = check_event_id(key.strip(), IDEMPOTENCY_KEY)
            reading, event_id, given = parse_posted(body, now=datetime.now(UTC), accept=accept,
                                                    event_id=key)
        except InvalidReading as exc:
            metrics.refuse("invalid", [e.field for e in exc.errors][:1])
            return problem(422, [{"field": e.field, "reason": e.reason} for e in exc.errors],
                           "invalid reading")
        ingest = service.ingest
        if ingest is None:
            metrics.refuse("kafka_unavailable")
            return problem(503, [], service.last_error or "Kafka is not connected yet",
                           retry_after=limits.retry_after)
        started = time.perf_counter()
        span = None
        if tracing_enabled():  # a PRODUCER span under the request's server span
            span = service.producer.publish_span(reading, otel_context.get_current())
            headers = headers_for(trace.set_span_in_context(span)) or None
        elif TRACEPARENT in request.headers:  # forwarded unchanged (nothing is recorded)
            headers = headers_for(extract(request.headers)) or None
        else:
            headers = None
        outcome = None
        try:
            outcome = await ingest.publish(reading, event_id=event_id, timestamp_given=given,
                                           headers=headers)
        except Refused as exc:
            metrics.refuse("too_many_in_flight" if exc.status == 429 else "kafka_unavailable")
            return problem(exc.status, [], exc.message, retry_after=exc.retry_after)
        except Conflict as exc:
            metrics.refuse("invalid", ["eventId"])
            return problem(422, [{"field": IDEMPOTENCY_KEY if key else "eventId",
                                  "reason": str(exc)}], "invalid reading")
        finally:
            if span is not None:
                if outcome is not None and outcome.status == 201:
                    span.set_attribute("messaging.destination.partition.id",
                                       str(outcome.partition))
                    span.set_attribute("messaging.kafka.offset", outcome.offset)
                span.end()
        if outcome.status != 201:
            metrics.refuse("kafka_unavailable")
            return problem(503, [], outcome.error or "not acknowledged",
                           retry_after=limits.retry_after)
        elapsed = time.perf_counter() - started
        if not outcome.replayed:
            metrics.publish_seconds.observe(elapsed)
            metrics.accepted.labels("api").inc()
            service.posted += 1
        content = {"status": "published", "sensorEvent": outcome.reading.to_dict(),
                   "topic": ingest.topic, "partition": outcome.partition,
                   "offset": outcome.offset, "ackMs": round(elapsed * 1000, 2)}
        if event_id is not None:
            content["eventId"] = event_id
        answer = {**_REPLAYED} if outcome.replayed else {}
        # The trace id in the answer: this request's span, or the caller's traceparent
        # forwarded unchanged when tracing is off (W3C trace context response header).
        traced = headers_for() if tracing_enabled() else (headers or [])
        answer.update((k, v.decode("ascii")) for k, v in traced if k == TRACEPARENT)
        return Response(_encode(content), status_code=201, media_type="application/json",
                        headers=answer or None)

    @app.post("/api/events/batch")
    async def publish_batch(request: Request) -> Response:
        """Validate up to ``SENSORLIB_MAX_BATCH`` readings (a JSON array, or NDJSON with
        ``Content-Type: application/x-ndjson``) and publish the valid ones; per-item results.

        201 when every reading was published, 207 when some were not (invalid, or not
        acknowledged), 422 when none was valid, 503 when none was acknowledged; the
        ``results`` list has one entry per reading, in order.
        """
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in NDJSON_TYPES and not json_content_type(request):
            metrics.refuse("unsupported_media_type")
            return problem(415, [{"field": "Content-Type", "reason": "must be application/json "
                                  "(an array) or application/x-ndjson, not "
                                  f"{request.headers.get('content-type', 'none')[:60]}"}],
                           "unsupported media type")
        try:
            body = await read_limited_body(request, limit=limits.max_batch_bytes,
                                           timeout=body_timeout)
        except BodyTooLarge:
            metrics.refuse("body_too_large")
            return problem(413, [{"field": "body", "reason": f"larger than "
                                  f"{limits.max_batch_bytes} bytes (SENSORLIB_MAX_BATCH_BYTES)"}],
                           "batch too large")
        except BodyTooSlow:
            return too_slow()
        try:
            raw_items = split_batch(body, media)
        except InvalidReading as exc:
            metrics.refuse("invalid", ["body"])
            return problem(422, [{"field": e.field, "reason": e.reason} for e in exc.errors],
                           "invalid batch")
        if not raw_items:
            metrics.refuse("invalid", ["body"])
            return problem(422, [{"field": "body", "reason": "holds no reading"}],
                           "invalid batch")
        if len(raw_items) > limits.max_batch:
            metrics.refuse("body_too_large")
            return problem(413, [{"field": "body", "reason": f"{len(raw_items)} readings: at most "
                                  f"{limits.max_batch} per batch (SENSORLIB_MAX_BATCH)"}],
                           "batch too large")
        results, valid, where = await _validate_batch(raw_items)
        if not valid:
            metrics.refuse("invalid", ["body"])
            return _batch_answer(422, results, 0)
        ingest = service.ingest
        if ingest is None:
            metrics.refuse("kafka_unavailable")
            return problem(503, [], service.last_error or "Kafka is not connected yet",
                           retry_after=limits.retry_after)
        if len(valid) > limits.max_in_flight:
            metrics.refuse("body_too_large")
            return problem(413, [{"field": "body", "reason": f"{len(valid)} readings: at most "
                                  f"{limits.max_in_flight} in flight on this server "
                                  "(SENSORLIB_MAX_IN_FLIGHT)"}], "batch too large")
        headers = (headers_for(extract(request.headers)) or None
                   if TRACEPARENT in request.headers and not tracing_enabled() else None)
        started = time.perf_counter()
        try:
            outcomes = await ingest.publish_batch(valid, headers=headers)
        except Refused as exc:
            metrics.refuse("too_many_in_flight" if exc.status == 429 else "kafka_unavailable")
            return problem(exc.status, [], exc.message, retry_after=exc.retry_after)
        published = 0
        for i, outcome in zip(where, outcomes, strict=True):
            item: dict[str, Any] = {"index": i, "status": outcome.status}
            if outcome.status == 201:
                published += 1
                item["partition"] = outcome.partition
                item["offset"] = outcome.offset
            else:
                item["error"] = ("Kafka unavailable" if outcome.status == 503
                                 else "eventId conflict")
                item["detail"] = [{"field": "eventId" if outcome.status == 409 else "body",
                                   "reason": outcome.error or ""}]
            if outcome.event_id is not None:
                item["eventId"] = outcome.event_id
            if outcome.replayed:
                item["replayed"] = True
            results[i] = item
        fresh = sum(1 for o in outcomes if o.status == 201 and not o.replayed)
        if fresh:
            metrics.publish_seconds.observe(time.perf_counter() - started)
            metrics.accepted.labels("api").inc(fresh)
            service.posted += fresh
        if published == len(results):
            status = 201
        elif published:
            status = 207
        else:
            status = 503 if any(r["status"] == 503 for r in results) else 422
        return _batch_answer(status, results, published,
                             retry_after=limits.retry_after if status == 503 else None)

    async def _validate_batch(raw_items: list[bytes]) -> tuple[
            list[dict[str, Any]], list[tuple[Reading, str | None, bool]], list[int]]:
        now = datetime.now(UTC)
        results: list[dict[str, Any]] = [{}] * len(raw_items)
        valid: list[tuple[Reading, str | None, bool]] = []
        where: list[int] = []
        for i, raw in enumerate(raw_items):
            try:
                valid.append(parse_posted(raw, now=now, accept=accept))
                where.append(i)
            except InvalidReading as exc:
                results[i] = {"index": i, "status": 422, "error": "invalid reading",
                              "detail": [{"field": "item" if e.field == "body" else e.field,
                                          "reason": e.reason} for e in exc.errors]}
            if i % 2000 == 1999:
                await asyncio.sleep(0)  # let other requests run between slices
        return results, valid, where

    @app.get("/health")
    def health() -> JSONResponse:
        return health_response(service.health())

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus text exposition of the producer's metrics."""
        return metrics_response(metrics.registry)

    return app


_REPLAYED = {"Idempotent-Replayed": "true"}


def _encode(content: Any) -> bytes:
    return msgspec.json.encode(content)


def _batch_answer(status: int, results: list[dict[str, Any]], published: int, *,
                  retry_after: int | None = None) -> Response:
    refused = len(results) - published
    summary = ("published" if status == 201 else "partial" if status == 207
               else "rejected" if status == 422 else "unavailable")
    body = {"status": summary, "received": len(results), "published": published,
            "rejected": refused, "results": results}
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return Response(_encode(body), status_code=status, media_type="application/json",
                    headers=headers)
