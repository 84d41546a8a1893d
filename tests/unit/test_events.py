"""Reading and Alert records: validation, the wire format, alert ids and status (pure)."""

from __future__ import annotations

import doctest
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensorlib.model import events
from sensorlib.model.events import (
    Alert,
    Reading,
    alert_id,
    new_reading,
    parse_alert,
    parse_reading,
    status_of,
)
from sensorlib.model.limits import MAX_BODY_BYTES
from sensorlib.model.rejections import FieldError, InvalidReading
from sensorlib.model.times import format_timestamp

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
GOOD = {"sensorId": "sensor-01", "temperature": 23.4, "humidity": 57.9,
        "location": "Warehouse A", "timestamp": "2026-01-01T12:00:00Z"}


def body(**changes: object) -> bytes:
    """GOOD with some keys changed (a value of ... removes the key)."""
    data = {k: v for k, v in {**GOOD, **changes}.items() if v is not ...}
    return json.dumps(data).encode()


def fields_of(raw: object) -> list[str]:
    with pytest.raises(InvalidReading) as info:
        parse_reading(raw)  # type: ignore[arg-type]
    return [e.field for e in info.value.errors]


def test_the_samples_curl_example_parses() -> None:
    r = parse_reading(body())
    assert r == Reading(sensor_id="sensor-01", temperature=23.4, humidity=57.9,
                        location="Warehouse A", timestamp=T0)
    assert r.timestamp.tzinfo is UTC


def test_pascal_case_and_dotnet_seven_digit_fractions_are_accepted() -> None:
    raw = json.dumps({"SensorId": "sensor-02", "Temperature": 41, "Humidity": 50,
                      "Location": "Dock", "Timestamp": "2026-01-01T12:00:00.1234567Z"})
    r = parse_reading(raw)
    assert (r.sensor_id, r.temperature, r.humidity, r.location) == ("sensor-02", 41.0, 50.0, "Dock")
    assert r.timestamp == T0.replace(microsecond=123456)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-01T12:00:00.1234567+00:00", T0.replace(microsecond=123456)),
    ("2026-01-01T14:00:00+02:00", T0),
    ("2026-01-01T12:00:00", T0),  # naive: taken as UTC
    ("2026-01-01T12:00:00.5Z", T0.replace(microsecond=500000)),
])
def test_timestamps_become_utc(text: str, expected: datetime) -> None:
    r = parse_reading(body(timestamp=text))
    assert r.timestamp == expected and r.timestamp.tzinfo is UTC


def test_wire_format_is_the_net_producers_pascal_case_with_z_timestamps() -> None:
    r = parse_reading(body(timestamp="2026-01-01T12:00:00.000001Z"))
    camel = {**GOOD, "timestamp": "2026-01-01T12:00:00.000001Z"}
    wire = json.loads(r.to_json())
    # Exactly the keys the reference's consumers read: event['SensorId'], reading.Temperature.
    assert list(wire) == ["SensorId", "Temperature", "Humidity", "Location", "Timestamp"]
    assert wire == {k[0].upper() + k[1:]: v for k, v in camel.items()}
    assert r.to_dict() == camel  # the HTTP APIs speak camelCase
    assert parse_reading(r.to_json()) == r == parse_reading(json.dumps(camel))


def test_location_is_optional_and_null_means_empty() -> None:
    assert parse_reading(body(location=...)).location == ""
    assert parse_reading(body(location=None)).location == ""


def test_missing_timestamp_means_now_when_now_is_given() -> None:
    now = datetime(2026, 5, 5, 5, 5, 5, 5, tzinfo=UTC)
    assert parse_reading(body(timestamp=...), now=now).timestamp == now
    without = {k: v for k, v in GOOD.items() if k != "timestamp"}
    assert parse_reading(without, now=now).timestamp == now
    with pytest.raises(InvalidReading, match="timestamp: required"):
        parse_reading(body(timestamp=...))


def test_missing_timestamp_with_now_still_reports_other_errors() -> None:
    with pytest.raises(InvalidReading) as info:
        parse_reading(body(timestamp=..., humidity=101), now=T0)
    assert [e.field for e in info.value.errors] == ["humidity"]


