"""Bulk decoding (sensorlib.replay.decode) agrees with parse_reading: pure, no broker."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorlib.model.events import parse_reading
from sensorlib.model.rejections import InvalidReading
from sensorlib.replay import reader as replay
from sensorlib.replay.decode import (
    ALERT_DTYPES,
    READING_DTYPES,
    decode_alerts,
    decode_readings,
    empty_alerts,
    empty_readings,
)

GOOD = {"sensorId": "sensor-01", "temperature": 23.4, "humidity": 57.9,
        "location": "Warehouse A", "timestamp": "2026-01-01T12:00:00Z"}


def body(**changes: object) -> bytes:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


CASES: list[tuple[str, bytes | None]] = [
    ("good", body()),
    ("pascal", json.dumps({k[0].upper() + k[1:]: v for k, v in GOOD.items()}).encode()),
    ("dotnet fractions", body(timestamp="2026-01-01T12:00:00.1234567Z")),
    ("naive time", body(timestamp="2026-01-01T12:00:00")),
    ("offset time", body(timestamp="2026-01-01T14:00:00+02:00")),
    ("integers", body(temperature=20, humidity=40)),
    ("null location", body(location=None)),
    ("no location", body(location=...)),
    ("extra field", body(extra={"nested": [1, 2]})),
    ("pretty printed", json.dumps(GOOD, indent=2).encode()),
    ("humidity bounds", body(humidity=100)),
    ("temperature bounds", body(temperature=-100)),
    ("garbage", b"\x00\xffnot json"),
    ("truncated", body()[:-5]),
    ("empty", b""),
    ("blank", b"   "),
    ("tombstone", None),
    ("array", b"[1, 2]"),
    ("number", b"42"),
    ("two objects", body() + body()),
    ("humidity high", body(humidity=100.5)),
    ("humidity low", body(humidity=-0.1)),
    ("temperature high", body(temperature=200.1)),
    ("temperature low", body(temperature=-273)),
    ("NaN", body().replace(b"23.4", b"NaN")),
    ("Infinity", body().replace(b"23.4", b"Infinity")),
    ("huge number", body().replace(b"23.4", b"1e400")),
    ("string number", body(temperature="23.4")),
    ("boolean", body(humidity=True)),
    ("missing sensorId", body(sensorId=...)),
    ("null sensorId", body(sensorId=None)),
    ("empty sensorId", body(sensorId="")),
    ("blank sensorId", body(sensorId="   ")),
    ("long sensorId", body(sensorId="s" * 65)),
    ("control sensorId", body(sensorId="sensor\u000701")),
    ("numeric sensorId", body(sensorId=5)),
    ("missing temperature", body(temperature=...)),
    ("bad timestamp", body(timestamp="yesterday-ish")),
    ("missing timestamp", body(timestamp=...)),
    ("control location", body(location="A\nB")),
    ("too large", body(location="x" * 70_000)),
]


@pytest.mark.parametrize(("name", "raw"), CASES, ids=[c[0] for c in CASES])
def test_validity_matches_parse_reading(name: str, raw: bytes | None) -> None:
    frame = decode_readings([raw])
    assert len(frame) == 1
    try:
        expected = parse_reading(raw) if raw is not None else None
    except InvalidReading:
        expected = None
    reason = frame["_reason"].iloc[0]
    if expected is None:
        assert reason is not None, f"{name}: accepted but parse_reading rejects it"
        return
    assert reason is None, f"{name}: rejected ({reason}) but parse_reading accepts it"
    row = frame.iloc[0]
    assert row["sensorId"] == expected.sensor_id
    assert row["temperature"] == expected.temperature
    assert row["humidity"] == expected.humidity
    assert row["location"] == expected.location
    assert row["timestamp"].to_pydatetime() == expected.timestamp


def test_one_bad_record_costs_only_its_row() -> None:
    values = [body(sensorId=f"s{i}") for i in range(1000)]
    values[500] = b"{not json"
    values[700] = body(humidity=150)
    frame = decode_readings(values)
    bad = frame["_reason"].notna()
    assert list(frame.index[bad]) == [500, 700]
    assert frame.loc[~bad, "sensorId"].tolist() == [f"s{i}" for i in range(1000) if i not in (500, 700)]
    assert frame["_reason"][700] == "humidity: must be between 0 and 100 (got 150.0)"  # the gate's


def test_mixed_spellings_in_one_block() -> None:
    camel = body(sensorId="camel")
    pascal = json.dumps({"SensorId": "pascal", "Temperature": 1, "Humidity": 2,
                         "Timestamp": "2026-01-01T00:00:00Z"}).encode()
    frame = decode_readings([camel, pascal, camel])
    assert frame["sensorId"].tolist() == ["camel", "pascal", "camel"]
    assert frame["_reason"].isna().all()


def test_types() -> None:
    frame = decode_readings([body(), body(sensorId="b")]).drop(columns="_reason")
    expected = {k: v for k, v in READING_DTYPES.items() if k not in ("partition", "offset")}
    assert {c: str(t) for c, t in frame.dtypes.items()} == expected
    assert {c: str(t) for c, t in empty_readings().dtypes.items()} == READING_DTYPES


def test_alerts_decode_and_validate() -> None:
    alert = {"alertId": "a1", "sensorId": "s", "location": "L", "temperature": 40.0,
             "humidity": 50.0, "timestamp": "2026-01-01T00:00:00Z",
             "detectedAt": "2026-01-01T00:00:01Z", "rule": "threshold", "severity": "critical",
             "reason": "High temperature: 40.0°C"}
    bad = {**alert, "severity": "meh"}
    frame = decode_alerts([json.dumps(alert).encode(), json.dumps(bad).encode(), b"x"])
    assert frame["_reason"].tolist()[0] is None
    assert frame["_reason"][1].startswith("severity")
    assert frame["_reason"][2] == "body: not valid JSON"
    kinds = {c: str(t) for c, t in frame.drop(columns="_reason").dtypes.items()}
    assert kinds == {k: v for k, v in ALERT_DTYPES.items() if k not in ("partition", "offset")}


@settings(max_examples=150, deadline=None)
@given(temperature=st.floats(allow_nan=True, allow_infinity=True, width=64),
       humidity=st.floats(allow_nan=True, allow_infinity=True, width=64),
       sensor=st.text(max_size=70))
def test_numbers_and_ids_agree_with_parse_reading(temperature: float, humidity: float,
                                                  sensor: str) -> None:
    raw = json.dumps({**GOOD, "sensorId": sensor, "temperature": temperature,
                      "humidity": humidity}).encode()
    try:
        parse_reading(raw)
        valid = True
    except InvalidReading:
        valid = False
    reason = decode_readings([raw])["_reason"].iloc[0]
    assert (reason is None) == valid, (raw, reason)
    if valid:
        assert math.isfinite(temperature)


def test_replay_reexports_the_decoders() -> None:
    """``sensorlib.replay.reader`` keeps serving the names notebooks import from it."""
    assert replay.decode_readings is decode_readings
    assert replay.decode_alerts is decode_alerts
    assert replay.empty_readings is empty_readings
    assert replay.empty_alerts is empty_alerts
    assert replay.READING_DTYPES is READING_DTYPES
    assert replay.ALERT_DTYPES is ALERT_DTYPES
