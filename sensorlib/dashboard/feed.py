"""The dashboard's Kafka feed: one background consumer per topic per server process.

Every browser session of a ``panel serve`` process shares one :class:`Feed` (see
:func:`shared_feed`), which writes into one :class:`~sensorlib.dashboard.state.LiveState`.
On start each topic is back-filled from the last minutes of Kafka by timestamp (an
assign-based pass without a group, so it commits nothing), then a follower takes over
exactly where the back-fill stopped (no gap, no duplicate) and commits its progress under
the dashboard's consumer group. If Kafka goes away the threads keep retrying and the
state says so; the pages show a banner. Back-filled readings carry the broker's record
timestamp as their arrival time, so a sensor that fell silent before a restart shows as
STALE at once rather than after ``stale_after``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata
from opentelemetry.trace import SpanKind

from sensorlib.config import Settings
from sensorlib.dashboard.state import LiveState, default_stale_after
from sensorlib.errors import KafkaUnavailable
from sensorlib.kafka.admin import kafka_reachable
from sensorlib.kafka.clients import make_consumer
from sensorlib.kafka.reader import TopicReader
from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.model.events import parse_alert
from sensorlib.model.gate import judge, to_reading
from sensorlib.observe.tracing import (
    context_from_headers,
    setup_tracing,
    trace_id_of,
    tracer,
    tracing_enabled,
)

__all__ = ["Feed", "running_feeds", "shared_feed", "stale_after", "stop_shared_feeds"]

log = logging.getLogger(__name__)

#: Receives a consumed record (``value``, ``headers``, …) and, for records read back at
#: start-up, when it reached the broker (None: it arrives now).
Sink = Callable[[Any, datetime | None], None]

#: How often the consumers give control back (stop flag, commits): bounds push latency too.
_POLL_MS = 100
#: Commit the group's position this often, so its lag in the Kafka view stays honest.
_COMMIT_EVERY = 2.0
#: Probe the brokers this often for the "Kafka unreachable" banner.
_HEALTH_EVERY = 2.0
#: The back-fill stops early after this long without a record (an open transaction's end
#: is never reached under read_committed), and after _BACKFILL_LIMIT seconds in all.
_BACKFILL_IDLE = 2.0
_BACKFILL_LIMIT = 30.0


def _stalled(exc: KafkaUnavailable, topic: str) -> bool:
    """Whether ``exc`` is TopicReader's "no records for a while" (not a Kafka failure)."""
    return f"no records from {topic} for" in str(exc)


