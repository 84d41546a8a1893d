"""The one gate every reading passes: bytes (and the record's time) → a reading, or why not.

:func:`judge` is *the* definition of a reading. Every reader of readings — the producer
API, the processor, the archiver, replay, the dashboard feed — gives the verdict it gives:

- it is **total**: any value of any type (a tombstone ``None``, invalid UTF-8, JSON nested
  thousands deep, a 400-digit number, a 10 MB string, a list) gets a verdict; it never
  raises, so one record can never stop a loop;
- its verdict is a ``(reading, event time in epoch µs)`` tuple, or an
  :class:`~sensorlib.model.rejections.InvalidReading` (returned, not raised) naming every bad field;
- the event time must lie in the accepted window (``accept``) around the record's own
  Kafka time (``record_ms``), or around ``now_us`` when the record has none — so
  re-judging the same record always decides the same.

Fast forms are the same code or held to it: :func:`judge_many` judges a poll's values at
once, decoding every well-formed shape (PascalCase or camelCase keys, ``Z`` or ``±HH:MM``
timestamps, any fraction length) with msgspec and handing anything else to :func:`judge`;
the vectorised decoder (:mod:`sensorlib.replay.decode`) hands every record it is not sure of to
:func:`judge`. A differential test over a shared corpus of odd records
(``tests/unit/test_gate.py``) holds all of them to this module.

The timestamp grammar (:func:`parse_event_time`) is written once, here::

    YYYY-MM-DD('T'|' ')HH:MM:SS[.F{1,9}][Z|±HH:MM|±HHMM]     (no zone: UTC)

Fractional digits beyond microseconds are truncated (the .NET producer writes seven).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, get_type_hints

import msgspec
from pydantic import ValidationError

from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.model.events import LiveReading, Reading, new_reading
from sensorlib.model.limits import (
    HUMIDITY_RANGE,
    MAX_BODY_BYTES,
    TEMPERATURE_RANGE,
    TIMESTAMP_RANGE,
)
from sensorlib.model.rejections import (
    FieldError,
    InvalidReading,
    _shown,
    errors_of,
    surrogate_errors,
)
from sensorlib.model.times import EPOCH, ONE_US

__all__ = [
    "FIELDS",
    "Judged",
    "judge",
    "judge_full",
    "judge_many",
    "judge_posted",
    "parse_event_time",
    "to_reading",
]

#: A reading accepted by the gate and its event time in epoch microseconds.
Judged = tuple[Reading | LiveReading, int]

#: The five fields in wire order (camelCase; PascalCase is the same with a capital).
FIELDS = ("sensorId", "temperature", "humidity", "location", "timestamp")
_SPELLINGS = {name: name for name in FIELDS} | {name[0].upper() + name[1:]: name
                                                  for name in FIELDS}
_FIRST_YEAR, _END_YEAR = TIMESTAMP_RANGE[0].year, TIMESTAMP_RANGE[1].year

# -- the timestamp grammar ------------------------------------------------------------------

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?", re.ASCII)
_EXAMPLE = "such as 2026-01-01T12:00:00Z"


def parse_event_time(text: str) -> datetime | str:
    """The UTC datetime an ISO-8601 event time names, or why it names none (a reason).

    >>> parse_event_time("2026-01-01T14:00:00.1234567+02:00")
    datetime.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    >>> parse_event_time("2026-01-01T12:00:00.123456+09:00Z")
    'must be an ISO-8601 date-time such as 2026-01-01T12:00:00Z, not "2026-01-01T12:00:00.123456+09:00Z"'
    """
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        if text.isdigit() or text.replace(".", "", 1).isdigit():
            return (f"must be an ISO-8601 date-time {_EXAMPLE} (epoch numbers are not "
                    f"accepted), not {_shown(text)}")
        return f"must be an ISO-8601 date-time {_EXAMPLE}, not {_shown(text)}"
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        when = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                        int(fraction[:6].ljust(6, "0")) if fraction else 0, tzinfo=UTC)
    except ValueError as exc:
        return f"not a valid date-time: {_shown(text)} ({exc})"
    if zone and zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        if hours > 23 or minutes > 59:
            return f"not a valid UTC offset: {zone!r} in {_shown(text)}"
        offset = timedelta(hours=hours, minutes=minutes)
        try:
            when = when - offset if zone[0] == "+" else when + offset
        except OverflowError:
            return _out_of_range(text)
    if not _FIRST_YEAR <= when.year < _END_YEAR:
        return _out_of_range(text)
    return when


def _out_of_range(text: str) -> str:
    return f"must be in the years {_FIRST_YEAR} to {_END_YEAR - 1} (got {_shown(text)})"


# -- the full gate --------------------------------------------------------------------------


def _refuse(field: str, reason: str) -> InvalidReading:
    return InvalidReading([FieldError(field, reason)])


class _Twice(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: refuse a key given twice, in any casing (``temperature`` and
    ``Temperature``): JSON parsers keep one silently."""
    seen: dict[str, str] = {}
    for key, _ in pairs:
        folded = key.casefold()
        if folded in seen:
            first = seen[folded]
            what = "twice" if first == key else f"twice, as {first!r} and {key!r}"
            raise _Twice(_SPELLINGS.get(key, key), f"given {what}: send each field once")
        seen[folded] = key
    return dict(pairs)


