"""The processor's fast path for canonical readings agrees with the full parser, always.

``parse_reading`` of wire bytes first tries :func:`sensorlib.events.parse_canonical` (msgspec);
a text argument always takes the full pydantic parser. For any bytes, the fast path must
either decline (None) or give exactly the full parser's Reading — never accept what the
full parser refuses.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sensorlib.events import (
    InvalidReading,
    Reading,
    judge_canonical,
    judge_canonical_many,
    parse_canonical,
    parse_reading,
)
from sensorlib.times import to_us

CANONICAL = (b'{"SensorId":"sensor-01","Temperature":22.05,"Humidity":55.17,'
             b'"Location":"Warehouse A","Timestamp":"2026-11-29T16:44:20.0729871Z"}')


def full(raw: bytes) -> Reading | None:
    """The full parser's verdict (text input never takes the fast path)."""
    try:
        return parse_reading(raw.decode("utf-8", "surrogatepass"))
    except (InvalidReading, UnicodeDecodeError):
        return None


def agree(raw: bytes) -> Reading | None:
    fast = parse_canonical(raw)
    judged = judge_canonical(raw)
    assert (fast is None) == (judged is None)
    if fast is not None:
        assert full(raw) == fast, raw
        assert fast.timestamp.tzinfo is not None
        live, us = judged
        assert (live.sensor_id, live.temperature, live.humidity, live.location,
                live.timestamp) == (fast.sensor_id, fast.temperature, fast.humidity,
                                    fast.location, fast.timestamp)
        assert us == to_us(fast.timestamp)
    return fast


def test_the_canonical_shapes_take_the_fast_path() -> None:
    net = agree(CANONICAL)  # the .NET producer's 7 fractional digits: microseconds kept
    assert net is not None and net.timestamp.microsecond == 72987
    ours = Reading(sensor_id="s", temperature=-3.5, humidity=0, location="",
                   timestamp=net.timestamp).to_json()
    assert agree(ours) == parse_reading(ours.decode())
    whole = agree(CANONICAL.replace(b".0729871Z", b"Z"))
    assert whole is not None and whole.timestamp.microsecond == 0


@pytest.mark.parametrize("raw", [
    CANONICAL.replace(b"Temperature", b"temperature"),  # camelCase: the full parser's job
    CANONICAL.replace(b'"Humidity":55.17,', b'"Humidity":55.17,"Humidity":1,'),
    CANONICAL.replace(b'"Humidity":55.17,', b'"Humidity":55.17,"humidity":1,'),
    CANONICAL.replace(b"sensor-01", b"sensor\\u200b01"),
    CANONICAL.replace(b"sensor-01", "sensor\u200b01".encode()),
    CANONICAL.replace(b"sensor-01", b"sensor\x7f01"),
    CANONICAL.replace(b"sensor-01", b"   "),
    CANONICAL.replace(b"sensor-01", b""),
    CANONICAL.replace(b"22.05", b"200.0001"),
    CANONICAL.replace(b"22.05", b"1e400"),
    CANONICAL.replace(b"22.05", b'"22.05"'),
    CANONICAL.replace(b"22.05", b"true"),
    CANONICAL.replace(b"55.17", b"-0.1"),
    CANONICAL.replace(b"2026-11-29", b"1899-12-31"),
    CANONICAL.replace(b"2026-11-29", b"2200-01-01"),
    CANONICAL.replace(b"2026-11-29", b"2026-02-30"),
    CANONICAL.replace(b"2026-11-29T", b"2026-W48-7T"),
    CANONICAL.replace(b"0729871Z", b"0729871+01:00"),
    CANONICAL.replace(b".0729871Z", b"Z "),
    CANONICAL.replace(b'"Location":"Warehouse A",', b""),
    CANONICAL.replace(b'"Warehouse A"', b"null"),
    CANONICAL.replace(b"}", b',"Extra":"x"}'),
])
def test_anything_unusual_is_left_to_the_full_parser(raw: bytes) -> None:
    assert parse_canonical(raw) is None
    try:
        via_bytes: Reading | str = parse_reading(raw)
    except InvalidReading as exc:
        via_bytes = str(exc)
    try:
        via_text: Reading | str = parse_reading(raw.decode())
    except InvalidReading as exc:
        via_text = str(exc)
    assert via_bytes == via_text


