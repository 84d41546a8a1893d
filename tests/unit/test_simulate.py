"""The simulated fleet: reproducible, realistic, and faulty on purpose (pure)."""

from __future__ import annotations

import doctest
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from sensorlib.ingest import simulate
from sensorlib.ingest.simulate import REFERENCE_FLEET, FaultRates, SensorSpec, Simulator

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def values(sim: Simulator, n: int) -> list[tuple[str, float, float, datetime]]:
    return [(r.sensor_id, r.temperature, r.humidity, r.timestamp) for r in sim.stream(count=n)]


def test_reference_fleet_facts() -> None:
    assert [(s.sensor_id, s.location, s.base_temperature, s.base_humidity)
            for s in REFERENCE_FLEET] == [
        ("sensor-01", "Warehouse A", 22, 55), ("sensor-02", "Warehouse B", 24, 60),
        ("sensor-03", "Cold Storage", 5, 70), ("sensor-04", "Server Room", 20, 45),
        ("sensor-05", "Production Floor", 28, 65)]


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = values(Simulator(seed=42, start=T0), 2000)
    assert a == values(Simulator(seed=42, start=T0), 2000)
    assert a != values(Simulator(seed=43, start=T0), 2000)


def test_stream_advances_event_time_by_interval_without_sleeping() -> None:
    sim = Simulator(seed=1, interval=0.5, start=T0, faults=FaultRates.none())
    readings = list(sim.stream(count=12))
    assert [r.timestamp for r in readings[::5]] == [T0, T0 + timedelta(seconds=0.5),
                                                    T0 + timedelta(seconds=1)]
    assert [r.sensor_id for r in readings[:5]] == [s.sensor_id for s in REFERENCE_FLEET]
    assert all(r.location for r in readings)
    # A second stream carries on where the first stopped (mid-tick leftovers are dropped).
    assert next(iter(sim.stream(count=1))).timestamp == T0 + timedelta(seconds=1.5)


def test_stream_by_duration() -> None:
    sim = Simulator(seed=1, start=T0, faults=FaultRates.none())
    readings = list(sim.stream(duration=10))  # ticks at 0, 2, 4, 6, 8 s
    assert len(readings) == 25 and readings[-1].timestamp == T0 + timedelta(seconds=8)


def test_values_drift_near_their_base_and_stay_valid() -> None:
    sim = Simulator(seed=5, start=T0, faults=FaultRates.none())
    by_sensor: dict[str, list[float]] = {}
    for r in sim.stream(count=5 * 3000):
        assert 0 <= r.humidity <= 100
        assert r.temperature == round(r.temperature, 2)
        by_sensor.setdefault(r.sensor_id, []).append(r.temperature)
    for spec in REFERENCE_FLEET:
        temps = by_sensor[spec.sensor_id]
        assert abs(sum(temps) / len(temps) - spec.base_temperature) < 2.0
        assert max(temps) < 35 and len(set(temps)) > 100  # moves, never alarming
        steps = [abs(b - a) for a, b in itertools.pairwise(temps)]
        assert max(steps) < 1.0  # drift, not independent noise


def test_readings_at_uses_the_given_time_and_omits_silent_sensors() -> None:
    always_silent = FaultRates(spike=0, stuck=0, silent=1.0, silent_seconds=(100, 100))
    sim = Simulator(seed=1, start=T0, faults=always_silent)
    assert sim.readings_at(T0) == []
    assert sim.readings_at(T0 + timedelta(seconds=50)) == []
    back = sim.readings_at(T0 + timedelta(seconds=101))
    assert back == [] or all(r.timestamp == T0 + timedelta(seconds=101) for r in back)
    clean = Simulator(seed=1, start=T0, faults=FaultRates.none())
    t = datetime(2030, 6, 1, tzinfo=UTC)
    assert [r.timestamp for r in clean.readings_at(t)] == [t] * 5


def test_faults_spike_stick_and_fall_silent() -> None:
    sim = Simulator(seed=9, start=T0)
    readings = list(sim.stream(duration=3600))
    assert any(r.temperature > 37 for r in readings), "no spike"
    per_sensor: dict[str, list[tuple[float, float]]] = {}
    for r in readings:
        per_sensor.setdefault(r.sensor_id, []).append((r.temperature, r.humidity))
    longest = max(_longest_run(v) for v in per_sensor.values())
    assert longest >= 15, "no stuck sensor"
    counts = Counter(r.sensor_id for r in readings)
    assert min(counts.values()) < 1800, "no silence"


def _longest_run(values: list[tuple[float, float]]) -> int:
    best = run = 1
    for a, b in itertools.pairwise(values):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


def test_custom_fleet_and_bad_interval() -> None:
    sim = Simulator([SensorSpec("x", "Attic", 10.0, 20.0)], seed=1, start=T0)
    assert {r.sensor_id for r in sim.stream(count=10)} == {"x"}
    with pytest.raises(ValueError):
        Simulator(interval=0)


def test_docstring_examples() -> None:
    assert doctest.testmod(simulate).failed == 0
