"""Event-time windows, checked against a brute-force pandas computation (pure)."""

from __future__ import annotations

import doctest
import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorlib.engine import windows
from sensorlib.engine.windows import Aggregate, SensorWindow, WindowStore, from_us, to_us
from sensorlib.model.events import Reading, new_reading

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def reading(seconds: float, temperature: float = 20.0, humidity: float = 50.0,
            sensor: str = "s1", location: str = "Lab") -> Reading:
    return Reading(sensor_id=sensor, temperature=temperature, humidity=humidity,
                   location=location, timestamp=T0 + timedelta(seconds=seconds))


def test_empty_window_has_no_aggregate() -> None:
    w = SensorWindow()
    assert w.aggregate() is None and len(w) == 0 and w.watermark is None
    assert all(math.isnan(x) for x in w.mean_std("temperature"))


def test_aggregate_of_in_order_readings() -> None:
    w = SensorWindow(timedelta(minutes=5))
    for i, t in enumerate([20.0, 22.0, 27.0]):
        assert w.add(reading(i * 2, t, 40.0 + i))
    a = w.aggregate("s1")
    assert a == Aggregate(
        sensor_id="s1", location="Lab", count=3, temperature_mean=23.0, temperature_min=20.0,
        temperature_max=27.0, humidity_mean=41.0, humidity_min=40.0, humidity_max=42.0,
        window_start=T0 + timedelta(seconds=4) - timedelta(minutes=5),
        window_end=T0 + timedelta(seconds=4), last_reading=T0 + timedelta(seconds=4), late=0)


def test_window_boundary_is_exclusive_at_the_start() -> None:
    w = SensorWindow(timedelta(seconds=10))
    w.add(reading(0, 10.0))
    w.add(reading(10, 30.0))  # the reading at 0 is now exactly at the start: evicted
    assert len(w) == 1 and w.aggregate().temperature_min == 30.0  # type: ignore[union-attr]
    assert not w.add(reading(0, 99.0))  # ts == watermark - length: late
    assert w.add(reading(0.000001, 5.0))  # one microsecond inside: aggregated
    a = w.aggregate()
    assert a is not None and (a.count, a.temperature_min, a.late) == (2, 5.0, 1)


def test_out_of_order_inside_the_window_is_aggregated() -> None:
    w = SensorWindow(timedelta(minutes=1))
    w.add(reading(30, 20.0))
    w.add(reading(10, 40.0))  # older, still inside
    w.add(reading(20, 0.0))
    a = w.aggregate()
    assert a is not None
    assert (a.count, a.temperature_max, a.temperature_min, a.late) == (3, 40.0, 0.0, 0)
    assert a.window_end == T0 + timedelta(seconds=30)
    w.add(reading(75, 21.0))  # evicts 10 (<= 15), keeps 20 and 30
    a = w.aggregate()
    assert a is not None and (a.count, a.temperature_max, a.temperature_min) == (3, 21.0, 0.0)


def test_location_is_the_newest_readings() -> None:
    w = SensorWindow()
    w.add(reading(10, location="New"))
    w.add(reading(5, location="Old"))
    assert w.aggregate().location == "New"  # type: ignore[union-attr]


def test_a_gap_longer_than_the_window_empties_it() -> None:
    w = SensorWindow(timedelta(minutes=5))
    for i in range(100):
        w.add(reading(i, 20.0 + i))
    w.add(reading(3600, 5.0))
    a = w.aggregate()
    assert a is not None and (a.count, a.temperature_mean, a.temperature_max) == (1, 5.0, 5.0)


def test_to_dict_matches_the_api_shape() -> None:
    w = SensorWindow()
    w.add(reading(0, 21.5, 40.0))
    assert w.aggregate("s1").to_dict() == {  # type: ignore[union-attr]
        "sensorId": "s1", "location": "Lab", "avgTemperature": 21.5, "avgHumidity": 40.0,
        "lastUpdate": "2026-01-01T12:00:00Z", "readingCount": 1,
        "minTemperature": 21.5, "maxTemperature": 21.5, "minHumidity": 40.0, "maxHumidity": 40.0,
        "windowStart": "2026-01-01T11:55:00Z", "windowEnd": "2026-01-01T12:00:00Z", "late": 0,
    }


