"""Time in one place: the wall clock in UTC, and event times as epoch microseconds.

Hot loops (windows, rules, the processor) compare integers, not datetimes: exact, cheap,
and free of ``datetime``'s overflow at years 1 and 9999.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "ONE_US", "from_us", "to_us", "utcnow"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)


def utcnow() -> datetime:
    """The wall clock, in UTC (the default clock everywhere a clock is passed in)."""
    return datetime.now(UTC)


def to_us(t: datetime) -> int:
    """Microseconds since the Unix epoch: exact, and cheap to compare in hot loops.

    >>> to_us(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
    1000000
    """
    return (t - EPOCH) // ONE_US


def from_us(us: int) -> datetime:
    """The UTC datetime of :func:`to_us` microseconds.

    >>> from_us(1_000_000).isoformat()
    '1970-01-01T00:00:01+00:00'
    """
    return EPOCH + timedelta(microseconds=us)


def format_timestamp(value: datetime) -> str:
    """ISO-8601 UTC with a trailing ``Z`` (microseconds only when non-zero).

    >>> format_timestamp(datetime(2026, 1, 1, 12, tzinfo=UTC))
    '2026-01-01T12:00:00Z'
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")
