"""The wire format's limits: body size, field lengths, value ranges, the event-time range
every record must lie in, and the Kafka header carrying a reading's event id."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["EVENT_ID_HEADER", "HUMIDITY_RANGE", "MAX_BODY_BYTES", "MAX_LOCATION",
           "MAX_SENSOR_ID", "TEMPERATURE_RANGE", "TIMESTAMP_RANGE"]

#: The Kafka record header carrying a reading's event id (UTF-8): set by the producer API,
#: read by the processor and the archiver to drop retried copies.
EVENT_ID_HEADER = "eventId"

#: Largest accepted reading body (bytes of UTF-8 JSON).
MAX_BODY_BYTES = 65536
MAX_SENSOR_ID = 64
MAX_LOCATION = 256
TEMPERATURE_RANGE = (-100.0, 200.0)
HUMIDITY_RANGE = (0.0, 100.0)

#: Event times any record may carry, whatever the clock: every window, tick and cooldown
#: computation stays far from ``datetime``'s limits (years 1 and 9999) inside it.
#: (Inside what pandas's nanosecond timestamps hold, so replayed frames agree with parse_reading.)
TIMESTAMP_RANGE = (datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