_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=70)
_text = st.one_of(_printable, st.text(max_size=70))
_number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-150, max_value=250),
    st.integers(min_value=-10**20, max_value=10**20),
    st.sampled_from(["1e400", "-0", "0.0", "100", "200", "-100", "1E2", "true", "null", '"1"']),
)
_digits = st.text("0123456789", min_size=1, max_size=12)
_timestamp = st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.builds(lambda y, mo, d, h, mi, s, frac, end, sep: (
        f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{end}"),
        st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
        st.integers(0, 60), st.integers(0, 61),
        st.one_of(st.just(""), _digits.map(lambda x: "." + x), st.just(".")),
        st.sampled_from(["Z", "z", "", "+00:00", "-05:30", "+01", " Z"]),
        st.sampled_from(["T", "t", " "])),
    _text,
)


def _value(v: object) -> str:
    return v if isinstance(v, str) and not isinstance(v, bool) else json.dumps(v)


@settings(max_examples=3000, deadline=None)
@given(sensor=_text, temperature=_number, humidity=_number, location=_text, ts=_timestamp,
       order=st.permutations(range(5)), dup=st.sampled_from([None, 0, 1, 2, 3, 4]))
@example(sensor="sensor-01", temperature=21, humidity=4, location="x",
         ts="2026-11-29T16:43:10.8417119Z", order=[0, 1, 2, 3, 4], dup=None)
def test_fast_path_never_disagrees(sensor: str, temperature: object, humidity: object,
                                   location: str, ts: str, order: list[int],
                                   dup: int | None) -> None:
    fields = [("SensorId", json.dumps(sensor, ensure_ascii=False)),
              ("Temperature", _value(temperature)), ("Humidity", _value(humidity)),
              ("Location", json.dumps(location, ensure_ascii=False)),
              ("Timestamp", json.dumps(ts))]
    pairs = [fields[i] for i in order]
    if dup is not None:
        pairs.append((fields[dup][0], fields[(dup + 1) % 5][1]))
    raw = ("{" + ",".join(f'"{k}":{v}' for k, v in pairs) + "}").encode("utf-8", "surrogatepass")
    agree(raw)


@settings(max_examples=1000, deadline=None)
@given(sensor=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e).filter(
           lambda c: c not in '"\\'), min_size=1, max_size=64),
       temperature=st.floats(-100, 200), humidity=st.floats(0, 100),
       location=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e).filter(
           lambda c: c not in '"\\'), max_size=256),
       when=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2199, 12, 31)),
       extra=st.sampled_from(["", "0", "9", "123"]))
def test_every_canonical_reading_takes_the_fast_path(sensor: str, temperature: float,
                                                     humidity: float, location: str,
                                                     when: datetime, extra: str) -> None:
    ts = when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{when.microsecond:06d}{extra}"
                                              if when.microsecond or extra else "") + "Z"
    raw = json.dumps({"SensorId": sensor, "Temperature": temperature, "Humidity": humidity,
                      "Location": location, "Timestamp": ts}, separators=(",", ":")).encode()
    fast = agree(raw)
    assert fast is not None, raw
    assert fast.timestamp.replace(tzinfo=None) == when


_UNUSUAL = [CANONICAL.replace(b"sensor-01", b"sensor\\u200b01"),
            CANONICAL.replace(b"sensor-01", "sensor\u200b01".encode()),
            CANONICAL.replace(b"sensor-01", b"sensor\x7f01"),
            CANONICAL.replace(b'"Humidity":55.17,', b'"Humidity":55.17,"Humidity":1,'),
            CANONICAL.replace(b"22.05", b"1e400"), b"", b"not json", "a text", None,
            CANONICAL.replace(b".0729871Z", b"Z"), CANONICAL]


def _seen(judged: tuple | None) -> tuple | None:
    if judged is None:
        return None
    live, us = judged
    return (live.sensor_id, live.temperature, live.humidity, live.location, live.timestamp, us)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_UNUSUAL), max_size=12))
def test_a_poll_at_once_judges_each_value_as_alone(values: list) -> None:
    # The ASCII/escape checks run over the poll's values together when they all pass: one
    # bad value among good ones must still be caught on its own.
    alone = [_seen(judge_canonical(v) if isinstance(v, bytes) else None) for v in values]
    assert [_seen(j) for j in judge_canonical_many(values)] == alone