BAD = [
    ("missing sensorId", body(sensorId=...), "sensorId"),
    ("null sensorId", body(sensorId=None), "sensorId"),
    ("empty sensorId", body(sensorId=""), "sensorId"),
    ("blank sensorId", body(sensorId="   "), "sensorId"),
    ("65-char sensorId", body(sensorId="x" * 65), "sensorId"),
    ("control char in sensorId", body(sensorId="sensor\x07"), "sensorId"),
    ("DEL in sensorId", body(sensorId="sensor\x7f"), "sensorId"),
    ("numeric sensorId", body(sensorId=1), "sensorId"),
    ("string temperature", body(temperature="42"), "temperature"),
    ("bool temperature", body(temperature=True), "temperature"),
    ("null humidity", body(humidity=None), "humidity"),
    ("missing humidity", body(humidity=...), "humidity"),
    ("NaN", b'{"sensorId": "s", "temperature": NaN, "humidity": 1, "timestamp": "2026-01-01"}',
     "temperature"),
    ("Infinity", (b'{"sensorId": "s", "temperature": 1, "humidity": Infinity,'
                 b' "timestamp": "2026-01-01"}'), "humidity"),
    ("-Infinity", (b'{"sensorId": "s", "temperature": -Infinity, "humidity": 1,'
                  b' "timestamp": "2026-01-01"}'), "temperature"),
    ("humidity 101", body(humidity=101), "humidity"),
    ("humidity -1", body(humidity=-1), "humidity"),
    ("temperature 201", body(temperature=201), "temperature"),
    ("temperature -101", body(temperature=-101), "temperature"),
    ("bad timestamp", body(timestamp="yesterday"), "timestamp"),
    ("impossible date", body(timestamp="2026-02-30T00:00:00Z"), "timestamp"),
    ("location too long", body(location="x" * 257), "location"),
    ("control char in location", body(location="a\nb"), "location"),
    ("list body", b"[1, 2]", "body"),
    ("string body", b'"hello"', "body"),
    ("not JSON", b"\x00\xffnot json", "body"),
    ("truncated JSON", b'{"sensorId": "s"', "body"),
    ("empty body", b"", "body"),
    ("over 64 KiB", body(location="x" * 10) + b" " * MAX_BODY_BYTES, "body"),
]


@pytest.mark.parametrize(("raw", "field"), [(raw, field) for _, raw, field in BAD],
                         ids=[name for name, _, _ in BAD])
def test_bad_readings_are_rejected_naming_the_field(raw: bytes, field: str) -> None:
    assert field in fields_of(raw)
    assert field in fields_of(raw.decode("utf-8", "replace"))


def test_limits_are_inclusive() -> None:
    for changes in ({"humidity": 0}, {"humidity": 100}, {"temperature": -100},
                    {"temperature": 200}, {"sensorId": "x" * 64}, {"location": "y" * 256}):
        parse_reading(body(**changes))
    assert len(body()) < MAX_BODY_BYTES


def test_every_error_is_reported_readably() -> None:
    with pytest.raises(InvalidReading) as info:
        parse_reading(body(sensorId="", temperature="42", humidity=120))
    exc = info.value
    assert exc.errors == [
        FieldError("sensorId", "must not be empty"),
        FieldError("temperature", 'must be a number, not "42"'),
        FieldError("humidity", "must be between 0 and 100 (got 120.0)"),
    ]
    assert str(exc).startswith("sensorId: must not be empty; temperature:")
    assert isinstance(exc, ValueError)


def test_reasons_say_what_was_wrong() -> None:
    def reason(raw: bytes) -> str:
        with pytest.raises(InvalidReading) as info:
            parse_reading(raw)
        return info.value.errors[0].reason

    assert reason(body(sensorId="x" * 65)) == "must be at most 64 characters (got 65)"
    assert reason(body(sensorId="a\x00")) == "must not contain control characters (U+0000)"
    assert reason(b'{"sensorId": "s", "temperature": NaN, "humidity": 1,'
                  b' "timestamp": "2026-01-01"}') == "must be a finite number (got NaN)"
    assert reason(b"[]") == "must be a JSON object"
    assert "64 KiB" in reason(b" " * (MAX_BODY_BYTES + 1))


def test_mappings_are_validated_too() -> None:
    assert parse_reading(GOOD) == parse_reading(body())
    assert parse_reading({**GOOD, "timestamp": T0}).timestamp == T0
    with pytest.raises(InvalidReading):
        parse_reading({**GOOD, "humidity": float("nan")})