class _TopicPump:
    """Back-fill then follow one topic in one consumer group, feeding ``sink``."""

    def __init__(self, settings: Settings, topic: str, group: str, sink: Sink, *,
                 backfill: timedelta, read_committed: bool, stop: threading.Event) -> None:
        self.settings = settings
        self.topic = topic
        self.group = group
        self.sink = sink
        self.backfill = backfill
        self.stop = stop
        self.options: dict[str, Any] = {
            "isolation_level": "read_committed" if read_committed else "read_uncommitted",
            # The default of 500 ms would be most of our 1 s push budget.
            "fetch_max_wait_ms": _POLL_MS,
            # Topics created after the dashboard started are found within seconds.
            "metadata_max_age_ms": 5000,
        }
        # Next offset to read per partition, shared by the back-fill and the group consumer.
        self.next: dict[TopicPartition, int] = {}
        self.unplaced: set[TopicPartition] = set()
        self.backfilled = threading.Event()
        self.records = 0

    def run(self) -> None:
        """Consume until ``stop`` is set, rebuilding the consumers after any failure."""
        delay = 0.5
        while not self.stop.is_set():
            try:
                self._backfill()
                self.backfilled.set()
                self._follow()
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 — a dashboard must outlive any Kafka error
                log.warning("dashboard feed for %s failed (%s); retrying", self.topic, exc)
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _deliver(self, tp: TopicPartition, records: list[Any], *, backfill: bool = False) -> None:
        for record in records:
            if record.offset < self.next.get(tp, 0):
                continue  # already delivered (a rebalance can hand a partition back)
            if record.value is not None:
                self.sink(record, _broker_time(record) if backfill else None)
            self.next[tp] = record.offset + 1
            self.records += 1

    def _start_offsets(self, consumer: Any, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        since_ms = int((time.time() - self.backfill.total_seconds()) * 1000)
        found = consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = consumer.end_offsets(tps)
        return {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in tps}

    def _backfill(self) -> None:
        """Read the last ``backfill`` of every partition, by record timestamp, without a group.

        A :class:`~sensorlib.kafka.reader.TopicReader` (assign + seek, up to the end offsets of
        the moment it starts). It stops early, keeping what it delivered, when no record
        came for :data:`_BACKFILL_IDLE` seconds (``read_committed`` never reaches the end of
        a transaction still open), after :data:`_BACKFILL_LIMIT` seconds, or on ``stop``;
        the follower then goes on from the last record delivered.
        """
        since_ms = int((time.time() - self.backfill.total_seconds()) * 1000)
        reader = TopicReader(self.settings, self.topic, since_ms=since_ms,
                             idle_timeout=_BACKFILL_IDLE,
                             client_id="sensorlib-dashboard-backfill", **self.options)
        with reader:
            if not reader.exists:
                return
            for partition, begin in reader.begin.items():
                # After a reconnect, never go back before what we already delivered.
                tp = TopicPartition(self.topic, partition)
                self.next[tp] = max(self.next.get(tp, 0), begin)
            deadline = time.monotonic() + _BACKFILL_LIMIT
            try:
                for partition, records in reader:
                    self._deliver(TopicPartition(self.topic, partition), records, backfill=True)
                    if self.stop.is_set() or time.monotonic() > deadline:
                        return
            except KafkaUnavailable as exc:
                if not _stalled(exc, self.topic):
                    raise
                log.info("dashboard back-fill of %s stopped early: %s", self.topic, exc)
                return
            for partition, end in reader.end.items():  # read to the end: markers included
                tp = TopicPartition(self.topic, partition)
                self.next[tp] = max(self.next.get(tp, 0), end)

    def _partitions(self, consumer: Any) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p)
                for p in sorted(consumer.partitions_for_topic(self.topic) or [])]

    def _follow(self) -> None:
        """Follow every partition from where the back-fill stopped; commit as the group.

        Partitions are assigned, not subscribed: each dashboard process must see every
        sensor (a subscription would split them between processes), and a restart never
        waits for a rebalance. Offsets are still committed under the dashboard's group,
        so its lag is visible in the Kafka view and in ``sensorlib status``.
        """
        consumer = make_consumer(self.settings, group_id=self.group,
                                 client_id="sensorlib-dashboard", auto_offset_reset="latest",
                                 **self.options)
        committed: dict[TopicPartition, int] = {}
        try:
            tps = self._partitions(consumer)
            if not tps:
                self.stop.wait(2.0)  # topic not created yet: back-fill again, then retry
                return
            consumer.assign(tps)
            for tp in tps:
                if tp in self.next:
                    consumer.seek(tp, self.next[tp])
                else:
                    self.unplaced.add(tp)
            self._place(consumer)
            last_commit = last_check = time.monotonic()
            while not self.stop.is_set():
                for tp, records in consumer.poll(timeout_ms=_POLL_MS, max_records=2000).items():
                    self._deliver(tp, records)
                for tp in tps:  # read_committed: the position moves past commit markers,
                    with contextlib.suppress(Exception):  # so committing it shows lag 0
                        self.next[tp] = max(self.next.get(tp, 0), consumer.position(tp))
                now = time.monotonic()
                if now - last_commit > _COMMIT_EVERY:
                    last_commit = now
                    self._commit(consumer, tps, committed, sync=False)
                if now - last_check > 10:
                    last_check = now
                    if self._partitions(consumer) != tps:
                        return  # partitions were added: back-fill the new ones and go on
        finally:
            # Best effort on the way out: the broker may be the reason we are leaving.
            with contextlib.suppress(Exception):
                self._commit(consumer, consumer.assignment(), committed, sync=True)
            consumer.close(autocommit=False)

    def _commit(self, consumer: Any, tps: Any, committed: dict[TopicPartition, int],
                *, sync: bool) -> None:
        offsets = {tp: OffsetAndMetadata(self.next[tp], "", -1)
                   for tp in tps if tp in self.next and committed.get(tp) != self.next[tp]}
        if not offsets:
            return
        if sync:
            consumer.commit(offsets)
        else:
            consumer.commit_async(offsets)
        committed.update({tp: meta.offset for tp, meta in offsets.items()})

    def _place(self, consumer: Any) -> None:
        """Seek never-read partitions to the start of the back-fill window."""
        if not self.unplaced:
            return
        placed = sorted(self.unplaced)
        self.unplaced.clear()
        for tp, offset in self._start_offsets(consumer, placed).items():
            consumer.seek(tp, offset)
            self.next[tp] = offset


def _broker_time(record: Any) -> datetime | None:
    """The record's timestamp (its producer's or the broker's clock), if it has one."""
    ms = getattr(record, "timestamp", None)
    if ms is None or ms < 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC)


def stale_after(settings: Settings) -> timedelta:
    """How long without a reading before a card turns STALE.

    ``SENSORLIB_STALE_AFTER`` (a duration: ``30s``, ``2m``) if set, else three
    ``SENSORLIB_INTERVAL`` and at least 10 s.
    """
    return settings.stale_after or default_stale_after(settings.interval)


