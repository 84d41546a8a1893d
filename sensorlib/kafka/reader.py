"""Reading a topic without a consumer group: assign + seek to a start (an offset, a time or the
last N records), up to the end offsets taken when the read began; a read that stalls ends."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Self

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import (
    KafkaError,
)

from sensorlib.config import Settings
from sensorlib.errors import KafkaSetupFailed, KafkaUnavailable
from sensorlib.kafka.clients import client_errors, make_consumer

# -- reading a topic without a group -----------------------------------------------------


@contextmanager
def map_kafka_errors(settings: Settings) -> Iterator[None]:
    """Turn kafka-python's errors into :class:`KafkaUnavailable` naming the servers
    (and, when the connection set-up failed, why: :class:`KafkaSetupFailed`)."""
    try:
        yield
    except KafkaError as exc:
        cause = client_errors.last(within=60.0)
        if cause:
            raise KafkaSetupFailed(settings.bootstrap_servers, cause) from exc
        raise KafkaUnavailable(settings.bootstrap_servers, f"{type(exc).__name__}: {exc}") from exc


class TopicReader:
    """Reads part of a topic with assign + seek (no consumer group), bounded in offsets and time.

    Where to start, per partition: ``since_ms`` (the first record at or after that record
    time), ``offsets`` (partition -> offset; partitions not named start at their beginning),
    ``last`` (the last N records of each partition), or the beginning. Where to stop: the
    end offsets taken when the read starts (``until`` overrides them per partition), so a
    busy topic never makes a read endless — or, with ``follow`` seconds, whatever arrives
    until then (a tail). One rule bounds a stalled read: no record for ``idle_timeout``
    seconds while records are still expected raises :class:`KafkaUnavailable`, and so does
    any Kafka error (:func:`map_kafka_errors`).

    Use as a context manager; iterate for ``(partition, records)`` batches, each trimmed to
    the stop offset. ``total`` is the number of offsets to read (for progress bars)::

        with TopicReader(settings, "sensor-readings", last=100) as reader:
            for partition, records in reader:
                ...
    """

    def __init__(self, settings: Settings, topic: str, *, since_ms: int | None = None,
                 offsets: dict[int, int] | None = None, last: int | None = None,
                 until: dict[int, int] | None = None, partitions: Iterable[int] | None = None,
                 follow: float | None = None, idle_timeout: float = 30.0,
                 client_id: str = "sensorlib-reader", **consumer_options: Any) -> None:
        self.settings = settings
        self.topic = topic
        self._since_ms, self._offsets, self._last, self._until = since_ms, offsets, last, until
        self._partitions = None if partitions is None else sorted(partitions)
        self._follow = follow
        self._idle_timeout = idle_timeout
        self._client_id = client_id
        self._options = {"isolation_level": "read_committed", **consumer_options}
        self._consumer: KafkaConsumer | None = None
        self.begin: dict[int, int] = {}
        self.end: dict[int, int] = {}
        self.exists = True

    @property
    def total(self) -> int:
        """Offsets between start and stop, over all partitions (what follows not counted)."""
        return sum(max(0, self.end[p] - self.begin[p]) for p in self.end)

    def __enter__(self) -> Self:
        with map_kafka_errors(self.settings):
            consumer = self._consumer = make_consumer(self.settings, client_id=self._client_id,
                                                      **self._options)
            numbers = consumer.partitions_for_topic(self.topic)
            if not numbers:
                self.exists = False
                return self
            wanted = self._partitions if self._partitions is not None else sorted(numbers)
            parts = [TopicPartition(self.topic, p) for p in wanted if p in numbers]
            ends = consumer.end_offsets(parts)
            firsts = consumer.beginning_offsets(parts)
            begin = {tp: firsts[tp] for tp in parts}
            if self._offsets is not None:
                begin = {tp: self._offsets.get(tp.partition, firsts[tp]) for tp in parts}
            elif self._last is not None:
                begin = {tp: ends[tp] - self._last for tp in parts}
            elif self._since_ms is not None:
                found = consumer.offsets_for_times({tp: max(0, self._since_ms) for tp in parts})
                begin = {tp: ends[tp] if found.get(tp) is None else found[tp].offset
                         for tp in parts}
            until = self._until or {}
            for tp in parts:
                stop = ends[tp] if tp.partition not in until else min(ends[tp], until[tp.partition])
                self.begin[tp.partition] = min(max(begin[tp], firsts[tp]), stop)
                self.end[tp.partition] = stop
            consumer.assign(parts)
            for tp in parts:
                consumer.seek(tp, self.begin[tp.partition])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __iter__(self) -> Iterator[tuple[int, list[Any]]]:
        consumer = self._consumer
        if consumer is None or not self.exists:
            return
        started = time.monotonic()
        yield from self._bounded(consumer)
        if self._follow is not None:
            consumer.resume(*consumer.assignment())
            yield from self._tail(consumer, started + self._follow)

    def _bounded(self, consumer: KafkaConsumer) -> Iterator[tuple[int, list[Any]]]:
        remaining = {TopicPartition(self.topic, p): stop for p, stop in self.end.items()
                     if self.begin[p] < stop}
        for tp in set(consumer.assignment()) - set(remaining):
            consumer.pause(tp)
        last_progress = time.monotonic()
        with map_kafka_errors(self.settings):
            while remaining:
                got = 0
                for tp, records in consumer.poll(timeout_ms=500).items():
                    stop = remaining.get(tp)
                    if stop is None or not records:
                        continue
                    if records[-1].offset >= stop:
                        records = [r for r in records if r.offset < stop]
                    if records:
                        got += len(records)
                        yield tp.partition, records
                for tp in list(remaining):
                    # The position, not the last record: transaction markers take offsets.
                    if consumer.position(tp) >= remaining[tp]:
                        del remaining[tp]
                        consumer.pause(tp)
                now = time.monotonic()
                if got:
                    last_progress = now
                elif remaining and now - last_progress > self._idle_timeout:
                    left = sum(stop - consumer.position(tp) for tp, stop in remaining.items())
                    raise KafkaUnavailable(self.settings.bootstrap_servers, (
                        f"no records from {self.topic} for {self._idle_timeout:.0f}s while "
                        f"{left} were expected"))

    def _tail(self, consumer: KafkaConsumer, deadline: float) -> Iterator[tuple[int, list[Any]]]:
        with map_kafka_errors(self.settings):
            while (left := deadline - time.monotonic()) > 0:
                for tp, records in consumer.poll(timeout_ms=max(1, int(left * 1000))).items():
                    if records:
                        yield tp.partition, records