readings = st.builds(
    Reading,
    sensor_id=st.text(st.characters(exclude_categories=["Cc", "Cs", "Cf", "Zl", "Zp"]),
                      min_size=1, max_size=64).filter(str.strip),
    temperature=st.floats(-100, 200),
    humidity=st.floats(0, 100),
    location=st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"],
                                   exclude_characters="\u202a\u202b\u202c\u202d\u202e"
                                                      "\u2066\u2067\u2068\u2069"), max_size=30),
    timestamp=st.datetimes(datetime(1971, 1, 1), datetime(2199, 1, 1), timezones=st.just(UTC)),
)


@given(readings)
def test_wire_round_trip_is_exact(r: Reading) -> None:
    again = parse_reading(r.to_json())
    assert again == r
    assert again.timestamp.microsecond == r.timestamp.microsecond
    assert parse_reading(r.to_dict()) == r


def test_new_reading_equals_a_validated_one() -> None:
    fast = new_reading("s", 20.0, 50.0, "here", T0)
    assert fast == Reading(sensor_id="s", temperature=20.0, humidity=50.0, location="here",
                           timestamp=T0)
    assert fast.model_copy(update={"temperature": 45.0}).temperature == 45.0
    assert fast.to_json() == parse_reading(fast.to_json()).to_json()


def make_alert(**changes: object) -> Alert:
    values: dict[str, object] = {
        "alert_id": alert_id("s", "threshold", T0), "sensor_id": "s", "location": "L",
        "temperature": 42.5, "humidity": 95.0, "timestamp": T0,
        "detected_at": T0 + timedelta(seconds=1), "rule": "threshold", "severity": "critical",
        "reason": "High temperature: 42.5°C, High humidity: 95.0%"}
    return Alert(**{**values, **changes})  # type: ignore[arg-type]


def test_alert_wire_format_and_round_trip() -> None:
    alert = make_alert()
    wire = json.loads(alert.to_json())
    assert list(wire) == ["alertId", "sensorId", "location", "temperature", "humidity",
                          "timestamp", "detectedAt", "rule", "severity", "reason"]
    assert wire["timestamp"] == "2026-01-01T12:00:00Z"
    assert wire["detectedAt"] == "2026-01-01T12:00:01Z"
    assert parse_alert(alert.to_json()) == alert
    assert parse_alert(alert.to_dict()) == alert
    with pytest.raises(ValueError):
        parse_alert(b'{"alertId": "x"}')
    with pytest.raises(ValueError):
        make_alert(severity="meh")


def test_alert_ids_are_deterministic_and_distinct() -> None:
    assert alert_id("s", "threshold", T0) == alert_id("s", "threshold", T0)
    # The same instant in another zone is the same reading.
    assert alert_id("s", "threshold", T0) == alert_id(
        "s", "threshold", T0.astimezone(timezone(timedelta(hours=2))))
    others = {alert_id("s", "stuck", T0), alert_id("t", "threshold", T0),
              alert_id("s", "threshold", T0 + timedelta(microseconds=1))}
    assert alert_id("s", "threshold", T0) not in others and len(others) == 3


@pytest.mark.parametrize(("temperature", "humidity", "status"), [
    (35.01, 50, "critical"), (20, 90.01, "critical"), (35, 90, "warning"),
    (30.01, 50, "warning"), (20, 80.01, "warning"), (30, 80, "normal"), (-5, 0, "normal"),
])
def test_status_follows_the_samples_colours(temperature: float, humidity: float,
                                            status: str) -> None:
    assert status_of(temperature, humidity) == status


def test_format_timestamp() -> None:
    assert format_timestamp(T0) == "2026-01-01T12:00:00Z"
    assert format_timestamp(datetime(2026, 1, 1, 12)) == "2026-01-01T12:00:00Z"
    assert format_timestamp(T0.replace(microsecond=10)) == "2026-01-01T12:00:00.000010Z"


def test_docstring_examples() -> None:
    assert doctest.testmod(events).failed == 0


# -- hostile input (issue 12) ---------------------------------------------------------------

WINDOW = events.EventTimeWindow(timedelta(days=365), timedelta(minutes=5))
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