class Feed:
    """Readings and alerts from Kafka into a :class:`LiveState`, in background threads, and
    the rule settings table (``sensor-rules``) for the thresholds each card shows.

    Args:
        settings: the broker, topics and the two dashboard consumer groups.
        state: where to write (a new one by default, stale after :func:`stale_after`).
        backfill: how far back a fresh start reads readings (the sparkline window).
        alerts_backfill: how far back it reads alerts (the feed is short anyway).
    """

    def __init__(self, settings: Settings, state: LiveState | None = None, *,
                 backfill: timedelta = timedelta(minutes=5),
                 alerts_backfill: timedelta = timedelta(hours=1)) -> None:
        self.settings = settings
        self.state = state or LiveState(window=backfill, stale_after=stale_after(settings))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = EventTimeWindow(settings.max_past, settings.max_future)
        self.readings = _TopicPump(settings, settings.topic_readings,
                                   settings.dashboard_readings_group, self._on_reading,
                                   backfill=backfill, read_committed=False, stop=self._stop)
        # The processor publishes alerts in transactions: never show an aborted one.
        self.alerts = _TopicPump(settings, settings.topic_alerts,
                                 settings.dashboard_alerts_group, self._on_alert,
                                 backfill=alerts_backfill, read_committed=True, stop=self._stop)

    def _on_reading(self, record: Any, arrived: datetime | None) -> None:
        # The one gate, as the processor judges (window around the record's time).
        got = judge(record.value, record.timestamp, accept=self._accept)
        if not isinstance(got, tuple):
            self.state.note_invalid()  # the processor sends these to the DLQ; we just skip
            return
        self.state.add_reading(to_reading(got[0]), arrived)

    def _on_alert(self, record: Any, _arrived: datetime | None) -> None:
        try:
            alert = parse_alert(record.value)
        except ValueError:
            self.state.note_invalid()
            return
        trace_id = trace_id_of(record.headers)
        if trace_id is None or not tracing_enabled():
            self.state.add_alert(alert, trace_id)
            return
        # The alert's trace goes on here: one span for the dashboard receiving it.
        with tracer().start_as_current_span(
                f"{self.settings.topic_alerts} receive", kind=SpanKind.CONSUMER,
                context=context_from_headers(record.headers),
                attributes={"messaging.system": "kafka", "messaging.operation.type": "receive",
                            "messaging.destination.name": self.settings.topic_alerts,
                            "messaging.destination.partition.id": str(record.partition),
                            "messaging.kafka.offset": record.offset,
                            "sensorlib.alert.id": alert.alert_id}) as span:
            shown = self.state.add_alert(alert, trace_id)
            span.set_attribute("sensorlib.dashboard.shown", shown)

    def _follow_rules(self) -> None:
        """Follow the ``sensor-rules`` table: each card shows its sensor's thresholds as the
        processor applies them (the same layers over the same configured defaults)."""
        from sensorlib.kafka.ruletable import RulesFollower
        from sensorlib.processor.loop import rules_from_settings

        base = rules_from_settings(self.settings)
        self.state.set_rules(base)
        while not self._stop.is_set():
            try:
                follower = RulesFollower(self.settings, base)
            except Exception as exc:  # noqa: BLE001 - Kafka away or no topic yet: try again
                log.debug("rules table not readable yet: %s", exc)
                self._stop.wait(_HEALTH_EVERY)
                continue
            try:
                changed = True
                while not self._stop.is_set():
                    if changed:
                        table = follower.table
                        self.state.set_rules(table.config(base), table.version)
                    changed = follower.poll(timeout_ms=500)
            except Exception as exc:  # noqa: BLE001 - a Kafka failure: start again
                log.debug("rules table follower failed: %s", exc)
            finally:
                follower.close()

    def _watch_health(self) -> None:
        while not self._stop.is_set():
            ok = kafka_reachable(self.settings, timeout=1.0)
            self.state.set_kafka(ok, "" if ok else "no broker accepts connections")
            self._stop.wait(_HEALTH_EVERY)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self) -> Feed:
        """Start the threads (once)."""
        if self._threads:
            return self
        # Spans of the alerts it shows join their traces (only when an exporter is set).
        setup_tracing("dashboard")
        logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the banner says it once
        for name, target in (("readings", self.readings.run), ("alerts", self.alerts.run),
                             ("health", self._watch_health), ("rules", self._follow_rules)):
            thread = threading.Thread(target=target, name=f"dashboard-feed-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait_backfilled(self, timeout: float = 30.0) -> bool:
        """Block until both topics were back-filled once (True) or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        for pump in (self.readings, self.alerts):
            if not pump.backfilled.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads and close the consumers (leaving the groups cleanly)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)


_FEEDS: dict[Settings, Feed] = {}
_FEEDS_LOCK = threading.Lock()


def shared_feed(settings: Settings) -> Feed:
    """The one running :class:`Feed` of this process for ``settings`` (started on first use).

    ``panel serve`` runs the dashboard script once per browser session, in one process;
    this is what keeps it to one set of consumers however many sessions come and go.
    """
    with _FEEDS_LOCK:
        feed = _FEEDS.get(settings)
        if feed is None:
            feed = _FEEDS[settings] = Feed(settings).start()
        return feed


def running_feeds() -> list[Feed]:
    """The shared feeds of this process (its ``/metrics`` counts their records)."""
    with _FEEDS_LOCK:
        return list(_FEEDS.values())


def stop_shared_feeds() -> None:
    """Stop every shared feed (tests and clean shutdown)."""
    with _FEEDS_LOCK:
        feeds = list(_FEEDS.values())
        _FEEDS.clear()
    for feed in feeds:
        feed.stop()
