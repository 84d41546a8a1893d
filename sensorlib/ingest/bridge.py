"""Fast, bounded, idempotent publishing of HTTP-posted readings (the producer service's core).

:class:`Ingest` hands readings to kafka-python from the asyncio event loop and awaits
Kafka's acknowledgement (acks=all) without a thread per request: each record's future
calls back (in kafka-python's sender thread) into ``loop.call_soon_threadsafe``, which
resolves an asyncio future — one wake-up per single reading, one per batch.

Back-pressure: at most :attr:`IngestSettings.max_in_flight` readings may be handed to
Kafka and not yet acknowledged; past that a request is refused with 429, and while Kafka
makes no progress for :attr:`IngestSettings.ack_timeout` (broker down or stalled) with
503 — both with ``Retry-After`` — so latency cannot grow without limit.

Idempotency: a reading sent with an event id (the ``Idempotency-Key`` header or an
``eventId`` field) is remembered for :attr:`IngestSettings.idempotency_ttl` under
``(sensorId, eventId)``: a retry while the first send is pending joins it, a retry after
success answers the first outcome without sending again, and only a definitive failure
makes a retry send again. The record carries the id in its ``eventId`` Kafka header so
the processor can drop duplicates across producer restarts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kafka.partitioner.default import murmur2

from sensorlib.config import IngestSettings
from sensorlib.errors import Conflict, Refused
from sensorlib.model.events import Reading
from sensorlib.model.limits import EVENT_ID_HEADER

__all__ = [
    "Ingest",
    "Outcome",
]

# The states of one send.
PENDING, DONE, FAILED = 0, 1, 2


class _Send:
    """One reading handed to Kafka (shared by the retries that join it)."""

    __slots__ = ("done", "error", "expires", "fingerprint", "meta", "reading", "started",
                 "state", "waiter")

    def __init__(self, reading: Reading, fingerprint: Any, started: float,
                 waiter: asyncio.Future[None] | None) -> None:
        self.reading = reading
        self.fingerprint = fingerprint
        self.started = started
        self.waiter = waiter  # resolved (in the loop) when the send settles
        self.state = PENDING
        self.meta: Any = None
        self.error: BaseException | None = None
        self.expires = 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one reading's publication ended.

    ``status`` is 201 (acknowledged: ``partition``/``offset`` say where), or 503 (not
    acknowledged within the ack timeout, or failed: ``error`` says why). ``replayed`` is
    True when the answer comes from an earlier send with the same event id; ``reading``
    is the reading that send published.
    """

    status: int
    reading: Reading
    partition: int = -1
    offset: int = -1
    error: str | None = None
    replayed: bool = False
    event_id: str | None = None


def fingerprint_of(reading: Reading, timestamp_given: bool) -> tuple[Any, ...]:
    """What must match for a retry with the same event id to be the same reading
    (the time too, unless the client left it to the server's clock)."""
    return (reading.sensor_id, reading.temperature, reading.humidity, reading.location,
            reading.timestamp if timestamp_given else None)