@pytest.mark.parametrize("stamp", [
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00", "2100-01-01T00:00:00Z", "1899-12-31T23:59:59Z",
])
def test_extreme_timestamps_are_refused_with_the_allowed_range(stamp: str) -> None:
    with pytest.raises(InvalidReading) as info:
        parse_reading(body(timestamp=stamp), now=NOW, accept=WINDOW)
    (error,) = info.value.errors
    assert error.field == "timestamp"
    assert "years 1900 to 2199" in error.reason or (
        "must lie between 2025-11-29T12:00:00Z and 2026-11-29T12:05:00Z" in error.reason)


def test_the_event_time_window_edges_are_inclusive() -> None:
    for edge in (NOW - timedelta(days=365), NOW + timedelta(minutes=5)):
        assert parse_reading(body(timestamp=format_timestamp(edge)), now=NOW,
                             accept=WINDOW).timestamp == edge
    for outside in (NOW - timedelta(days=365, microseconds=1),
                    NOW + timedelta(minutes=5, microseconds=1)):
        with pytest.raises(InvalidReading, match="SENSORLIB_MAX_PAST"):
            parse_reading(body(timestamp=format_timestamp(outside)), now=NOW, accept=WINDOW)


def test_without_a_window_any_timestamp_in_the_absolute_range_is_a_reading() -> None:
    assert parse_reading(body(timestamp="1900-01-01T00:00:00Z")).timestamp.year == 1900
    assert parse_reading(body(timestamp="2199-12-31T23:59:59Z")).timestamp.year == 2199


@pytest.mark.parametrize("stamp", [0, 1700000000, "1700000000", "0", "1700000000.5", True, 1.5])
def test_epoch_numbers_are_refused_clearly(stamp: object) -> None:
    with pytest.raises(InvalidReading) as info:
        parse_reading(body(timestamp=stamp))
    assert info.value.errors[0].field == "timestamp"
    assert "ISO-8601 date-time" in info.value.errors[0].reason


@pytest.mark.parametrize(("field", "value", "why"), [
    ("sensorId", "\u200b", "invisible or bidi control characters (U+200B)"),
    ("sensorId", "\u200b\u200b", "invisible or bidi control characters (U+200B)"),
    ("sensorId", "evil\u202egnp.exe", "invisible or bidi control characters (U+202E)"),
    ("sensorId", "a\u2028b", "line separators (U+2028)"),
    ("location", "Hall\u2028B", "line separators (U+2028)"),
    ("location", "Hall\u2029B", "paragraph separators (U+2029)"),
    ("location", "Hall \u202eB", "invisible or bidi control characters (U+202E)"),
])
def test_invisible_and_bidi_characters_are_refused(field: str, value: str, why: str) -> None:
    with pytest.raises(InvalidReading) as info:
        parse_reading(body(**{field: value}))
    assert info.value.errors == [FieldError(field, f"must not contain {why}")]


def test_ordinary_unicode_text_is_kept() -> None:
    r = parse_reading(body(location="Kühlhaus 3 — Nord ❄", sensorId="capteur-é"))
    assert (r.location, r.sensor_id) == ("Kühlhaus 3 — Nord ❄", "capteur-é")


@pytest.mark.parametrize("twice", [
    b'"temperature":20,"Temperature":999', b'"temperature":20,"temperature":21',
    b'"temperature":20,"temperature":999', b'"TEMPERATURE":20,"temperature":21',
])
def test_a_field_given_twice_is_refused(twice: bytes) -> None:
    with pytest.raises(InvalidReading) as info:
        parse_reading(b'{"sensorId":"a",' + twice + b',"humidity":2,'
                      b'"timestamp":"2026-01-01T00:00:00Z"}')
    (error,) = info.value.errors
    assert error.field == "temperature" and "given twice" in error.reason


def test_a_value_spelled_like_a_key_is_not_a_duplicate() -> None:
    assert parse_reading(body(location="temperature")).location == "temperature"


def test_a_lone_surrogate_names_its_field() -> None:
    raw = body().replace(b'"sensor-01"', b'"\\ud800"')
    with pytest.raises(InvalidReading) as info:
        parse_reading(raw)
    assert info.value.errors[0].field == "sensorId"
    assert "lone UTF-16 surrogate" in info.value.errors[0].reason