def test_mean_std_is_the_population_statistic() -> None:
    w = SensorWindow()
    values = [20.0, 21.0, 25.0, 19.5, 30.25]
    for i, v in enumerate(values):
        w.add(reading(i, v, 100.0 - v))
    mean, std = w.mean_std("temperature")
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values))
    mean, std = w.mean_std("humidity")
    assert mean == pytest.approx(100 - np.mean(values)) and std == pytest.approx(np.std(values))
    n, _t_mean, t_var, _, _ = w.moments()
    assert n == 5 and t_var == pytest.approx(np.var(values))


def test_running_sums_do_not_drift_over_a_long_stream() -> None:
    rnd = random.Random(3)
    w = SensorWindow(timedelta(seconds=30))
    kept: list[float] = []
    for i in range(60_000):
        v = round(rnd.uniform(-100, 200), 3)
        w.add(new_reading("s1", v, 50.0, "", T0 + timedelta(seconds=i * 0.1)))
        kept.append(v)
    tail = kept[-300:]
    mean, std = w.mean_std("temperature")
    assert mean == pytest.approx(math.fsum(tail) / 300, rel=1e-12)
    assert std == pytest.approx(float(np.std(tail)), rel=1e-9)


def test_memory_is_bounded_by_the_window() -> None:
    w = SensorWindow(timedelta(seconds=10))
    for i in range(10_000):  # falling temperatures: the worst case for a max structure
        w.add(reading(i, 200.0 / (i + 1)))
    assert len(w) == 10
    assert all(len(q) <= 10 for q in (w._tmax, w._tmin, w._hmax, w._hmin))


def test_store_keeps_one_window_per_sensor() -> None:
    store = WindowStore(timedelta(minutes=5))
    assert store.add(reading(0, sensor="b")) and store.add(reading(1, sensor="a"))
    assert store.add(reading(2, sensor="a"))
    assert store.sensors() == ["a", "b"] == list(store) and len(store) == 2
    assert [(a.sensor_id, a.count) for a in store.aggregates()] == [("a", 2), ("b", 1)]
    assert store.get("a") is not None and store.get("zzz") is None
    assert store.aggregate("b").count == 1 and store.aggregate("zzz") is None  # type: ignore[union-attr]
    assert not store.add(reading(-600, sensor="a"))
    store.reset("a")
    store.reset("unknown")
    assert store.sensors() == ["b"]


def test_microsecond_conversions_are_exact() -> None:
    t = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    assert from_us(to_us(t)) == t and to_us(datetime(1970, 1, 1, tzinfo=UTC)) == 0


def test_window_length_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SensorWindow(timedelta(0))


# -- the property: the exact semantics, computed the slow and obvious way --------------

LENGTH_S = 10


def late_flags(events: list[tuple[str, int, float, float]]) -> tuple[list[bool], dict[str, int]]:
    """Whether each reading was late on arrival, and each sensor's final watermark."""
    length = LENGTH_S * 1_000_000
    flags: list[bool] = []
    watermark: dict[str, int] = {}
    for sensor, ts, _, _ in events:
        wm = watermark.get(sensor)
        late = wm is not None and ts <= wm - length
        flags.append(late)
        if not late:
            watermark[sensor] = ts if wm is None else max(wm, ts)
    return flags, watermark