def _text_of(value: Any) -> str | InvalidReading:
    """A record value as text, or why it cannot be a reading at all."""
    if value is None:
        return _refuse("body", "no value (a tombstone): not a reading")
    if isinstance(value, str):
        size = len(value.encode("utf-8", "surrogatepass"))
        text = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        size = len(data)
        if size > MAX_BODY_BYTES:
            return _too_large(size)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _refuse("body", f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at "
                           f"position {exc.start})")
    else:
        return _refuse("body", f"must be JSON text, not {type(value).__name__}")
    if size > MAX_BODY_BYTES:
        return _too_large(size)
    if not text.strip():
        return _refuse("body", "empty: must be a JSON object")
    return text


def _too_large(size: int) -> InvalidReading:
    return _refuse("body", f"larger than 64 KiB ({MAX_BODY_BYTES} bytes): got {size} bytes")


def _decoded(text: str) -> dict[str, Any] | InvalidReading:
    try:
        data = json.loads(text, object_pairs_hook=_pairs)
    except _Twice as exc:
        return _refuse(exc.field, exc.reason)
    except RecursionError:
        return _refuse("body", "nested too deeply: a reading is one flat JSON object")
    except ValueError as exc:  # JSONDecodeError, and ints of more than 4,300 digits
        return _refuse("body", f"not valid JSON: {exc}")
    if not isinstance(data, dict):
        return _refuse("body", "must be a JSON object")
    if "\\u" in text and (errors := surrogate_errors(data)):
        return InvalidReading(errors)
    return data


def _fields(data: Mapping[str, Any], now: datetime | None
            ) -> tuple[dict[str, Any], dict[str, str]]:
    """The five fields under their camelCase names, and the errors found before pydantic:
    timestamps (the grammar above) and numbers too large for a float."""
    fields: dict[str, Any] = {}
    for key, value in data.items():
        name = _SPELLINGS.get(key) if type(key) is str else None
        if name is not None:
            fields[name] = value
    early: dict[str, str] = {}
    for name in ("temperature", "humidity"):
        value = fields.get(name)
        if type(value) is int:
            try:
                float(value)
            except OverflowError:
                low, high = TEMPERATURE_RANGE if name == "temperature" else HUMIDITY_RANGE
                early[name] = (f"must be between {low:g} and {high:g} "
                               f"(got a {len(str(abs(value)))}-digit number)")
                fields[name] = 0.0
    stamp = fields.get("timestamp", ...)
    if stamp is ...:
        if now is not None:
            fields["timestamp"] = now
    elif isinstance(stamp, str):
        when = parse_event_time(stamp)
        if isinstance(when, str):
            early["timestamp"] = when
            fields["timestamp"] = EPOCH  # a stand-in: the reason above wins
        else:
            fields["timestamp"] = when
    elif isinstance(stamp, datetime):  # from Python (a DataFrame row, a test)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        fields["timestamp"] = stamp
    return fields, early


def _validated(data: Mapping[str, Any], now: datetime | None) -> Reading | InvalidReading:
    fields, early = _fields(data, now)
    try:
        reading = Reading.model_validate(fields)
    except ValidationError as exc:
        errors = [e for e in errors_of(exc) if e.field not in early]
    else:
        if not early:
            return reading
        errors = []
    errors += [FieldError(name, reason) for name, reason in early.items()]
    errors.sort(key=lambda e: FIELDS.index(e.field) if e.field in FIELDS else -1)
    return InvalidReading(errors)