class Ingest:
    """Publishes readings through a kafka-python producer from the event loop.

    ``client`` is a :class:`kafka.KafkaProducer` (acks=all), ``topic`` the readings topic,
    ``partitions`` a callable giving the topic's partition ids from the client's cached
    metadata (None when unknown: then requests get 503 instead of blocking the loop).
    Use one instance per event loop; every method must be called from that loop.
    """

    def __init__(self, client: Any, topic: str, partitions: Any,
                 limits: IngestSettings | None = None) -> None:
        self.client = client
        self.topic = topic
        self.limits = limits or IngestSettings()
        self._partitions_of = partitions
        self._partitions: list[int] | None = None
        self._partitions_checked = 0.0
        self._partition_cache: dict[str, int] = {}
        self._keys: OrderedDict[tuple[str, str], _Send] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.in_flight = 0
        self._progress = time.monotonic()  # last ack, or when the queue became non-empty
        self.acknowledged = 0
        self.failed = 0

    # ------------------------------------------------------------------ admission

    def stalled(self, now: float | None = None) -> bool:
        """True while readings are pending and Kafka acknowledged none for ``ack_timeout``."""
        now = time.monotonic() if now is None else now
        return self.in_flight > 0 and now - self._progress > self.limits.ack_timeout

    def stall_reason(self, now: float | None = None) -> str | None:
        """While :meth:`stalled`, why in words (``/health``); else None."""
        now = time.monotonic() if now is None else now
        if not self.stalled(now):
            return None
        return (f"sends are stalled: {self.in_flight} reading(s) in flight and no "
                f"acknowledgement from Kafka for {now - self._progress:.0f}s "
                f"(SENSORLIB_ACK_TIMEOUT {self.limits.ack_timeout:g}s); POSTs get 503")

    def admit(self, n: int) -> None:
        """Raise :class:`Refused` unless ``n`` more readings may be sent now."""
        limits = self.limits
        if self.stalled():
            raise Refused(503, f"Kafka has acknowledged nothing for {limits.ack_timeout:g}s "
                          f"({self.in_flight} reading(s) pending): it is unavailable or "
                          "stalled", limits.retry_after)
        if self.in_flight + n > limits.max_in_flight:
            raise Refused(429, f"too many readings in flight ({self.in_flight} of at most "
                          f"{limits.max_in_flight}, SENSORLIB_MAX_IN_FLIGHT): retry later",
                          limits.retry_after)
        if self._partition_list() is None:
            raise Refused(503, f"no metadata for topic {self.topic} yet: Kafka is not "
                          "reachable", limits.retry_after)

    def _partition_list(self) -> list[int] | None:
        now = time.monotonic()
        if self._partitions is None or now - self._partitions_checked > 1.0:
            parts = self._partitions_of()
            parts = sorted(parts) if parts else None
            if parts != self._partitions:
                self._partition_cache.clear()
            self._partitions, self._partitions_checked = parts, now
        return self._partitions

    def partition(self, sensor_id: str) -> int:
        """The partition kafka-python's default partitioner picks for this key (cached)."""
        cached = self._partition_cache.get(sensor_id)
        if cached is not None:
            return cached
        parts = self._partitions or self._partition_list() or [0]
        part = parts[(murmur2(sensor_id.encode("utf-8")) & 0x7FFFFFFF) % len(parts)]
        if len(self._partition_cache) >= 100_000:
            self._partition_cache.clear()
        self._partition_cache[sensor_id] = part
        return part

    # ------------------------------------------------------------------ idempotency

    def _known(self, key: tuple[str, str], fingerprint: Any, now: float) -> _Send | None:
        entry = self._keys.get(key)
        if entry is None:
            return None
        if entry.state != PENDING and entry.expires <= now:
            del self._keys[key]
            return None
        if entry.fingerprint != fingerprint:
            raise Conflict(f"already used for a different reading of sensor {key[0]!r} "
                           f"within the last {self.limits.idempotency_ttl:g}s")
        if entry.state == FAILED:
            del self._keys[key]
            return None
        return entry

    def _remember(self, key: tuple[str, str], entry: _Send, now: float) -> None:
        entry.expires = now + self.limits.idempotency_ttl
        keys = self._keys
        keys[key] = entry
        keys.move_to_end(key)
        while len(keys) > self.limits.idempotency_keys:
            keys.popitem(last=False)
        # Forget expired settled ids from the old end (cheap: stops at the first live one).
        while keys:
            oldest_key, oldest = next(iter(keys.items()))
            if oldest.state == PENDING or oldest.expires > now:
                break
            del keys[oldest_key]

    @property
    def remembered(self) -> int:
        """How many event ids are remembered now."""
        return len(self._keys)

    # ------------------------------------------------------------------ sending

    def _headers(self, event_id: str | None,
                 extra: list[tuple[str, bytes]] | None) -> list[tuple[str, bytes]] | None:
        if event_id is None:
            return extra or None
        return [(EVENT_ID_HEADER, event_id.encode("ascii")), *(extra or ())]

    def _send(self, entry: _Send, headers: list[tuple[str, bytes]] | None,
              done: Any, failed: Any) -> None:
        reading = entry.reading
        key = reading.sensor_id
        try:
            future = self.client.send(self.topic, key=key, value=reading.to_json(),
                                      headers=headers, partition=self.partition(key))
        except Exception as exc:  # noqa: BLE001 - e.g. a closed producer: a failed send
            failed(exc)
            return
        future.add_callback(done)
        future.add_errback(failed)

    async def publish(self, reading: Reading, *, event_id: str | None = None,
                      timestamp_given: bool = True,
                      headers: list[tuple[str, bytes]] | None = None) -> Outcome:
        """Publish one reading and wait (at most ``ack_timeout``) for Kafka's acknowledgement.

        Raises:
            Refused: 429/503 before anything is sent (nothing was published).
            Conflict: ``event_id`` was used for another reading of the sensor.
        """
        loop = self._loop or self._bind()
        now = time.monotonic()
        key = None
        fingerprint = None
        if event_id is not None:
            key = (reading.sensor_id, event_id)
            fingerprint = fingerprint_of(reading, timestamp_given)
            entry = self._known(key, fingerprint, now)
            if entry is not None:
                return await self._settle(entry, event_id, replayed=True)
        self.admit(1)
        entry = _Send(reading, fingerprint, now, loop.create_future())
        self._start(1, now)
        call = loop.call_soon_threadsafe
        settle = self._settled
        self._send(entry, self._headers(event_id, headers),
                   lambda meta: call(settle, entry, meta, None),
                   lambda exc: call(settle, entry, None, exc))
        if key is not None:
            self._remember(key, entry, now)
        return await self._settle(entry, event_id, replayed=False)

    def _start(self, n: int, now: float) -> None:
        if self.in_flight == 0:
            self._progress = now
        self.in_flight += n

    def _settled(self, entry: _Send, meta: Any, exc: BaseException | None) -> None:
        """In the loop: one send acknowledged (``meta``) or failed (``exc``)."""
        self.in_flight -= 1
        if exc is None:
            entry.state, entry.meta = DONE, meta
            self._progress = time.monotonic()
            self.acknowledged += 1
        else:
            entry.state, entry.error = FAILED, exc
            self.failed += 1
        waiter = entry.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _settle(self, entry: _Send, event_id: str | None, *, replayed: bool) -> Outcome:
        if entry.state == PENDING:
            await _wait(entry.waiter, self.limits.ack_timeout)
        return self._outcome(entry, event_id, replayed)

    def _outcome(self, entry: _Send, event_id: str | None, replayed: bool) -> Outcome:
        if entry.state == DONE:
            return Outcome(201, entry.reading, entry.meta.partition, entry.meta.offset,
                           replayed=replayed, event_id=event_id)
        if entry.state == FAILED:
            error = entry.error
            return Outcome(503, entry.reading, error=f"Kafka refused the reading: "
                           f"{type(error).__name__}: {error}", replayed=replayed,
                           event_id=event_id)
        return Outcome(503, entry.reading, error=(
            f"Kafka did not acknowledge within {self.limits.ack_timeout:g}s; the reading "
            "may still be stored: retry with the same Idempotency-Key (or eventId) to "
            "store it once"), replayed=replayed, event_id=event_id)

    async def publish_batch(self, items: Sequence[tuple[Reading, str | None, bool]],
                            *, headers: list[tuple[str, bytes]] | None = None,
                            chunk: int = 1000) -> list[Outcome]:
        """Publish valid readings ``(reading, event_id, timestamp_given)`` together.

        Sends all (yielding to the loop every ``chunk`` readings), then waits at most
        ``ack_timeout`` for every acknowledgement; one loop wake-up for the whole batch.
        Items whose event id is already known join (or replay) that send instead.

        Raises:
            Refused: 429/503 before anything is sent (the batch must fit whole).
        """
        loop = self._loop or self._bind()
        now = time.monotonic()
        entries: list[_Send | None] = [None] * len(items)
        joined: dict[int, _Send] = {}
        conflicts: dict[int, str] = {}
        fresh: list[int] = []
        batch_keys: dict[tuple[str, str], int] = {}
        for i, (reading, event_id, given) in enumerate(items):
            if event_id is None:
                fresh.append(i)
                continue
            key = (reading.sensor_id, event_id)
            fingerprint = fingerprint_of(reading, given)
            try:
                known = self._known(key, fingerprint, now)
            except Conflict as exc:
                conflicts[i] = str(exc)
                continue
            if known is None and key in batch_keys:  # the same id twice in this batch
                first = batch_keys[key]
                if entries[first] is not None and entries[first].fingerprint != fingerprint:
                    conflicts[i] = "already used for a different reading in this batch"
                    continue
                joined[i] = first  # type: ignore[assignment]
                continue
            if known is not None:
                joined[i] = known
                continue
            batch_keys[key] = i
            fresh.append(i)
            entries[i] = _Send(reading, fingerprint, now, loop.create_future())
        self.admit(len(fresh))
        waiter: asyncio.Future[None] = loop.create_future()
        state = _BatchState(len(fresh), loop, self, waiter)
        self._start(len(fresh), now)
        for n, i in enumerate(fresh):
            reading, event_id, _ = items[i]
            entry = entries[i]
            if entry is None:
                entry = entries[i] = _Send(reading, None, now, None)
            else:
                self._remember((reading.sensor_id, event_id), entry, now)  # type: ignore[arg-type]
            self._send(entry, self._headers(event_id, headers),
                       state.callback(entry), state.errback(entry))
            if n % chunk == chunk - 1:
                await asyncio.sleep(0)
        if fresh:
            await _wait(waiter, self.limits.ack_timeout)
        pending = [e for e in joined.values() if isinstance(e, _Send) and e.state == PENDING]
        for entry in pending:  # joined sends of earlier requests: wait for them too
            await _wait(entry.waiter, max(0.0, self.limits.ack_timeout
                                          - (time.monotonic() - now)))
        out: list[Outcome] = []
        for i, (reading, event_id, _) in enumerate(items):
            if i in conflicts:
                out.append(Outcome(409, reading, error=conflicts[i], event_id=event_id))
                continue
            target = joined.get(i)
            if isinstance(target, int):
                out.append(self._outcome(entries[target], event_id, True))  # type: ignore[arg-type]
            elif target is not None:
                out.append(self._outcome(target, event_id, True))
            else:
                out.append(self._outcome(entries[i], event_id, False))  # type: ignore[arg-type]
        return out

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop


