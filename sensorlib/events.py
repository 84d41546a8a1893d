"""The Reading and Alert records: parsing, validation and the camelCase JSON wire format."""

from __future__ import annotations

import json
import math
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

__all__ = [
    "MAX_BODY_BYTES",
    "Alert",
    "FieldError",
    "InvalidReading",
    "Reading",
    "Severity",
    "Status",
    "alert_id",
    "format_timestamp",
    "new_reading",
    "parse_alert",
    "parse_reading",
    "status_of",
]

#: Largest accepted reading body (bytes of UTF-8 JSON).
MAX_BODY_BYTES = 65536
MAX_SENSOR_ID = 64
MAX_LOCATION = 256
TEMPERATURE_RANGE = (-100.0, 200.0)
HUMIDITY_RANGE = (0.0, 100.0)

Severity = Literal["warning", "critical"]
Status = Literal["critical", "warning", "normal"]

# Rust-regex classes, checked inside pydantic-core so the happy path stays out of Python.
_NO_CONTROL = r"^[^\p{Cc}]*$"
_NOT_BLANK = r"^[^\p{Cc}]*[^\p{Cc}\s][^\p{Cc}]*$"


def _to_utc(value: datetime) -> datetime:
    # Naive timestamps are taken as UTC; other offsets are converted, so every
    # Reading compares and serialises the same way (always "...Z").
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _null_is_empty(value: Any) -> Any:
    return "" if value is None else value


def _wire(camel: str) -> Any:
    """Accept the camelCase key and the PascalCase one the .NET producer writes."""
    return AliasChoices(camel, camel[0].upper() + camel[1:])


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]


def format_timestamp(value: datetime) -> str:
    """ISO-8601 UTC with a trailing ``Z`` (microseconds only when non-zero).

    >>> format_timestamp(datetime(2026, 1, 1, 12, tzinfo=UTC))
    '2026-01-01T12:00:00Z'
    """
    return _to_utc(value).isoformat().replace("+00:00", "Z")


