"""Producing readings: a keyed, durable producer helper and the paced simulator loop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from kafka.errors import KafkaError
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

from sensorlib.config import Settings
from sensorlib.errors import KafkaUnavailable, PublishError, SensorlibError
from sensorlib.kafka.clients import make_producer
from sensorlib.model.events import Reading
from sensorlib.observe.tracing import headers_for, tracer, tracing_enabled

log = logging.getLogger("sensorlib.simulator")


@dataclass(frozen=True)
class Published:
    """Where Kafka stored a record (what POST /api/events answers)."""

    topic: str
    partition: int
    offset: int


class ReadingProducer:
    """Publish readings keyed by sensorId, acks=all and idempotent; errors are surfaced.

    Asynchronous sends record their failures; :meth:`flush` and :meth:`close` raise
    :class:`PublishError` if any send failed since the last check, so a caller can
    never lose a reading silently. :meth:`publish` waits for the acknowledgement.

    >>> with ReadingProducer(Settings.from_env()) as producer:   # doctest: +SKIP
    ...     producer.publish(reading)
    Published(topic='sensor-readings', partition=1, offset=42)
    """

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.settings = settings
        self.topic = settings.topic_readings
        self._producer = make_producer(settings, client_id="sensorlib-readings", **overrides)
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self.sent = 0
        #: Fault labels queued by :meth:`send_labels`.
        self.labels_sent = 0
        #: Readings of :meth:`send` not yet settled, and the last acknowledgement (or when
        #: the first of them was sent): :meth:`stalled_for` (``/health``).
        self._unsettled = 0
        self._progress = time.monotonic()

    @property
    def client(self) -> Any:
        """The underlying :class:`kafka.KafkaProducer` (for :class:`sensorlib.ingest.bridge.Ingest`)."""
        return self._producer

    def partition_ids(self) -> set[int] | None:
        """The readings topic's partitions from the client's cached metadata, or None
        while unknown. Never blocks (``KafkaProducer.partitions_for`` may, up to
        ``max_block_ms``), so the event loop may call it."""
        return self._producer._metadata.partitions_for_topic(self.topic)

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)
            self._unsettled -= 1

    def _acked(self, _meta: Any) -> None:
        with self._lock:
            self._unsettled -= 1
            self._progress = time.monotonic()

    @property
    def unacknowledged(self) -> int:
        """Readings queued by :meth:`send` that Kafka has neither acknowledged nor refused."""
        return self._unsettled

    def stalled_for(self, now: float | None = None) -> float:
        """Seconds readings of :meth:`send` have been waiting with no acknowledgement from
        Kafka (0 while none waits)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return max(0.0, now - self._progress) if self._unsettled > 0 else 0.0

    def send(self, reading: Reading) -> None:
        """Queue one reading (asynchronous); failures surface at the next flush.

        With tracing on (:func:`sensorlib.observe.tracing.setup_tracing`) each reading starts a
        trace whose context travels in the record's ``traceparent`` header.
        """
        if tracing_enabled():
            with self._span(reading, None):
                future = self._producer.send(self.topic, key=reading.sensor_id,
                                             value=reading.to_json(), headers=headers_for())
        else:
            future = self._producer.send(self.topic, key=reading.sensor_id,
                                         value=reading.to_json())
        with self._lock:
            if self._unsettled == 0:
                self._progress = time.monotonic()
            self._unsettled += 1
        future.add_callback(self._acked)
        future.add_errback(self._failed)
        self.sent += 1

    def _span(self, reading: Reading, ctx: Any) -> Any:
        return tracer().start_as_current_span(
            f"{self.topic} publish", context=ctx, kind=SpanKind.PRODUCER,
            attributes=self._span_attributes(reading))

    def _span_attributes(self, reading: Reading) -> dict[str, str]:
        return {"messaging.system": "kafka", "messaging.operation.type": "publish",
                "messaging.destination.name": self.topic,
                "messaging.kafka.message.key": reading.sensor_id}

    def publish_span(self, reading: Reading, context: otel_context.Context | None) -> Any:
        """A started (not current) PRODUCER span for publishing ``reading`` under
        ``context``; the caller ends it once Kafka acknowledged (the HTTP API's path)."""
        return tracer().start_span(f"{self.topic} publish", context=context,
                                   kind=SpanKind.PRODUCER,
                                   attributes=self._span_attributes(reading))

    def send_labels(self, labels: Iterable[Any]) -> int:
        """Queue fault labels (:class:`~sensorlib.ingest.simulate.FaultLabel`) on the
        ``sensor-faults`` topic, keyed by sensor id; failures surface at the next flush
        like the readings'. Returns how many were queued."""
        n = 0
        for label in labels:
            self._producer.send(self.settings.topic_faults, key=label.sensor_id,
                                value=label.to_json()).add_errback(self._failed)
            n += 1
        self.labels_sent += n
        return n

    def send_raw(self, key: str | None, value: bytes) -> None:
        """Queue raw bytes (used by tests and tools to inject foreign or broken records)."""
        self._producer.send(self.topic, key=key, value=value).add_errback(self._failed)

    def publish(self, reading: Reading, timeout: float = 10.0, *,
                context: otel_context.Context | None = None) -> Published:
        """Send one reading and wait for Kafka's acknowledgement.

        ``context`` is the trace the reading belongs to (default: the current one, e.g.
        the HTTP request's); its ``traceparent`` goes out in the record's headers. With
        tracing off an incoming context is forwarded as it is; with none, no header.
        """
        with self._span(reading, context) as span:
            headers = headers_for() or None
            try:
                meta = self._producer.send(
                    self.topic, key=reading.sensor_id, value=reading.to_json(), headers=headers
                ).get(timeout=timeout)
            except KafkaError as exc:
                raise KafkaUnavailable(self.settings.bootstrap_servers,
                                       type(exc).__name__) from exc
            if span.is_recording():
                span.set_attribute("messaging.destination.partition.id", str(meta.partition))
                span.set_attribute("messaging.kafka.offset", meta.offset)
        self.sent += 1
        return Published(meta.topic, meta.partition, meta.offset)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every queued reading; raise :class:`PublishError` if any failed."""
        self._producer.flush(timeout=timeout)
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise PublishError(f"{len(errors)} reading(s) were not acknowledged: {errors[0]!r}")

    def close(self, timeout: float = 10.0) -> None:
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_simulation(
    settings: Settings,
    *,
    interval: float | None = None,
    duration: float | None = None,
    count: int | None = None,
    seed: int | None = None,
    realtime: bool = True,
    stop: threading.Event | None = None,
    on_batch: Callable[[list[Reading]], None] | None = None,
    producer: ReadingProducer | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    simulator: Any = None,
    flush_timeout: float = 30.0,
    labels: bool = True,
) -> int:
    """Publish the simulated fleet until ``duration`` seconds, ``count`` readings or ``stop``.

    With ``realtime`` each tick of the fleet is stamped with the wall clock and paced
    every ``interval`` seconds (the reference: 2 s). Without it (a back-fill) readings go
    out as fast as Kafka takes them, with event times ``interval`` apart that **end at**
    ``end`` (default: now) — never in the future — so the history is queryable at once:
    the first one is at ``start`` when given, else as far back as ``count`` readings or
    ``duration`` seconds need. Returns how many readings were published.

    ``simulator`` (real time only) carries the fleet's state on from an earlier call
    (:class:`SimulatorLoop` after a failure); ``flush_timeout`` bounds each tick's wait
    for Kafka (kafka-python's ``KafkaTimeoutError`` past it).

    With ``labels`` (the default) the faults the simulator injects go to
    ``settings.topic_faults`` as they settle (:meth:`Simulator.settled_labels
    <sensorlib.ingest.simulate.Simulator.settled_labels>`: a spike or stuck spell once it is
    over), after the readings they label, and the rest when the run ends; the archiver
    keeps them as the ``faults`` table, which backtests score against. When that topic
    does not exist (topics made before it was, see ``sensorlib topics``) a warning says
    so and only readings are published.
    """
    from sensorlib.ingest.simulate import Simulator

    interval = settings.interval if interval is None else interval
    seed = settings.seed if seed is None else seed
    stop = stop or threading.Event()
    if not realtime:
        sim, duration = backfill_simulator(seed=seed, interval=interval, count=count,
                                           duration=duration, start=start, end=end)
    else:
        sim = simulator or Simulator(seed=seed, interval=interval)
    own = producer is None
    producer = producer or ReadingProducer(settings)
    labels = labels and _faults_topic_exists(settings)
    published = 0
    started = time.monotonic()
    try:
        if not realtime:
            for reading in _bounded(sim.stream(count=count, duration=duration), stop):
                producer.send(reading)
                published += 1
                if labels and published % 10_000 == 0:
                    producer.send_labels(sim.settled_labels())
            if labels:
                producer.send_labels(sim.settled_labels(final=True))
            producer.flush()
            return published
        next_tick = time.monotonic()
        while not stop.is_set():
            if duration is not None and time.monotonic() - started >= duration:
                break
            batch = sim.readings_at(datetime.now(UTC))
            if count is not None:
                batch = batch[: max(0, count - published)]
            for reading in batch:
                producer.send(reading)
            if labels:
                producer.send_labels(sim.settled_labels())
            published += len(batch)
            producer.flush(timeout=flush_timeout)
            if on_batch:
                on_batch(batch)
            if count is not None and published >= count:
                break
            next_tick += interval
            stop.wait(max(0.0, next_tick - time.monotonic()))
        if labels:  # stopped: the spells going on end at their last reading so far
            # Queued only: closing the producer delivers them (no flush here: a stop must
            # not wait on a Kafka that is down).
            producer.send_labels(sim.settled_labels(final=True))
        return published
    finally:
        if own:
            producer.close()


class SimulatorLoop:
    """The producer service's simulator: :func:`run_simulation` in real time until
    ``stop``, surviving any error (Kafka down or frozen, a flush timing out, a refused
    reading). A failure is logged once per outage, the loop backs off (1 s doubling to
    :attr:`MAX_BACKOFF`) and carries on with the same fleet; ``state`` and :meth:`problems`
    feed ``/health``. The readings of a failed tick stay queued in the producer: Kafka
    stores them once it answers again (or the next flush reports why not).
    """

    MAX_BACKOFF = 30.0

    def __init__(self, settings: Settings, producer: ReadingProducer, *,
                 interval: float | None = None,
                 on_batch: Callable[[list[Reading]], None] | None = None,
                 flush_timeout: float = 30.0) -> None:
        from sensorlib.ingest.simulate import Simulator

        self.settings = settings
        self.producer = producer
        self.interval = settings.interval if interval is None else interval
        self.on_batch = on_batch
        self.flush_timeout = flush_timeout
        self.simulator = Simulator(seed=settings.seed, interval=self.interval)
        #: "starting", "running", "retrying" (after a failure), "stopped" or "died".
        self.state = "starting"
        self.failures = 0  # failed ticks in all
        self.last_error: str | None = None
        self.last_tick: datetime | None = None  # wall time of the last acknowledged tick
        self.retry_at: float | None = None
        self._thread: threading.Thread | None = None

    def _tick(self, batch: list[Reading]) -> None:
        self.last_tick = datetime.now(UTC)
        if self.state != "running":
            log.info("simulator running again (Kafka acknowledged its readings)")
            self.state, self.retry_at = "running", None
        if self.on_batch:
            self.on_batch(batch)

    def run(self, stop: threading.Event) -> None:
        """Simulate until ``stop``; never raises for an :class:`Exception`."""
        self._thread = threading.current_thread()
        backoff = 1.0
        try:
            while not stop.is_set():
                self.state = "running" if self.state == "starting" else self.state
                try:
                    run_simulation(self.settings, interval=self.interval, stop=stop,
                                   producer=self.producer, on_batch=self._tick,
                                   simulator=self.simulator, flush_timeout=self.flush_timeout)
                    continue  # returns only once stopped
                except Exception as exc:  # noqa: BLE001 - any failure: back off, retry
                    error = f"{type(exc).__name__}: {exc}"
                if self.state != "retrying":  # once per outage (and per new kind of error)
                    log.warning("simulator paused: %s; retrying with back-off", error)
                    backoff = 1.0
                elif error.split(":")[0] != (self.last_error or "").split(":")[0]:
                    log.warning("simulator still paused: %s", error)
                self.failures += 1
                self.last_error = error
                self.state, self.retry_at = "retrying", time.monotonic() + backoff
                stop.wait(backoff)
                backoff = min(backoff * 2, self.MAX_BACKOFF)
        except BaseException as exc:
            self.state, self.last_error = "died", f"{type(exc).__name__}: {exc}"
            log.error("the simulator stopped: %s", self.last_error)
            raise
        self.state = "stopped"

    def problems(self, ack_timeout: float, now: float | None = None) -> list[str]:
        """Why the simulator is not publishing, one sentence each (empty when it is)."""
        now = time.monotonic() if now is None else now
        out: list[str] = []
        thread = self._thread
        if self.state == "died" or (thread is not None and not thread.is_alive()
                                    and self.state != "stopped"):
            out.append(f"the simulator is not running: its thread ended ({self.last_error})")
        elif self.state == "retrying":
            wait = max(0.0, (self.retry_at or now) - now)
            out.append(f"the simulator is paused after {self.failures} failed tick(s), "
                       f"retrying in {wait:.0f}s: {self.last_error}")
        stalled = self.producer.stalled_for(now)
        if stalled > ack_timeout:
            out.append(f"the simulator's sends are stalled: {self.producer.unacknowledged} "
                       f"reading(s) in flight and no acknowledgement from Kafka for "
                       f"{stalled:.0f}s")
        return out

    def details(self) -> dict[str, Any]:
        """What ``/health`` shows of the simulator."""
        return {"state": self.state, "failures": self.failures, "lastError": self.last_error,
                "lastTick": self.last_tick.isoformat() if self.last_tick else None,
                "inFlight": self.producer.unacknowledged}


def _time(value: datetime | str | None, name: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return None if value is None else (value if value.tzinfo else value.replace(tzinfo=UTC))
    from sensorlib.replay.reader import ReplayError, to_utc

    try:
        parsed = to_utc(value)
    except ReplayError as exc:
        raise SensorlibError(f"--{name}: {exc}") from None
    return None if parsed is None else parsed.to_pydatetime()


def backfill_simulator(*, seed: int | None, interval: float, count: int | None = None,
                       duration: float | None = None, start: datetime | str | None = None,
                       end: datetime | str | None = None) -> tuple[Any, float | None]:
    """A :class:`~sensorlib.ingest.simulate.Simulator` whose stream ends at ``end`` (default now).

    Returns it with the ``duration`` to stream (simulated seconds; None = until
    ``count``). With ``start`` the readings run from ``start`` up to (not including)
    ``end``; otherwise the first tick is placed so the last of ``count`` readings (or
    of ``duration`` seconds) falls exactly on ``end``.
    """
    import math

    from sensorlib.ingest.simulate import Simulator

    t_end = _time(end, "end") or datetime.now(UTC)
    t_start = _time(start, "start")
    step = timedelta(seconds=interval)
    if t_start is not None:
        if t_start >= t_end:
            raise SensorlibError(f"the back-fill is empty: --end ({t_end.isoformat()}) is not "
                                 f"after --start ({t_start.isoformat()})")
        span = (t_end - t_start).total_seconds()
        return Simulator(seed=seed, interval=interval, start=t_start), (
            span if duration is None else min(duration, span))
    if count is None and duration is None:
        raise SensorlibError("a back-fill needs a count, a duration or a start")
    ticks = []
    if count is not None:
        ticks.append(Simulator(seed=seed, interval=interval, start=t_end).ticks_for(count))
    if duration is not None:
        ticks.append(max(1, math.ceil(duration / interval)))
    first = t_end - step * (min(ticks) - 1)
    return Simulator(seed=seed, interval=interval, start=first), duration


#: (bootstrap servers, topic) of fault topics found: looked up once per process, so the
#: simulator's restarts after an outage do not wait on the lookup again.
_FAULT_TOPICS: set[tuple[str, str]] = set()


def _faults_topic_exists(settings: Settings) -> bool:
    """Whether the fault labels' topic exists (a send to a missing topic would block for a
    minute, then fail): if not, warn and publish readings only."""
    from sensorlib.kafka.admin import topic_partitions

    key = (settings.bootstrap_servers, settings.topic_faults)
    if key in _FAULT_TOPICS:
        return True
    try:
        found = bool(topic_partitions(settings, [settings.topic_faults]))
    except (KafkaError, SensorlibError) as exc:
        log.warning("fault labels not published: could not look up topic %r (%s)",
                    settings.topic_faults, exc)
        return False
    if found:
        _FAULT_TOPICS.add(key)
    else:
        log.warning("fault labels not published: topic %r does not exist at %s (create it "
                    "with `sensorlib topics`)", settings.topic_faults, settings.bootstrap_servers)
    return found


def _bounded(readings: Iterable[Reading], stop: threading.Event) -> Iterable[Reading]:
    for i, reading in enumerate(readings):
        if i % 1000 == 0 and stop.is_set():
            return
        yield reading
