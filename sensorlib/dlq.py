"""Dead letters: what goes to ``sensor-readings-dlq`` for a record that is not a valid reading.

The raw bytes (as text when they are UTF-8, else base64), why they were rejected (field
and reason, as the HTTP API would answer) and where they came from (topic, partition,
offset, record time), so nothing is lost and every rejection can be traced and replayed.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from sensorlib.events import InvalidReading, format_timestamp
from sensorlib.times import utcnow

__all__ = ["dead_letter"]


def dead_letter(record: Any, error: Exception) -> bytes:
    """The DLQ value for a consumed ``record`` that failed with ``error``."""
    raw: bytes = record.value if isinstance(record.value, bytes) else b""
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    errors = (
        [{"field": e.field, "reason": e.reason} for e in error.errors]
        if isinstance(error, InvalidReading)
        else [{"field": "body", "reason": str(error)}]
    )
    return json.dumps(
        {
            "errors": errors,
            "source": {"topic": record.topic, "partition": record.partition,
                       "offset": record.offset, "timestamp": record.timestamp},
            "key": record.key,
            "value": text,
            "valueBase64": base64.b64encode(raw).decode() if text is None else None,
            "rejectedAt": format_timestamp(utcnow()),
        }
    ).encode()
