"""The event-time acceptance window: how far in the past and the future of the receiver's clock
(or of a record's Kafka timestamp) a reading's event time may lie (``SENSORLIB_MAX_PAST`` /
``SENSORLIB_MAX_FUTURE``). The one bounds check every reader uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sensorlib.model.rejections import FieldError, InvalidReading
from sensorlib.model.times import EPOCH, ONE_US, format_timestamp

__all__ = ["EventTimeWindow"]


@dataclass(frozen=True, slots=True)
class EventTimeWindow:
    """The event times accepted around a receiver's clock (``SENSORLIB_MAX_PAST`` / ``_FUTURE``).

    >>> w = EventTimeWindow(timedelta(days=365), timedelta(minutes=5))
    >>> now = datetime(2026, 6, 1, tzinfo=UTC)
    >>> w.error(datetime(2026, 6, 1, 0, 4, tzinfo=UTC), now) is None
    True
    >>> print(w.error(datetime(2026, 6, 1, 0, 6, tzinfo=UTC), now))
    timestamp: must lie between 2025-06-01T00:00:00Z and 2026-06-01T00:05:00Z (at most 365 days old and 5 minutes ahead of the receiver's clock; SENSORLIB_MAX_PAST / SENSORLIB_MAX_FUTURE), got 2026-06-01T00:06:00Z
    """

    max_past: timedelta = timedelta(days=365)
    max_future: timedelta = timedelta(minutes=5)

    def bounds_us(self, now_us: int) -> tuple[int, int]:
        """The accepted range ``[low, high]`` in epoch microseconds around ``now_us``."""
        return (now_us - self.max_past // ONE_US, now_us + self.max_future // ONE_US)

    def error(self, timestamp: datetime, now: datetime) -> FieldError | None:
        """Why ``timestamp`` is outside the window around ``now``, or None when inside."""
        return self.error_us((timestamp - EPOCH) // ONE_US, (now - EPOCH) // ONE_US)

    def error_us(self, ts: int, now_us: int) -> FieldError | None:
        """:meth:`error` with both times in epoch microseconds (any integers: no overflow)."""
        low, high = self.bounds_us(now_us)
        if low <= ts <= high:
            return None
        return FieldError("timestamp", (
            f"must lie between {_format_us(low)} and {_format_us(high)} "
            f"(at most {_human(self.max_past)} old and {_human(self.max_future)} ahead of "
            "the receiver's clock; SENSORLIB_MAX_PAST / SENSORLIB_MAX_FUTURE), "
            f"got {_format_us(ts)}"))

    def check(self, timestamp: datetime, now: datetime) -> None:
        """Raise :class:`InvalidReading` when ``timestamp`` is outside the window."""
        problem = self.error(timestamp, now)
        if problem is not None:
            raise InvalidReading([problem])




def _format_us(us: int) -> str:
    try:
        return format_timestamp(EPOCH + timedelta(microseconds=us))
    except OverflowError:
        return f"{us} µs from the Unix epoch"


def _human(span: timedelta) -> str:
    seconds = span.total_seconds()
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"
