"""run_frame's columnar path raises what a replay one reading at a time raises.

``run_frame`` (and the tuning sweeps on it) go through ``Pipeline.replay_columns``: each
sensor's in-order runs through the rules' columnar checks, with ticks only where the data
says something falls due. Random fleets with silences, storms of them, evictions, repeated
timestamps, spikes and stuck spells must give exactly the alerts (ids, reasons, order,
``detectedAt``) and aggregates of ``Pipeline.replay`` over validated readings.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorlib.engine.detect import RuleConfig
from sensorlib.engine.pipeline import (
    Pipeline,
    aggregates_to_frame,
    alerts_to_frame,
    readings_frame_to_records,
    run_frame,
)
from sensorlib.model.rejections import InvalidReading

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)


def fleet_frame(seed: int, n: int) -> pd.DataFrame:
    rnd = random.Random(seed)
    sensors = [f"s{i:02d}" for i in range(rnd.randint(1, 30))]
    rows = []
    clock = {s: rnd.uniform(0, 5) for s in sensors}
    value = {s: (rnd.uniform(0, 30), rnd.uniform(30, 70)) for s in sensors}
    stuck = dict.fromkeys(sensors, 0)
    outage = 0.0
    for _ in range(n):
        s = rnd.choice(sensors)
        clock[s] += rnd.choice([0.5, 1.0, 2.0, 2.0])
        if rnd.random() < 0.002:  # a sensor silent for a while
            clock[s] += rnd.choice([35.0, 90.0, 700.0])
        if rnd.random() < 0.0005:  # the whole fleet silent: a storm
            outage = max(clock.values()) + rnd.choice([40.0, 120.0])
            clock = dict.fromkeys(sensors, outage)
        if rnd.random() < 0.01:
            clock[s] = round(clock[s])  # repeated timestamps
        t, h = value[s]
        if stuck[s]:
            stuck[s] -= 1
        else:
            t += rnd.gauss(0, 0.05) + (rnd.choice([-4, 4]) if rnd.random() < 0.01 else 0)
            h = min(max(h + rnd.gauss(0, 0.1), 0), 100)
            value[s] = (t, h)
            if rnd.random() < 0.005:
                stuck[s] = rnd.randint(5, 15)
        temp = rnd.choice([38.0, 45.5, -20.0]) if rnd.random() < 0.005 else t
        rows.append((s, round(temp, 2), round(h, 2), f"room {s[-1]}",
                     T0 + timedelta(seconds=clock[s])))
    return pd.DataFrame(rows, columns=["sensorId", "temperature", "humidity", "location",
                                       "timestamp"])


def one_by_one(df: pd.DataFrame, rules: RuleConfig, tick: timedelta | None
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = pd.to_datetime(df["timestamp"], utc=True).argsort(kind="stable")
    pipeline = Pipeline(rules=rules, clock="event", max_sensors=None)
    alerts = list(pipeline.replay(readings_frame_to_records(df.iloc[order.to_numpy()]),
                                  tick_every=tick))
    return aggregates_to_frame(pipeline.aggregates()), alerts_to_frame(alerts)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([
    RuleConfig(), RuleConfig(silent_storm=2, silent_after=timedelta(seconds=20)),
    RuleConfig(outlier_min_samples=10, cooldown=timedelta(seconds=5), silent_storm=None),
    RuleConfig(rules=frozenset({"silent", "stuck"}), stuck_readings=3),
    RuleConfig(rules=frozenset({"threshold", "outlier"}), outlier_min_samples=10),
]), st.sampled_from([timedelta(seconds=10), timedelta(seconds=3), None]))
def test_columns_raise_what_one_by_one_raises(seed: int, rules: RuleConfig,
                                              tick: timedelta | None) -> None:
    df = fleet_frame(seed, random.Random(seed).randint(50, 6000))
    df = df.sample(frac=1, random_state=seed % 1000)  # run_frame sorts it
    expected_aggregates, expected = one_by_one(df, rules, tick)
    aggregates, alerts = run_frame(df, rules=rules, tick_every=tick)
    pd.testing.assert_frame_equal(alerts, expected)
    pd.testing.assert_frame_equal(aggregates.drop(columns=["avgTemperature", "avgHumidity"]),
                                  expected_aggregates.drop(columns=["avgTemperature",
                                                                    "avgHumidity"]))
    pd.testing.assert_frame_equal(aggregates[["avgTemperature", "avgHumidity"]],
                                  expected_aggregates[["avgTemperature", "avgHumidity"]],
                                  rtol=1e-9)


def test_a_long_fleet_frame_raises_every_kind_of_alert_the_same() -> None:
    df = fleet_frame(3, 40_000)
    rules = RuleConfig(silent_storm=3)
    _, expected = one_by_one(df, rules, timedelta(seconds=10))
    _, alerts = run_frame(df, rules=rules)
    assert set(expected["rule"]) == {"threshold", "outlier", "stuck", "rate_of_change", "silent"}
    assert (expected["sensorId"] == "*fleet*").any()
    pd.testing.assert_frame_equal(alerts, expected)


def test_an_invalid_row_is_named_as_before() -> None:
    df = fleet_frame(1, 100)
    df.loc[df.index[40], "humidity"] = 120.0
    with pytest.raises(InvalidReading, match="humidity") as info:
        run_frame(df)
    assert any("in row" in note for note in info.value.__notes__)


def test_variants_of_a_sweep_are_run_frame_each() -> None:
    from sensorlib.engine.pipeline import run_frame_variants
    from sensorlib.notebook.tuning import sweep

    df = fleet_frame(8, 5000)
    variants = [RuleConfig(temperature_threshold=v) for v in (20.0, 30.0, 35.0)]
    for got, rules in zip(run_frame_variants(df, variants), variants, strict=True):
        pd.testing.assert_frame_equal(got, one_by_one(df, rules, timedelta(seconds=10))[1])
    result = sweep(df, "temperature threshold", [20.0, 30.0])
    assert result.table["alerts"].tolist()[0] > 0  # the live 35 °C first, then 20 and 30