class _Record(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        allow_inf_nan=False,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    def to_json(self) -> bytes:
        """The camelCase UTF-8 JSON wire format."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True)

    def to_dict(self) -> dict[str, Any]:
        """The wire format as a dict (timestamps as ISO-8601 ``Z`` strings)."""
        return self.model_dump(mode="json", by_alias=True)


class Reading(_Record):
    """One measurement of one sensor, as it travels on ``sensor-readings``.

    >>> r = Reading(sensor_id="sensor-01", temperature=23.4, humidity=57.9,
    ...             location="Warehouse A", timestamp=datetime(2026, 1, 1, 12, tzinfo=UTC))
    >>> r.to_json()
    b'{"sensorId":"sensor-01","temperature":23.4,"humidity":57.9,"location":"Warehouse A","timestamp":"2026-01-01T12:00:00Z"}'
    """

    sensor_id: Annotated[
        str,
        Field(strict=True, min_length=1, max_length=MAX_SENSOR_ID, pattern=_NOT_BLANK,
              validation_alias=_wire("sensorId"), serialization_alias="sensorId"),
    ]
    temperature: Annotated[
        float,
        Field(strict=True, ge=TEMPERATURE_RANGE[0], le=TEMPERATURE_RANGE[1],
              validation_alias=_wire("temperature"), serialization_alias="temperature"),
    ]
    humidity: Annotated[
        float,
        Field(strict=True, ge=HUMIDITY_RANGE[0], le=HUMIDITY_RANGE[1],
              validation_alias=_wire("humidity"), serialization_alias="humidity"),
    ]
    location: Annotated[
        str,
        BeforeValidator(_null_is_empty),
        Field(strict=True, max_length=MAX_LOCATION, pattern=_NO_CONTROL,
              validation_alias=_wire("location"), serialization_alias="location"),
    ] = ""
    timestamp: Annotated[
        UtcDatetime,
        Field(validation_alias=_wire("timestamp"), serialization_alias="timestamp"),
    ]


class Alert(_Record):
    """An anomaly found in a sensor's readings, as it travels on ``sensor-alerts``.

    ``timestamp`` is the triggering reading's event time; ``detected_at`` is when the
    detector saw it. ``alert_id`` depends only on sensor, rule and ``timestamp``.
    """

    alert_id: Annotated[str, Field(validation_alias=_wire("alertId"), serialization_alias="alertId")]
    sensor_id: Annotated[str, Field(validation_alias=_wire("sensorId"), serialization_alias="sensorId")]
    location: Annotated[str, Field(validation_alias=_wire("location"), serialization_alias="location")] = ""
    temperature: Annotated[float, Field(validation_alias=_wire("temperature"),
                                        serialization_alias="temperature")]
    humidity: Annotated[float, Field(validation_alias=_wire("humidity"),
                                     serialization_alias="humidity")]
    timestamp: Annotated[UtcDatetime, Field(validation_alias=_wire("timestamp"),
                                            serialization_alias="timestamp")]
    detected_at: Annotated[UtcDatetime, Field(validation_alias=_wire("detectedAt"),
                                              serialization_alias="detectedAt")]
    rule: Annotated[str, Field(validation_alias=_wire("rule"), serialization_alias="rule")]
    severity: Annotated[Severity, Field(validation_alias=_wire("severity"),
                                        serialization_alias="severity")]
    reason: Annotated[str, Field(validation_alias=_wire("reason"), serialization_alias="reason")]


# -- errors -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a reading was rejected; ``field`` is the camelCase wire name."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class InvalidReading(ValueError):
    """A reading failed validation; ``errors`` says which fields and why.

    >>> try:
    ...     parse_reading(b'{"sensorId": "s", "temperature": 20, "humidity": 120,'
    ...                   b' "timestamp": "2026-01-01T12:00:00Z"}')
    ... except InvalidReading as exc:
    ...     print(exc)
    humidity: must be between 0 and 100 (got 120.0)
    """

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


_WIRE_NAMES = {
    alias: camel
    for camel in ("sensorId", "temperature", "humidity", "location", "timestamp")
    for alias in (camel, camel[0].upper() + camel[1:])
} | {"sensor_id": "sensorId"}

_RANGES = {"temperature": TEMPERATURE_RANGE, "humidity": HUMIDITY_RANGE}


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (bool, str)) or value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _non_finite(value: float) -> str:
    # Spelled as the JSON literals Python's json module writes and reads.
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _number(value: float) -> str:
    return f"{value:g}"


def _reason(field: str, kind: str, value: Any, message: str) -> str:
    """A readable reason for one pydantic error (only on the rejection path)."""
    if kind == "missing" or value is None:
        return "required"
    if field in _RANGES and kind in ("greater_than_equal", "less_than_equal"):
        low, high = _RANGES[field]
        return f"must be between {_number(low)} and {_number(high)} (got {float(value)!r})"
    if kind == "finite_number":
        return f"must be a finite number (got {_non_finite(value)})"
    if kind == "float_type":
        return f"must be a number, not {_shown(value)}"
    if kind == "string_type":
        return f"must be a string, not {_shown(value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        limit = MAX_SENSOR_ID if field == "sensorId" else MAX_LOCATION
        return f"must be at most {limit} characters (got {len(value)})"
    if kind == "string_pattern_mismatch":
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            return "must not contain control characters"
        return "must not be blank"
    if field == "timestamp":
        return f"not an ISO-8601 timestamp: {_shown(value)}"
    return message


def _errors_of(exc: ValidationError) -> list[FieldError]:
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        if not loc:  # the body itself: not JSON, or not an object
            reason = ("must be a JSON object" if err["type"] == "model_type"
                      else err["msg"].replace("Invalid JSON", "not valid JSON"))
            out.append(FieldError("body", reason))
            continue
        field = _WIRE_NAMES.get(str(loc[0]), str(loc[0]))
        out.append(FieldError(field, _reason(field, err["type"], err.get("input"), err["msg"])))
    return out


def _missing_timestamp(exc: ValidationError) -> bool:
    return any(e["type"] == "missing" and e["loc"][0] in ("timestamp", "Timestamp")
               for e in exc.errors(include_url=False))


def _body_too_large(size: int) -> InvalidReading:
    return InvalidReading([FieldError(
        "body", f"larger than 64 KiB ({MAX_BODY_BYTES} bytes): got {size} bytes")])


def _validate_mapping(data: Mapping[str, Any], now: datetime | None) -> Reading:
    if now is not None and not any(k in data for k in ("timestamp", "Timestamp")):
        data = {**data, "timestamp": now}
    return Reading.model_validate(data)


# -- parsing ------------------------------------------------------------------------------


def parse_reading(raw: bytes | str | Mapping[str, Any], *, now: datetime | None = None) -> Reading:
    """Validate one reading from its wire bytes (or text, or an already decoded mapping).

    Accepts camelCase and PascalCase keys and fractional seconds of any length (the
    .NET producer writes 7 digits; we keep microseconds). Numbers must be JSON numbers
    (``"42"`` and ``true`` are rejected) and finite. A missing timestamp means ``now``
    when given (the HTTP API passes the current time), else it is an error.

    Raises:
        InvalidReading: naming every bad field (``body`` when it is not a JSON object).

    >>> parse_reading('{"SensorId": "s1", "Temperature": 21, "Humidity": 40,'
    ...               ' "Timestamp": "2026-01-01T12:00:00.1234567Z"}').timestamp.microsecond
    123456
    """
    if isinstance(raw, Mapping):
        try:
            return _validate_mapping(raw, now)
        except ValidationError as exc:
            raise InvalidReading(_errors_of(exc)) from None
    size = len(raw) if isinstance(raw, (bytes, bytearray)) else len(raw.encode("utf-8", "replace"))
    if size > MAX_BODY_BYTES:
        raise _body_too_large(size)
    try:
        # One pass in pydantic-core: JSON decoding and validation together.
        return Reading.model_validate_json(raw)
    except ValidationError as exc:
        if now is None or not _missing_timestamp(exc):
            raise InvalidReading(_errors_of(exc)) from None
    try:  # rare path (HTTP without a timestamp): decode once more and fill in "now"
        return _validate_mapping(json.loads(raw), now)
    except ValidationError as exc:
        raise InvalidReading(_errors_of(exc)) from None


def parse_alert(raw: bytes | str | Mapping[str, Any]) -> Alert:
    """Read an alert from its wire format.

    Raises:
        pydantic.ValidationError: (a ``ValueError``) when it is not an alert.
    """
    if isinstance(raw, Mapping):
        return Alert.model_validate(raw)
    return Alert.model_validate_json(raw)


# -- derived values ------------------------------------------------------------------------

_ALERT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://sensorlib/alerts")


def alert_id(sensor_id: str, rule: str, timestamp: datetime) -> str:
    """A deterministic alert id: the same reading and rule always give the same id.

    >>> ts = datetime(2026, 1, 1, 12, tzinfo=UTC)
    >>> alert_id("sensor-01", "threshold", ts) == alert_id("sensor-01", "threshold", ts)
    True
    """
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{sensor_id}|{rule}|{format_timestamp(timestamp)}"))


def status_of(temperature: float, humidity: float) -> Status:
    """The dashboard status colour, with the reference sample's rules.

    >>> status_of(36.0, 50.0), status_of(31.0, 50.0), status_of(20.0, 85.0), status_of(20.0, 50.0)
    ('critical', 'warning', 'warning', 'normal')
    """
    if temperature > 35 or humidity > 90:
        return "critical"
    if temperature > 30 or humidity > 80:
        return "warning"
    return "normal"


def new_reading(
    sensor_id: str, temperature: float, humidity: float, location: str, timestamp: datetime
) -> Reading:
    """Build a Reading from values already known to be valid, without validating them.

    For trusted producers in hot loops (the simulator, DataFrame replay): about ten
    times cheaper than ``Reading(...)``. ``timestamp`` must be UTC-aware.
    """
    reading = object.__new__(Reading)
    object.__setattr__(reading, "__dict__", {
        "sensor_id": sensor_id, "temperature": temperature, "humidity": humidity,
        "location": location, "timestamp": timestamp,
    })
    object.__setattr__(reading, "__pydantic_fields_set__", set(_ALL_READING_FIELDS))
    object.__setattr__(reading, "__pydantic_extra__", None)
    object.__setattr__(reading, "__pydantic_private__", None)
    return reading


_ALL_READING_FIELDS = frozenset(Reading.model_fields)