def judge(value: Any, record_ms: int = -1, *, now_us: int | None = None,
          accept: EventTimeWindow | None = None, now: datetime | None = None
          ) -> Judged | InvalidReading:
    """The gate's verdict on one record value: ``(reading, event time µs)`` or why not.

    Args:
        value: the record's value — bytes as they came from Kafka or HTTP, text, or an
            already decoded mapping (a DataFrame row); anything else is refused.
        record_ms: the record's Kafka timestamp in ms (negative: none).
        now_us: the receiver's clock (epoch µs): stands in for a missing record time.
        accept: the accepted event-time window around the record time (None: any time
            in the years 1900–2199).
        now: fills a missing timestamp (the HTTP API passes its wall clock); without
            it a missing timestamp is an error.

    Never raises: an unexpected failure while judging is itself a refusal naming it.

    >>> judge(None)
    InvalidReading([FieldError(field='body', reason='no value (a tombstone): not a reading')])
    >>> reading, us = judge(b'{"sensorId":"s","temperature":1,"humidity":2,'
    ...                     b'"timestamp":"1970-01-01T00:00:01+00:00"}')
    >>> reading.sensor_id, us
    ('s', 1000000)
    """
    try:
        fast = _fast_one(value)
    except Exception:  # noqa: BLE001 - the full form decides
        fast = None
    if fast is not None:
        return _in_window(fast, record_ms, now_us, accept)
    return judge_full(value, record_ms, now_us=now_us, accept=accept, now=now)


