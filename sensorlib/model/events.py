"""The Reading and Alert records: parsing, validation and the JSON wire formats.

Wire formats (see the README's "Wire format"):

- readings on ``sensor-readings`` are written in the reference .NET producer's PascalCase,
  ``{"SensorId", "Temperature", "Humidity", "Location", "Timestamp"}``, so the reference's
  Python consumer (``event['SensorId']``) and Node dashboard (``reading.SensorId``) read
  sensorlib's readings unchanged; readers accept PascalCase and camelCase (the sample's curl
  example and sensorlib history written before 0.2), never both spellings of one field;
- alerts on ``sensor-alerts`` and every HTTP answer are camelCase (the reference's own
  alert shape and its REST APIs).

A reading's event time must lie in an accepted window around the receiver's clock
(:class:`EventTimeWindow`: by default at most a year old and at most five minutes ahead):
the HTTP API judges it by the wall clock, the processor by the record's Kafka timestamp.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.model.limits import (
    HUMIDITY_RANGE,
    MAX_LOCATION,
    MAX_SENSOR_ID,
    TEMPERATURE_RANGE,
    TIMESTAMP_RANGE,
)
from sensorlib.model.rejections import (
    InvalidReading,
    _shown,
)
from sensorlib.model.times import EPOCH, ONE_US, format_timestamp

__all__ = [
    "Alert",
    "LiveReading",
    "Reading",
    "Severity",
    "Status",
    "alert_id",
    "new_alert",
    "new_reading",
    "parse_alert",
    "parse_reading",
    "status_of",
]

Severity = Literal["warning", "critical"]
Status = Literal["critical", "warning", "normal"]

# Rust-regex classes, checked inside pydantic-core so the happy path stays out of Python.
# A sensorId is an identifier: no control (Cc), format (Cf: zero-width, bidi overrides) or
# line/paragraph separator characters, and not only blanks. A location is free text: no
# control characters, bidi embeddings/overrides/isolates or line/paragraph separators.
_ID_BAD = r"\p{Cc}\p{Cf}\p{Zl}\p{Zp}"
_NOT_BLANK = rf"^[^{_ID_BAD}]*[^{_ID_BAD}\s][^{_ID_BAD}]*$"
_TEXT_BAD = r"\p{Cc}\p{Zl}\p{Zp}\x{202A}-\x{202E}\x{2066}-\x{2069}"
_NO_CONTROL = rf"^[^{_TEXT_BAD}]*$"


def _to_utc(value: datetime) -> datetime:
    # Naive timestamps are taken as UTC; other offsets are converted, so every
    # Reading compares and serialises the same way (always "...Z").
    given = value
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        value = TIMESTAMP_RANGE[0] - timedelta(days=1)
    low, high = TIMESTAMP_RANGE
    if not low <= value < high:
        raise ValueError(f"must be in the years {low.year} to {high.year - 1} "
                         f"(got {given.isoformat()})")
    return value


def _iso_text(value: Any) -> Any:
    # Epoch numbers are not timestamps here: 0 or "1700000000" would silently mean 1970 or
    # 2023 (pydantic reads digit strings as Unix time). An ISO-8601 date-time is YYYY-...
    if isinstance(value, str):
        if len(value) < 11 or value[4:5] != "-":
            raise ValueError("must be an ISO-8601 date-time such as 2026-01-01T12:00:00Z "
                             f"(epoch numbers are not accepted), not {_shown(value)}")
    elif not isinstance(value, datetime):  # pydantic reports ValueError, not TypeError
        raise ValueError(  # noqa: TRY004
            f"must be an ISO-8601 date-time string such as 2026-01-01T12:00:00Z, not {_shown(value)}")
    return value


def _null_is_empty(value: Any) -> Any:
    return "" if value is None else value


def _wire(camel: str) -> Any:
    """Accept the camelCase key and the PascalCase one the .NET producer writes."""
    return AliasChoices(camel, camel[0].upper() + camel[1:])


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]
ReadingTime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_to_utc)]


class _Record(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        allow_inf_nan=False,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    def to_json(self) -> bytes:
        """The UTF-8 JSON wire format (PascalCase readings, camelCase alerts)."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True)

    def to_dict(self) -> dict[str, Any]:
        """The wire format as a dict (timestamps as ISO-8601 ``Z`` strings)."""
        return self.model_dump(mode="json", by_alias=True)


