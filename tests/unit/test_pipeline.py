"""The pipeline live and over DataFrames: same alerts either way, warm restarts (pure)."""

from __future__ import annotations

import doctest
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from sensorlib.engine import pipeline as pipeline_module
from sensorlib.engine.detect import RuleConfig
from sensorlib.engine.pipeline import (
    Pipeline,
    aggregates_to_frame,
    alerts_to_frame,
    readings_frame_to_records,
    run_frame,
)
from sensorlib.engine.windows import to_us
from sensorlib.ingest.simulate import FaultRates, Simulator
from sensorlib.model.events import Alert, Reading
from sensorlib.model.rejections import InvalidReading

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def reading(seconds: float, temperature: float = 20.0, humidity: float = 50.0,
            sensor: str = "s1") -> Reading:
    return Reading(sensor_id=sensor, temperature=temperature, humidity=humidity,
                   location="Lab", timestamp=T0 + timedelta(seconds=seconds))


def frame_of(readings: Iterable[Reading]) -> pd.DataFrame:
    frame = pd.DataFrame([r.to_dict() for r in readings])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def live(readings: Iterable[Reading], tick_every: timedelta | None,
         **kwargs: object) -> list[Alert]:
    """A live processor, naively: tick at every boundary the event time passes."""
    p = Pipeline(**kwargs)  # type: ignore[arg-type]
    alerts: list[Alert] = []
    step = None if tick_every is None else tick_every // timedelta(microseconds=1)
    watermark = None
    for r in readings:
        ts = to_us(r.timestamp)
        if step is not None and watermark is not None:
            for boundary in range((watermark // step + 1) * step, ts + 1, step):
                alerts += p.tick(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=boundary))
        alerts += p.process(r)
        watermark = ts if watermark is None else max(watermark, ts)
    return alerts


def test_process_aggregates_and_alerts() -> None:
    p = Pipeline(clock=lambda: T0)
    assert p.process(reading(0, 20.0)) == []
    alert, rate = p.process(reading(2, 36.0))
    assert (alert.rule, alert.reason) == ("threshold", "High temperature: 36.0°C")
    assert rate.rule == "rate_of_change"
    (agg,) = p.aggregates()
    assert (agg.count, agg.temperature_max) == (2, 36.0)
    assert p.stats.processed == 2
    assert p.stats.alerts == {"threshold": 1, "rate_of_change": 1}
    assert p.watermark == T0 + timedelta(seconds=2)


def test_late_readings_are_counted() -> None:
    p = Pipeline(window=timedelta(minutes=1))
    p.process(reading(600))
    p.process(reading(0))
    assert p.stats.late == 1 and p.aggregates()[0].late == 1


def test_tick_raises_silent_alerts() -> None:
    p = Pipeline()
    p.process(reading(-2))
    p.process(reading(0))
    assert p.tick(T0 + timedelta(seconds=10)) == []
    assert [a.rule for a in p.tick(T0 + timedelta(seconds=31))] == ["silent"]
    assert p.stats.alerts == {"silent": 1}


def test_warm_rebuilds_windows_and_cooldowns_without_alerting() -> None:
    history = [reading(i * 2, 41.0 if i == 10 else 20.0) for i in range(30)]
    p = Pipeline()
    p.warm(history)
    assert p.stats.processed == 0 and p.stats.warmed == 30 and not p.stats.alerts
    assert p.aggregates()[0].count == 30
    # The threshold alert at 20 s was raised before the restart: its cooldown holds.
    assert "threshold" not in [a.rule for a in p.process(reading(62, 41.0))]
    assert "threshold" in [a.rule for a in p.process(reading(81, 41.0))]


def test_warm_then_live_equals_one_uninterrupted_run() -> None:
    sim = Simulator(seed=4, start=T0)
    readings = list(sim.stream(duration=20 * 60))
    cut = len(readings) // 2
    whole = list(Pipeline(clock="event").replay(readings))
    restarted = Pipeline(clock="event")
    restarted.warm(readings[:cut])
    after = list(restarted.replay(readings[cut:]))
    before = list(Pipeline(clock="event").replay(readings[:cut]))
    assert [a.alert_id for a in before + after] == [a.alert_id for a in whole]


def test_run_frame_equals_feeding_the_same_readings_live() -> None:
    sim = Simulator(seed=11, start=T0)
    readings = list(sim.stream(duration=30 * 60))
    for tick_every in (timedelta(seconds=10), timedelta(seconds=7), None):
        aggregates, alerts = run_frame(frame_of(readings), tick_every=tick_every)
        expected = live(readings, tick_every)
        assert list(alerts["alertId"]) == [a.alert_id for a in expected]
        assert set(alerts["rule"]) >= {"threshold", "stuck", "rate_of_change", "outlier"}
        assert ("silent" in set(alerts["rule"])) == (tick_every is not None)
        assert list(aggregates["sensorId"]) == [f"sensor-0{i}" for i in range(1, 6)]


def test_run_frame_sorts_by_timestamp_stably() -> None:
    readings = [reading(i, 20.0 + i % 7, sensor=f"s{i % 3}") for i in range(200)]
    shuffled = frame_of(readings).sample(frac=1.0, random_state=3)
    a_aggs, a_alerts = run_frame(shuffled)
    b_aggs, b_alerts = run_frame(frame_of(readings))
    pd.testing.assert_frame_equal(a_aggs, b_aggs)
    pd.testing.assert_frame_equal(a_alerts, b_alerts)


def test_run_frame_is_deterministic_and_detected_at_is_event_time() -> None:
    frame = frame_of([reading(0), reading(5, 41.0)])
    _, one = run_frame(frame)
    _, two = run_frame(frame)
    pd.testing.assert_frame_equal(one, two)
    assert one["detectedAt"].iloc[0] == pd.Timestamp(T0 + timedelta(seconds=5))


def test_a_long_gap_costs_a_few_ticks_not_millions() -> None:
    readings = [reading(-1, sensor="a"), reading(0, sensor="a"), reading(0, sensor="b"),
                reading(1, sensor="b"), reading(365 * 86400, sensor="a")]  # a year later
    _, alerts = run_frame(frame_of(readings), tick_every=timedelta(seconds=1))
    assert sorted(alerts["sensorId"]) == ["a", "b"]
    # Silent strictly after 30 s: ticks at 31 s (for a) and 32 s (for b), then none.
    assert list(alerts["detectedAt"]) == [pd.Timestamp(T0 + timedelta(seconds=31)),
                                          pd.Timestamp(T0 + timedelta(seconds=32))]


EMPTY = pd.DataFrame({"sensorId": pd.Series([], dtype="str"),
                      "temperature": pd.Series([], dtype="float64"),
                      "humidity": pd.Series([], dtype="float64"),
                      "location": pd.Series([], dtype="str"),
                      "timestamp": pd.Series([], dtype="datetime64[ns, UTC]")})


def test_empty_frames_have_the_right_columns_and_dtypes() -> None:
    aggregates, alerts = run_frame(EMPTY)
    assert aggregates.empty and alerts.empty
    full_aggs, full_alerts = run_frame(frame_of([reading(0, 41.0)]))
    assert aggregates.dtypes.to_dict() == full_aggs.dtypes.to_dict()
    assert alerts.dtypes.to_dict() == full_alerts.dtypes.to_dict()
    assert str(alerts["timestamp"].dtype) == "datetime64[us, UTC]"
    assert list(aggregates.columns) == list(full_aggs.iloc[0:0].columns)
    assert str(full_aggs["count"].dtype) == "int64"
    assert alerts_to_frame([]).columns.tolist() == alerts.columns.tolist()
    assert aggregates_to_frame([]).columns.tolist() == aggregates.columns.tolist()


def test_frame_records_keep_microseconds_and_validate() -> None:
    frame = pd.DataFrame({
        "sensorId": ["a", "b"], "temperature": [20, 21.5], "humidity": [50.0, 60.0],
        "location": ["X", None],
        "timestamp": pd.to_datetime(["2026-01-01T12:00:00.1234567Z",
                                     "2026-01-01T14:00:00+02:00"], format="ISO8601", utc=True),
    })
    a, b = readings_frame_to_records(frame)
    assert a.timestamp == T0.replace(microsecond=123456) and a.temperature == 20.0
    assert b.timestamp == T0 and b.location == ""
    bad = frame.assign(humidity=[50.0, 120.0])
    with pytest.raises(InvalidReading, match="humidity") as info:
        list(readings_frame_to_records(bad))
    assert "row 1" in str(info.value.__notes__)
    with pytest.raises(KeyError, match="humidity"):
        list(readings_frame_to_records(frame.drop(columns=["humidity"])))


def test_rules_are_passed_through() -> None:
    _, alerts = run_frame(frame_of([reading(0, 31.0)]),
                          rules=RuleConfig(temperature_threshold=30.0))
    assert list(alerts["reason"]) == ["High temperature: 31.0°C"]


# -- the simulated fleet through the pipeline ------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_faults_raise_threshold_stuck_and_silent_within_30_minutes(seed: int) -> None:
    sim = Simulator(seed=seed, start=T0)
    rules = {a.rule for a in Pipeline(clock="event").replay(sim.stream(duration=30 * 60))}
    assert rules >= {"threshold", "stuck", "silent"}


def test_a_clean_fleet_raises_no_threshold_alert() -> None:
    sim = Simulator(seed=0, start=T0, faults=FaultRates.none())
    p = Pipeline(clock="event")
    alerts = list(p.replay(sim.stream(duration=10 * 60)))
    assert [a for a in alerts if a.rule == "threshold"] == []
    assert p.stats.processed == 5 * 300


def test_docstring_examples() -> None:
    assert doctest.testmod(pipeline_module).failed == 0
