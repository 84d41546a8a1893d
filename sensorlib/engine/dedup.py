"""Dropping retried readings: the (sensorId, eventId) pairs seen in a recent span of record time.

A client that retries ``POST /api/events`` with the same ``Idempotency-Key`` (or ``eventId``)
makes the producer put the same id in each record's ``eventId`` header
(:data:`sensorlib.model.limits.EVENT_ID_HEADER`). The producer joins retries it still remembers;
across producer restarts (or two producer processes) the same reading can reach the topic
twice, and the processor drops every copy after the first whose pair it has seen within
:class:`SeenEvents`'s span. Records without the header are never de-duplicated.

The span is measured in record (Kafka) time, like the processor's state rebuild, so a
restarted processor that re-reads its history remembers exactly the ids it would have
remembered had it kept running. Pure: no Kafka here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from sensorlib.errors import UsageError
from sensorlib.model.limits import EVENT_ID_HEADER

__all__ = ["SeenEvents", "event_id_of"]

_HEADER = EVENT_ID_HEADER


def event_id_of(headers: Sequence[tuple[str, bytes | None]] | None) -> str | None:
    """The record's ``eventId`` header as text, or None (absent or empty).

    >>> event_id_of([("traceparent", b"00-..."), ("eventId", b"order-7/1")])
    'order-7/1'
    >>> event_id_of([]) is None
    True
    """
    if not headers:
        return None
    for key, value in headers:
        if key == _HEADER and value:
            return value.decode("utf-8", "replace")
    return None


class SeenEvents:
    """The (sensorId, eventId) pairs of the records of the last ``span_ms`` of record time.

    >>> seen = SeenEvents(span_ms=60_000)
    >>> seen.first("s1", "a", 1_000), seen.first("s1", "a", 5_000), seen.first("s2", "a", 5_000)
    (True, False, True)
    >>> seen.first("s1", "a", 62_000)   # 61 s after the first copy: forgotten
    True
    """

    __slots__ = ("_order", "_seen", "max_size", "span_ms")

    def __init__(self, span_ms: int, max_size: int = 1_000_000) -> None:
        if span_ms <= 0:
            raise UsageError(f"span_ms must be positive (got {span_ms})")
        self.span_ms = span_ms
        self.max_size = max_size
        self._seen: dict[tuple[str, str], int] = {}
        self._order: deque[tuple[int, tuple[str, str]]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def first(self, sensor_id: str, event_id: str, at_ms: int) -> bool:
        """Record the pair at record time ``at_ms``; False if it was seen within the span."""
        self._expire(at_ms - self.span_ms)
        key = (sensor_id, event_id)
        if key in self._seen:
            return False
        self._seen[key] = at_ms
        self._order.append((at_ms, key))
        if len(self._order) > self.max_size:  # bounded, whatever the clock does
            _, old = self._order.popleft()
            self._seen.pop(old, None)
        return True

    def _expire(self, cutoff_ms: int) -> None:
        order, seen = self._order, self._seen
        while order and order[0][0] <= cutoff_ms:
            at, key = order.popleft()
            if seen.get(key) == at:
                del seen[key]