class Reading(_Record):
    """One measurement of one sensor, as it travels on ``sensor-readings``.

    :meth:`to_json` writes the reference .NET producer's PascalCase; :meth:`to_dict` is
    the camelCase shape of the HTTP APIs.

    >>> r = Reading(sensor_id="sensor-01", temperature=23.4, humidity=57.9,
    ...             location="Warehouse A", timestamp=datetime(2026, 1, 1, 12, tzinfo=UTC))
    >>> r.to_json()
    b'{"SensorId":"sensor-01","Temperature":23.4,"Humidity":57.9,"Location":"Warehouse A","Timestamp":"2026-01-01T12:00:00Z"}'
    >>> r.to_dict()["sensorId"]
    'sensor-01'
    """

    sensor_id: Annotated[
        str,
        Field(strict=True, min_length=1, max_length=MAX_SENSOR_ID, pattern=_NOT_BLANK,
              validation_alias=_wire("sensorId"), serialization_alias="SensorId"),
    ]
    temperature: Annotated[
        float,
        Field(strict=True, ge=TEMPERATURE_RANGE[0], le=TEMPERATURE_RANGE[1],
              validation_alias=_wire("temperature"), serialization_alias="Temperature"),
    ]
    humidity: Annotated[
        float,
        Field(strict=True, ge=HUMIDITY_RANGE[0], le=HUMIDITY_RANGE[1],
              validation_alias=_wire("humidity"), serialization_alias="Humidity"),
    ]
    location: Annotated[
        str,
        BeforeValidator(_null_is_empty),
        Field(strict=True, max_length=MAX_LOCATION, pattern=_NO_CONTROL,
              validation_alias=_wire("location"), serialization_alias="Location"),
    ] = ""
    timestamp: Annotated[
        ReadingTime,
        Field(validation_alias=_wire("timestamp"), serialization_alias="Timestamp"),
    ]

    def to_dict(self) -> dict[str, Any]:
        """The camelCase shape of the HTTP APIs (timestamp as an ISO-8601 ``Z`` string)."""
        return {"sensorId": self.sensor_id, "temperature": self.temperature,
                "humidity": self.humidity, "location": self.location,
                "timestamp": format_timestamp(self.timestamp)}


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
    #: The version of the rule settings (the ``sensor-rules`` table) in force when the
    #: reading was judged; None (left out of the JSON) when the settings were given in code.
    rules_version: Annotated[str | None, Field(validation_alias=_wire("rulesVersion"),
                                               serialization_alias="rulesVersion")] = None

    def to_json(self) -> bytes:
        """The UTF-8 JSON wire format (camelCase; ``rulesVersion`` only when set)."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True,
                                                   exclude_none=self.rules_version is None)

    def to_dict(self) -> dict[str, Any]:
        """The wire format as a dict (timestamps as ISO-8601 ``Z`` strings; ``rulesVersion``
        only when set)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=self.rules_version is None)


# -- parsing ------------------------------------------------------------------------------


def parse_reading(raw: bytes | str | Mapping[str, Any], *, now: datetime | None = None,
                  accept: EventTimeWindow | None = None) -> Reading:
    """Validate one reading from its wire bytes (or text, or an already decoded mapping).

    The raising form of the one gate, :func:`sensorlib.model.gate.judge` (see there for the
    rules): camelCase and PascalCase keys (each field once: ``temperature`` together with
    ``Temperature`` is refused), fractional seconds of any length (the .NET producer writes
    7 digits; we keep microseconds), JSON numbers that are finite, an ISO-8601 date-time
    (epoch numbers are refused). A missing timestamp means ``now`` when given (the HTTP API
    passes the current time), else it is an error. With ``accept``, the event time must
    also lie in that window around ``now`` (the wall clock when ``now`` is None).

    Raises:
        InvalidReading: naming every bad field (``body`` when it is not a JSON object).

    >>> parse_reading('{"SensorId": "s1", "Temperature": 21, "Humidity": 40,'
    ...               ' "Timestamp": "2026-01-01T12:00:00.1234567Z"}').timestamp.microsecond
    123456
    """
    from sensorlib.model.gate import judge, to_reading

    got = judge(raw, -1, now_us=None if now is None else (now - EPOCH) // ONE_US,
                accept=accept, now=now)
    if isinstance(got, InvalidReading):
        raise got
    return to_reading(got[0])