class _BatchState:
    """Counts a batch's acknowledgements in kafka-python's thread; wakes the loop once."""

    __slots__ = ("ingest", "left", "lock", "loop", "results", "waiter")

    def __init__(self, n: int, loop: asyncio.AbstractEventLoop, ingest: Ingest,
                 waiter: asyncio.Future[None]) -> None:
        self.left = n
        self.lock = threading.Lock()
        self.loop = loop
        self.ingest = ingest
        self.waiter = waiter
        self.results: list[tuple[_Send, Any, BaseException | None]] = []

    def callback(self, entry: _Send) -> Any:
        return lambda meta: self._one(entry, meta, None)

    def errback(self, entry: _Send) -> Any:
        return lambda exc: self._one(entry, None, exc)

    def _one(self, entry: _Send, meta: Any, exc: BaseException | None) -> None:
        with self.lock:
            self.results.append((entry, meta, exc))
            self.left -= 1
            last = self.left == 0
        if last:
            self.loop.call_soon_threadsafe(self._all)

    def _all(self) -> None:
        """In the loop: every send of the batch settled."""
        ingest = self.ingest
        ok = 0
        for entry, meta, exc in self.results:
            if exc is None:
                entry.state, entry.meta = DONE, meta
                ok += 1
            else:
                entry.state, entry.error = FAILED, exc
            if entry.waiter is not None and not entry.waiter.done():
                entry.waiter.set_result(None)
        ingest.in_flight -= len(self.results)
        ingest.acknowledged += ok
        ingest.failed += len(self.results) - ok
        if ok:
            ingest._progress = time.monotonic()
        if not self.waiter.done():
            self.waiter.set_result(None)


async def _wait(future: asyncio.Future[None] | None, timeout: float) -> None:
    """Wait for ``future`` at most ``timeout`` seconds without cancelling it (others may
    be waiting for the same send)."""
    if future is None or future.done():
        return
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(timeout, wake)
    future.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        future.remove_done_callback(wake)

