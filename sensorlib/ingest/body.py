"""Reading the body of an ingestion request: one reading or a batch (a JSON array or
NDJSON lines) into raw readings, each judged by :mod:`sensorlib.model.gate`, and the event
id a client may send with it (``Idempotency-Key`` or ``eventId``)."""

from __future__ import annotations

import json
import re
from typing import Any

from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.model.events import Reading, parse_reading
from sensorlib.model.limits import EVENT_ID_HEADER
from sensorlib.model.rejections import FieldError, InvalidReading

__all__ = ["EVENT_ID_HEADER", "NDJSON_TYPES", "check_event_id", "parse_posted", "split_batch"]

_EVENT_ID = re.compile(r"[\x21-\x7e]{1,128}")


def check_event_id(value: Any, field: str) -> str:
    """``value`` if it is a valid event id (1–128 printable ASCII characters, no spaces).

    Raises:
        InvalidReading: naming ``field`` (``Idempotency-Key`` or ``eventId``) and why.

    >>> check_event_id("order-7/1", "eventId")
    'order-7/1'
    """
    if not isinstance(value, str):
        raise InvalidReading([FieldError(field, "must be a string of 1 to 128 printable ASCII "
                                         f"characters, not {type(value).__name__}")])
    if _EVENT_ID.fullmatch(value) is None:
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise InvalidReading([FieldError(field, "must be 1 to 128 printable ASCII characters "
                                         f"without spaces (got {len(value)}: {shown!r})")])
    return value


def parse_posted(raw: bytes, *, now: Any, accept: EventTimeWindow | None = None,
                 event_id: str | None = None) -> tuple[Reading, str | None, bool]:
    """Validate one posted reading: ``(reading, event id, whether it gave a timestamp)``.

    The event id is ``event_id`` (the ``Idempotency-Key`` header, already checked) or the
    body's ``eventId``/``EventId`` field; both given must agree. Validation is
    :func:`sensorlib.model.events.parse_reading`'s, with ``now`` filling a missing timestamp.

    Raises:
        InvalidReading: naming the bad fields (``eventId`` / ``Idempotency-Key`` too).
    """
    reading = parse_reading(raw, now=now, accept=accept)
    if b'ventId"' in raw:  # rare path: decode once more for the id
        data = json.loads(raw)
        for name in ("eventId", "EventId"):
            if name in data:
                body_id = check_event_id(data[name], "eventId")
                if event_id is not None and body_id != event_id:
                    raise InvalidReading([FieldError(
                        "Idempotency-Key", f"differs from the body's eventId ({body_id!r})")])
                event_id = body_id
    return reading, event_id, b'imestamp"' in raw


#: Media types of a newline-delimited JSON batch (one reading per line).
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})


def split_batch(body: bytes, media: str) -> list[bytes]:
    """The raw readings of a batch body: a JSON array, or NDJSON (blank lines skipped).

    Each item's bytes are validated on their own (like a single POST), so a bad item
    names its own fields. A JSON array must be well-formed JSON as a whole.

    Raises:
        InvalidReading: field ``body`` when it is not a JSON array / not UTF-8 NDJSON.
    """
    if media in NDJSON_TYPES:
        lines = [line.strip() for line in body.split(b"\n")]
        return [line for line in lines if line]
    import msgspec

    try:
        items = msgspec.json.decode(body, type=list[msgspec.Raw])
    except msgspec.ValidationError:
        raise InvalidReading([FieldError("body", "must be a JSON array of readings (or "
                                         "NDJSON with Content-Type: application/x-ndjson)")])
    except msgspec.DecodeError as exc:
        raise InvalidReading([FieldError("body", f"not valid JSON: {exc}")]) from None
    except RecursionError:
        raise InvalidReading([FieldError("body", "nested too deeply: a batch is a JSON array "
                                         "of flat reading objects")]) from None
    return [bytes(item) for item in items]