class LiveReading(msgspec.Struct, rename="pascal", forbid_unknown_fields=True, gc=False):
    """A canonical reading as the processor's hot path carries it (see :func:`judge_canonical`).

    Has a :class:`Reading`'s five attributes, with the same values :func:`parse_reading`
    gives, at a tenth of a pydantic model's cost to make. The windows and rules read only
    those attributes; alerts and the APIs never see this type.
    """

    # The bounds are checked by msgspec as it decodes (a failure: the full parser decides).
    sensor_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SENSOR_ID)]
    temperature: Annotated[float, msgspec.Meta(ge=TEMPERATURE_RANGE[0], le=TEMPERATURE_RANGE[1])]
    humidity: Annotated[float, msgspec.Meta(ge=HUMIDITY_RANGE[0], le=HUMIDITY_RANGE[1])]
    location: Annotated[str, msgspec.Meta(max_length=MAX_LOCATION)]
    #: The wire text when decoded; the UTC datetime once :func:`judge_canonical` accepts it.
    timestamp: Any



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
_ALERT_NS_BYTES = _ALERT_NAMESPACE.bytes


def alert_id(sensor_id: str, rule: str, timestamp: datetime) -> str:
    """A deterministic alert id: the same reading and rule always give the same id.

    >>> ts = datetime(2026, 1, 1, 12, tzinfo=UTC)
    >>> alert_id("sensor-01", "threshold", ts) == alert_id("sensor-01", "threshold", ts)
    True
    """
    # uuid.uuid5 by hand (the same bytes: SHA-1 of namespace + name, version 5, RFC 4122
    # variant) without its UUID object: half the cost, on every alert.
    digest = bytearray(hashlib.sha1(
        _ALERT_NS_BYTES + f"{sensor_id}|{rule}|{format_timestamp(timestamp)}".encode(),
        usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


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

    For trusted producers in hot loops (the simulator, DataFrame replay, the processor's
    fast path): about ten times cheaper than ``Reading(...)``. ``timestamp`` must be UTC-aware.
    """
    reading = _new(Reading)
    _set(reading, "__dict__", {
        "sensor_id": sensor_id, "temperature": temperature, "humidity": humidity,
        "location": location, "timestamp": timestamp,
    })
    _set(reading, "__pydantic_fields_set__", set(_ALL_READING_FIELDS))
    _set(reading, "__pydantic_extra__", None)
    _set(reading, "__pydantic_private__", None)
    return reading


def new_alert(alert_id: str, sensor_id: str, location: str, temperature: float,
              humidity: float, timestamp: datetime, detected_at: datetime, rule: str,
              severity: Severity, reason: str, rules_version: str | None = None) -> Alert:
    """Build an Alert from values already known to be valid (the detector's), without
    validating them: about ten times cheaper than ``Alert(...)``. Datetimes must be UTC-aware,
    numbers floats."""
    alert = _new(Alert)
    _set(alert, "__dict__", {
        "alert_id": alert_id, "sensor_id": sensor_id, "location": location,
        "temperature": temperature, "humidity": humidity, "timestamp": timestamp,
        "detected_at": detected_at, "rule": rule, "severity": severity, "reason": reason,
        "rules_version": rules_version,
    })
    _set(alert, "__pydantic_fields_set__", set(_ALL_ALERT_FIELDS))
    _set(alert, "__pydantic_extra__", None)
    _set(alert, "__pydantic_private__", None)
    return alert


_new = object.__new__
_set = object.__setattr__
_ALL_READING_FIELDS = frozenset(Reading.model_fields)
_ALL_ALERT_FIELDS = frozenset(Alert.model_fields)