def brute_force(events: list[tuple[str, int, float, float]]) -> dict[str, dict[str, float]]:
    """Aggregates after all ``(sensor, ts_us, temp, hum)`` arrived, by the definition."""
    flags, watermark = late_flags(events)
    frame = pd.DataFrame(events, columns=["sensor", "ts", "temperature", "humidity"])
    frame["late"] = flags
    ends = frame["sensor"].map(watermark)
    inside = frame[~frame["late"] & (frame["ts"] > ends - LENGTH_S * 1_000_000)]
    late = frame.groupby("sensor")["late"].sum()
    out = {}
    for sensor, g in inside.groupby("sensor"):
        out[sensor] = {
            "count": len(g), "late": int(late[sensor]), "end": watermark[sensor],
            "t_mean": g["temperature"].mean(), "t_min": g["temperature"].min(),
            "t_max": g["temperature"].max(), "h_mean": g["humidity"].mean(),
            "h_min": g["humidity"].min(), "h_max": g["humidity"].max(),
        }
    return out


def brute_force_one(events: list[tuple[str, int, float, float]], sensor: str) -> dict[str, float]:
    """The same for one sensor, in plain Python (cheap enough to run after every reading)."""
    flags, watermark = late_flags(events)
    end = watermark[sensor]
    mine = [(t, h) for (s, ts, t, h), late in zip(events, flags, strict=True)
            if s == sensor and not late and ts > end - LENGTH_S * 1_000_000]
    temps, hums = [t for t, _ in mine], [h for _, h in mine]
    return {"count": len(mine), "late": sum(1 for (s, *_), f in zip(events, flags, strict=True)
                                            if s == sensor and f),
            "end": end, "t_mean": math.fsum(temps) / len(temps), "t_min": min(temps),
            "t_max": max(temps), "h_mean": math.fsum(hums) / len(hums), "h_min": min(hums),
            "h_max": max(hums)}


@st.composite
def disordered_streams(draw: st.DrawFn) -> list[tuple[str, int, float, float]]:
    """Several sensors; event times mostly rising, some jittered back (a few beyond
    the window: late), with ties and exact boundary hits (whole seconds)."""
    n = draw(st.integers(1, 60))
    clock = 0
    out = []
    for _ in range(n):
        clock += draw(st.sampled_from([0, 1, 1, 2, 3, 5, 10, 11, 25])) * 1_000_000
        back = draw(st.sampled_from([0, 0, 0, 0, 1, 3, 9, 10, 12, 30])) * 1_000_000
        micro = draw(st.sampled_from([0, 0, 1, 999_999]))
        out.append((
            draw(st.sampled_from(["a", "b", "c"])),
            clock - back + micro,
            draw(st.floats(-100, 200, allow_nan=False).map(lambda x: round(x, 2))),
            draw(st.floats(0, 100)),
        ))
    return out


@settings(max_examples=150, deadline=None)
@given(disordered_streams())
def test_windows_match_a_brute_force_computation(
        events: list[tuple[str, int, float, float]]) -> None:
    store = WindowStore(timedelta(seconds=LENGTH_S))
    for i, (sensor, ts, temp, hum) in enumerate(events):
        store.add(Reading(sensor_id=sensor, temperature=temp, humidity=hum,
                          timestamp=from_us(ts)))
        got = store.aggregate(sensor)
        assert got is not None
        check(got, brute_force_one(events[: i + 1], sensor))
    expected = brute_force(events)
    got_all = store.aggregates()
    assert [a.sensor_id for a in got_all] == sorted(expected)
    for a in got_all:
        check(a, expected[a.sensor_id])


def check(got: Aggregate, want: dict[str, float]) -> None:
    assert got.count == want["count"] and got.late == want["late"]
    assert to_us(got.window_end) == want["end"]
    assert to_us(got.window_start) == want["end"] - LENGTH_S * 1_000_000
    assert (got.temperature_min, got.temperature_max) == (want["t_min"], want["t_max"])
    assert (got.humidity_min, got.humidity_max) == (want["h_min"], want["h_max"])
    assert got.temperature_mean == pytest.approx(want["t_mean"], rel=1e-9, abs=1e-9)
    assert got.humidity_mean == pytest.approx(want["h_mean"], rel=1e-9, abs=1e-9)


def test_docstring_examples() -> None:
    assert doctest.testmod(windows).failed == 0
