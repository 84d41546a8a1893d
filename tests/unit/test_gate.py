"""Every reader gives the one gate's verdict: the fast forms are held to ``judge_full``.

The gate (:mod:`sensorlib.model.gate`) is the definition of a reading. Its fast forms — the
msgspec poll path (:func:`~sensorlib.model.gate.judge_many`, the processor's), the one-value
fast path inside :func:`~sensorlib.model.gate.judge` (the API's, the dashboard's) and the
vectorised Arrow decoder (:func:`~sensorlib.replay.decode.decode_readings`, the archiver's and
replay's) — must give the same verdict, the same values and the same reasons as the plain
json + pydantic path, :func:`~sensorlib.model.gate.judge_full`, on the shared corpus of odd
records (``tests/corpus.py``) and on generated near-valid JSON and random bytes.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.model.events import parse_reading
from sensorlib.model.gate import judge, judge_full, judge_many, parse_event_time
from sensorlib.model.rejections import InvalidReading
from sensorlib.replay.decode import decode_readings
from tests.corpus import CORPUS, NOW_MS, NOW_US

WINDOW = EventTimeWindow(timedelta(days=365), timedelta(minutes=5))


def seen(got: Any) -> tuple:
    """A verdict as comparable values: the five fields and µs, or the reasons."""
    if isinstance(got, InvalidReading):
        return ("refused", str(got))
    reading, us = got
    return (reading.sensor_id, reading.temperature, reading.humidity, reading.location,
            reading.timestamp, us)


def reference(value: object, at: int, accept: EventTimeWindow | None = WINDOW) -> tuple:
    return seen(judge_full(value, at, now_us=NOW_US, accept=accept))


def decoded(values: list, times: list[int], accept: EventTimeWindow | None = WINDOW
            ) -> list[tuple]:
    frame = decode_readings(values, record_ms=times, accept=accept, now_us=NOW_US)
    out = []
    for row in frame.itertuples(index=False):
        if row._5 is not None:  # _reason
            out.append(("refused", row._5))
        else:
            ts = row.timestamp.to_pydatetime()
            out.append((row.sensorId, row.temperature, row.humidity, row.location, ts,
                        row.timestamp.value // 1000))
    return out


@pytest.mark.parametrize(("name", "value", "at"), CORPUS, ids=[c[0] for c in CORPUS])
def test_each_odd_record_gets_one_verdict_everywhere(name: str, value: object, at: int) -> None:
    expected = reference(value, at)
    assert seen(judge(value, at, now_us=NOW_US, accept=WINDOW)) == expected
    assert [seen(g) for g in judge_many([value], [at], now_us=NOW_US, accept=WINDOW)] == [expected]
    if value is None or isinstance(value, bytes):
        assert decoded([value], [at]) == [expected]


def test_the_corpus_at_once_and_shuffled_agrees_too() -> None:
    values = [c[1] for c in CORPUS]
    times = [c[2] for c in CORPUS]
    expected = [reference(v, t) for v, t in zip(values, times, strict=True)]
    assert [seen(g) for g in judge_many(values, times, now_us=NOW_US, accept=WINDOW)] == expected
    assert decoded(values, times) == expected
    order = list(reversed(range(len(values))))
    assert decoded([values[i] for i in order], [times[i] for i in order]) == [
        expected[i] for i in order]


def test_the_verdicts_that_used_to_differ() -> None:
    # Issue 23: dead-lettered by the processor but archived, or the other way round.
    verdicts = {name: reference(value, at)[0] for name, value, at in CORPUS}
    for refused in ("year 1950", "year 2150", "record time 1970", "camel+Pascal sensorId",
                    ".123456ABCZ", ".123456+09:00Z", "sensor_id key", "nested 3,000 deep",
                    "400-digit integer", "invalid UTF-8 in a string", "tombstone"):
        assert verdicts[refused] == "refused", refused
    for accepted in ("camelCase, isoformat()", "camelCase, +09:00", "9 digits"
                     if False else "canonical, 9 digits", "extra key (eventId)"):
        assert verdicts[accepted] != "refused", accepted


def test_parse_reading_raises_the_gates_refusal() -> None:
    for _, value, _ in CORPUS:
        got = judge(value)
        if isinstance(got, InvalidReading):
            with pytest.raises(InvalidReading) as info:
                parse_reading(value)  # type: ignore[arg-type]
            assert str(info.value) == str(got)


def test_the_usual_forms_take_the_fast_path() -> None:
    judged = judge_many([c[1] for c in CORPUS[:10]], [NOW_MS] * 10, now_us=NOW_US,
                        accept=WINDOW)
    fast = {type(g[0]).__name__ for g in judged if isinstance(g, tuple)}
    assert "Reading" not in fast, fast  # msgspec structs, not pydantic models


# -- generated records --------------------------------------------------------------------

_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=70)
_text = st.one_of(_printable, st.text(max_size=70))
_number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-150, max_value=250),
    st.integers(min_value=-10**20, max_value=10**20),
    st.sampled_from(["1e400", "-0", "0.0", "100", "200", "-100", "1E2", "true", "null", '"1"',
                     "9" * 400, "NaN", "[]", "{}"]),
)
_digits = st.text("0123456789", min_size=1, max_size=11)
_timestamp = st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.datetimes().map(lambda d: d.isoformat() + "+00:00"),
    st.builds(lambda y, mo, d, h, mi, s, frac, end, sep: (
        f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{end}"),
        st.sampled_from([2025, 2026, 1900, 1969, 1970, 2199, 2200, 1, 9999]),
        st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
        st.integers(0, 60), st.integers(0, 61),
        st.one_of(st.just(""), _digits.map(lambda x: "." + x), st.just(".")),
        st.sampled_from(["Z", "z", "", "+00:00", "-05:30", "+01", " Z", "+0100", "+23:59",
                         "+24:00", "-00:00"]),
        st.sampled_from(["T", "t", " "])),
    _text,
)


def _value(v: object) -> str:
    return v if isinstance(v, str) and not isinstance(v, bool) else json.dumps(v)


@st.composite
def records(draw: Any) -> bytes:
    pascal = draw(st.booleans())
    names = (["SensorId", "Temperature", "Humidity", "Location", "Timestamp"] if pascal
             else ["sensorId", "temperature", "humidity", "location", "timestamp"])
    values = [json.dumps(draw(_text), ensure_ascii=draw(st.booleans())),
              _value(draw(_number)), _value(draw(_number)),
              json.dumps(draw(_text), ensure_ascii=False), json.dumps(draw(_timestamp))]
    pairs = [(names[i], values[i]) for i in draw(st.permutations(range(5)))]
    drop = draw(st.sampled_from([None, None, 0, 3, 4]))
    if drop is not None:
        pairs = [p for p in pairs if p[0] != names[drop]]
    dup = draw(st.sampled_from([None, None, None, 0, 1, 4]))
    if dup is not None:
        name = names[dup] if draw(st.booleans()) else names[dup].swapcase()
        pairs.append((name, values[(dup + 1) % 5]))
    if draw(st.booleans()) and draw(st.booleans()):
        pairs.append(("EventId", '"e-1"'))
    raw = ("{" + ",".join(f'"{k}":{v}' for k, v in pairs) + "}").encode("utf-8",
                                                                        "surrogatepass")
    return draw(st.sampled_from([raw, raw, raw, raw[:-1], raw + b" ", raw.replace(b":", b" :", 1)]))


_times = st.sampled_from([NOW_MS, NOW_MS, -1, 0, NOW_MS - 400 * 86_400_000])


@settings(max_examples=1500, deadline=None)
@given(raw=records(), at=_times)
@example(raw=b'{"SensorId":"s","Temperature":1,"Humidity":2,"Location":"",'
             b'"Timestamp":"2026-12-01T11:59:00.0000001+00:00"}', at=NOW_MS)
def test_one_value_fast_forms_never_disagree(raw: bytes, at: int) -> None:
    expected = reference(raw, at)
    assert seen(judge(raw, at, now_us=NOW_US, accept=WINDOW)) == expected
    assert [seen(g) for g in judge_many([raw], [at], now_us=NOW_US, accept=WINDOW)] == [expected]


@settings(max_examples=150, deadline=None)
@given(raws=st.lists(st.one_of(records(), st.binary(max_size=40), st.none()), min_size=1,
                     max_size=25),
       at=_times)
def test_polls_and_columns_never_disagree(raws: list, at: int) -> None:
    times = [at] * len(raws)
    expected = [reference(r, at) for r in raws]
    assert [seen(g) for g in judge_many(raws, times, now_us=NOW_US, accept=WINDOW)] == expected
    assert decoded(raws, times) == expected
    assert decoded(raws, times, accept=None) == [reference(r, at, None) for r in raws]


@settings(max_examples=2000, deadline=None)
@given(ts=_timestamp)
@example(ts="2000-01-01T00:00:00.000000:Z")  # found by this test: the fast path dropped the ':'
def test_the_timestamp_grammar_has_one_reading(ts: str) -> None:
    raw = json.dumps({"SensorId": "s", "Temperature": 1.0, "Humidity": 2.0, "Location": "",
                      "Timestamp": ts}).encode()
    got = judge(raw)
    stamp = parse_event_time(ts)
    if isinstance(stamp, str):
        assert isinstance(got, InvalidReading)
    else:
        assert not isinstance(got, InvalidReading) and got[0].timestamp == stamp