def judge_full(value: Any, record_ms: int = -1, *, now_us: int | None = None,
               accept: EventTimeWindow | None = None, now: datetime | None = None
               ) -> Judged | InvalidReading:
    """:func:`judge` without the fast form: json and pydantic only — the reference that
    every fast form is held to (and the path of everything unusual)."""
    try:
        if isinstance(value, Mapping):
            got: Reading | InvalidReading = _validated(value, now)
        else:
            text = _text_of(value)
            if isinstance(text, InvalidReading):
                return text
            data = _decoded(text)
            if isinstance(data, InvalidReading):
                return data
            got = _validated(data, now)
        if isinstance(got, InvalidReading):
            return got
        return _in_window((got, (got.timestamp - EPOCH) // ONE_US), record_ms, now_us, accept)
    except Exception as exc:  # noqa: BLE001 - total: the verdict names what went wrong
        return _refuse("body", f"could not be judged: {type(exc).__name__}: {exc}"[:300])


def _in_window(judged: Judged, record_ms: int, now_us: int | None,
               accept: EventTimeWindow | None) -> Judged | InvalidReading:
    if accept is None:
        return judged
    if record_ms >= 0:
        ref = record_ms * 1000
    elif now_us is not None:
        ref = now_us
    else:
        ref = (datetime.now(UTC) - EPOCH) // ONE_US
    problem = accept.error_us(judged[1], ref)
    return judged if problem is None else InvalidReading([problem])


def to_reading(reading: Reading | LiveReading) -> Reading:
    """A :class:`~sensorlib.model.events.Reading` of a judged reading (the fast form is a
    light struct with the same five attributes)."""
    if isinstance(reading, Reading):
        return reading
    return new_reading(reading.sensor_id, reading.temperature, reading.humidity,
                       reading.location, reading.timestamp)


def judge_posted(raw: bytes, *, now: datetime, accept: EventTimeWindow | None
                 ) -> Reading | InvalidReading:
    """The gate for ``POST /api/events``: a missing timestamp means ``now``, and the
    accepted window is around ``now`` (the receiver's wall clock)."""
    now_us = (now - EPOCH) // ONE_US
    got = judge(raw, -1, now_us=now_us, accept=accept, now=now)
    return got if isinstance(got, InvalidReading) else to_reading(got[0])


# -- the fast form: msgspec over the well-formed shapes ---------------------------------------


#: A well-formed camelCase reading (the sample's curl shape, older sensorlib history): the
#: same fields and bounds as :class:`~sensorlib.model.events.LiveReading`, camelCase keys.
_CamelReading = msgspec.defstruct(
    "CamelReading", list(get_type_hints(LiveReading, include_extras=True).items()),
    rename="camel", forbid_unknown_fields=True, gc=False, module=__name__)


_decode_pascal = msgspec.json.Decoder(LiveReading).decode
_decode_camel = msgspec.json.Decoder(_CamelReading).decode
# Five keys and three string values: a key given twice adds quotes (values hold no
# escapes: the fast form takes none).
_QUOTES = 16
_DIGITS = "0123456789"
_FAST_BODIES = frozenset((19, 26, 27))  # ...SS, ...SS.ffffff, ...SS.fffffff (.NET)


def _fast_time(ts: Any) -> datetime | None:
    """The event time of a fast-form timestamp, or None for the full gate to decide."""
    if type(ts) is not str or not ts:
        return None
    size = len(ts)
    if ts[4:17:3] != "--T::":
        body = 0
    elif ts[-1] == "Z":
        body = size - 1
    elif size > 24 and ts[-3] == ":" and ts[-6] in "+-":
        body = size - 6
    else:
        body = 0
    if (body in _FAST_BODIES and (body == 19 or ts[19] == ".")
            and (body != 27 or ts[26] in _DIGITS)):  # the 7th digit dropped must be one
        # The usual shapes: Python's own ISO parser, a subset of the grammar (held to
        # parse_event_time by a differential test).
        try:
            when = datetime.fromisoformat(ts if body != 27 else ts[:26] + ts[27:])
            when = when.astimezone(UTC) if when.utcoffset() else when.replace(tzinfo=UTC)
        except (ValueError, OverflowError):  # e.g. year 1 at +01:00 is before year 1 UTC
            return None
    else:
        got = parse_event_time(ts)
        if type(got) is str:
            return None
        when = got  # type: ignore[assignment]
    return when if _FIRST_YEAR <= when.year < _END_YEAR else None


def _fast_one(value: Any) -> Judged | None:
    """:func:`judge_many` of one value, without the window (None: the full gate decides)."""
    if type(value) is not bytes:
        return None
    if not value.isascii() or b"\\" in value or b"\x7f" in value:
        return None
    return _fast_decoded(value)


def _fast_decoded(raw: bytes) -> Judged | None:
    if len(raw) > MAX_BODY_BYTES or raw.count(b'"') != _QUOTES:
        return None
    try:
        live = _decode_pascal(raw) if b'"SensorId"' in raw else _decode_camel(raw)
    except msgspec.DecodeError:
        return None
    when = _fast_time(live.timestamp)
    if when is None or live.sensor_id.isspace():
        return None
    temperature, humidity = live.temperature, live.humidity
    if type(temperature) is not float or type(humidity) is not float:
        return None
    live.timestamp = when
    return live, (when - EPOCH) // ONE_US


def judge_many(values: Iterable[Any], record_ms: Sequence[int] | None = None, *,
               now_us: int | None = None, accept: EventTimeWindow | None = None
               ) -> list[Judged | InvalidReading]:
    """:func:`judge` of each value (with its record time), in one call: the hot loops'.

    Every well-formed record — printable ASCII without escapes, the five fields once in
    PascalCase or camelCase, an ISO-8601 timestamp — is decoded by msgspec straight into a
    light :class:`~sensorlib.model.events.LiveReading` with the range checks inside msgspec;
    everything else (and every refusal) is :func:`judge`'s. Same verdicts, same values.
    """
    values = list(values)
    times = record_ms if record_ms is not None else [-1] * len(values)
    if now_us is None:
        now_us = (datetime.now(UTC) - EPOCH) // ONE_US
    out: list[Judged | InvalidReading] = []
    append = out.append
    pascal, camel = _decode_pascal, _decode_camel
    from_iso, slow_time, epoch, one_us = datetime.fromisoformat, _fast_time, EPOCH, ONE_US
    max_bytes, quotes, first_year, end_year = MAX_BODY_BYTES, _QUOTES, _FIRST_YEAR, _END_YEAR
    low = high = 0
    if accept is not None:
        low, high = accept.bounds_us(0)
    # Printable ASCII only (JSON refuses raw control characters in strings; DEL is tested),
    # no escapes: no invisible, bidi or separator character can hide in a field. Checked
    # over all the values at once when they pass together (the usual case).
    try:
        every = b"".join(values)
        clean = every.isascii() and b"\\" not in every and b"\x7f" not in every
    except TypeError:  # a tombstone or text among them
        clean = False
    for raw, at in zip(values, times, strict=True):
        try:
            if not clean and (type(raw) is not bytes or not raw.isascii() or b"\\" in raw
                              or b"\x7f" in raw):
                raise _Slow
            if len(raw) > max_bytes or raw.count(b'"') != quotes:
                raise _Slow
            live = pascal(raw) if b'"SensorId"' in raw else camel(raw)
            ts = live.timestamp
            if ts[-1] != "Z" and ts[-6:] == "+00:00":  # Python's isoformat() of UTC
                ts = ts[:-6] + "Z"
            size = len(ts)
            if (size in (20, 27, 28) and ts[-1] == "Z" and ts[4:17:3] == "--T::"
                    and (size == 20 or ts[19] == ".") and (size != 28 or ts[26] in _DIGITS)):
                when = from_iso(ts if size != 28 else ts[:26] + "Z")
            else:
                when = slow_time(ts)
                if when is None:
                    raise _Slow
            if not first_year <= when.year < end_year or live.sensor_id.isspace():
                raise _Slow
        except Exception:  # noqa: BLE001 - _Slow, or anything odd: the full gate decides
            append(judge(raw, at, now_us=now_us, accept=accept))
            continue
        us = (when - epoch) // one_us
        if accept is not None:
            ref = at * 1000 if at >= 0 else now_us
            if not ref + low <= us <= ref + high:
                append(InvalidReading([accept.error_us(us, ref)]))
                continue
        live.timestamp = when
        append((live, us))
    return out


class _Slow(Exception):
    """Not a fast-form record: the full gate decides."""
