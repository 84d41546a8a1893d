"""Rule settings per sensor: by sensor id, location or a glob of ids, over the defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sensorlib.engine.detect import COLD_STORAGE, RuleConfig, SensorRules
from sensorlib.engine.pipeline import Pipeline
from sensorlib.model.events import new_reading
from sensorlib.model.times import to_us

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)


def readings(sensor: str, location: str, temps: list[float]) -> list:
    return [new_reading(sensor, t, 50.0, location, T0 + timedelta(seconds=2 * i))
            for i, t in enumerate(temps)]


def test_the_reference_cold_storage_alerts_at_11_degrees_by_default() -> None:
    assert RuleConfig().per_sensor == (COLD_STORAGE,)
    p = Pipeline(clock=lambda: T0)
    cold = [a for r in readings("sensor-03", "Cold Storage", [10.5, 12.0]) for a in p.process(r)]
    warm = [a for r in readings("sensor-01", "Warehouse A", [29.0, 30.0]) for a in p.process(r)]
    assert [(a.rule, a.severity, a.reason) for a in cold] == [
        ("threshold", "warning", "High temperature: 12.0°C")]
    assert warm == []
    assert p.detector.settings_for("sensor-03").temperature_threshold == 11.0
    assert p.detector.settings_for("sensor-01").temperature_threshold == 35.0
    assert RuleConfig(per_sensor=()).for_sensor("x", "Cold Storage").temperature_threshold == 35


def test_the_more_specific_layer_wins_field_by_field() -> None:
    config = RuleConfig(per_sensor=(
        SensorRules({"temperature_threshold": 10.0, "humidity_threshold": 70.0}, location="Lab"),
        SensorRules({"temperature_threshold": 20.0}, glob="lab-*"),
        SensorRules({"temperature_threshold": 30.0}, sensor_id="lab-7"),
    ))
    seven, eight = config.for_sensor("lab-7", "Lab"), config.for_sensor("lab-8", "Lab")
    assert (seven.temperature_threshold, seven.humidity_threshold) == (30.0, 70.0)
    assert (eight.temperature_threshold, eight.humidity_threshold) == (20.0, 70.0)
    assert config.for_sensor("other", "Hall") is config


@pytest.mark.parametrize(("make", "message"), [
    (lambda: SensorRules({"temperature_threshold": 1.0}), "exactly one"),
    (lambda: SensorRules({"temperature_threshold": 1.0}, sensor_id="a", glob="a*"), "exactly one"),
    (lambda: SensorRules({"cooldown": timedelta(0)}, sensor_id="a"), "cannot be set per sensor"),
    (lambda: RuleConfig(per_sensor=(SensorRules({"nope": 1}, sensor_id="a"),)), "nope: unknown"),
    (lambda: RuleConfig(per_sensor=(SensorRules({"rate_min_span": timedelta(0)},
                                                sensor_id="a"),)), "rate_min_span"),
])
def test_bad_layers_are_refused_naming_the_field(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_runs_and_one_by_one_agree_with_layers() -> None:
    config = RuleConfig(per_sensor=(SensorRules({"stuck_readings": 3, "outlier_z": 2.0,
                                                 "outlier_min_samples": 5}, glob="f*"),))
    batch = []
    for sensor in ("f1", "g1"):
        temps = [4.0 + (i % 7) * 0.1 + (6.0 if i % 97 == 0 else 0.0) for i in range(600)]
        temps[300:305] = [4.2] * 5
        batch += [(r, to_us(r.timestamp)) for r in readings(sensor, "Freezer", temps)]
    batch.sort(key=lambda pair: pair[1])
    one, runs = Pipeline(rules=config, clock=lambda: T0), Pipeline(rules=config, clock=lambda: T0)
    expected = [a for r, ts in batch for a in one.process_us(r, ts)]
    got = [a for _, found in runs.process_batch_us(batch) for a in found]
    key = sorted
    assert key(a.alert_id for a in got) == key(a.alert_id for a in expected)
    rules_of = {(a.sensor_id, a.rule) for a in expected}
    assert ("f1", "stuck") in rules_of and ("g1", "stuck") not in rules_of
    assert ("f1", "outlier") in rules_of
