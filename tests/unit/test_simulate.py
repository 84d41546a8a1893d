"""The simulated fleet: reproducible, realistic, and faulty on purpose (pure)."""

from __future__ import annotations

import doctest
import itertools
from collections import Counter
from dataclasses import replace
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


# -- labels: what the simulator injected, for backtests ---------------------------------------

def test_labels_say_what_was_injected_where_and_when() -> None:
    sim = Simulator(seed=9, start=T0)
    readings = list(sim.stream(duration=3600))
    kinds = Counter(label.kind for label in sim.labels)
    assert kinds["spike"] and kinds["stuck"] and kinds["silent"], kinds
    assert set(kinds) <= set(simulate.FAULT_KINDS)
    assert [f.start for f in sim.labels] == sorted(f.start for f in sim.labels)
    at = {(r.sensor_id, r.timestamp): r for r in readings}
    for f in sim.labels:
        assert f.start <= f.end
        inside = [r for (sensor, t), r in at.items() if sensor == f.sensor_id
                  and f.start <= t <= f.end]
        if f.kind == "spike":  # every reading of the spell is a spike, as many as planned
            assert inside and all(r.temperature >= 38 for r in inside)
            assert len(inside) == f.detail
        elif f.kind == "stuck":  # the same values over and over, as many times as planned
            assert len({(r.temperature, r.humidity) for r in inside}) == 1
            assert len(inside) == f.detail
        elif f.kind == "silent":  # nothing from the sensor until it may speak again
            assert inside == []
            assert (f.end - f.start).total_seconds() == pytest.approx(f.detail, abs=1e-3)
    # Outside the labels no reading looks like a spike.
    spikes = {(f.sensor_id, t) for f in sim.labels if f.kind == "spike"
              for (sensor, t) in at if sensor == f.sensor_id and f.start <= t <= f.end}
    assert all(r.temperature < 38 for key, r in at.items() if key not in spikes)


def test_readings_at_records_labels_at_the_given_times() -> None:
    always_silent = FaultRates(spike=0, stuck=0, silent=1.0, silent_seconds=(100, 100))
    sim = Simulator(seed=1, start=T0, faults=always_silent)
    t = T0 + timedelta(hours=1)
    assert sim.readings_at(t) == []
    assert [(f.kind, f.start, f.end) for f in sim.labels] == [
        ("silent", t, t + timedelta(seconds=100))] * 5


def test_a_drift_creeps_slowly_and_leaves_everything_else_unchanged() -> None:
    drifting = FaultRates(drift=1e-3, drift_per_hour=(3.0, 3.0),
                          drift_seconds=(3600.0, 3600.0))
    on = Simulator(seed=4, start=T0, faults=drifting)
    off = Simulator(seed=4, start=T0, faults=replace(drifting, drift=0.0))
    a, b = values(on, 5 * 5400), values(off, 5 * 5400)  # 3 hours
    assert off.labels == [] or all(f.kind != "drift" for f in off.labels)
    drifts = [f for f in on.labels if f.kind == "drift"]
    assert drifts and all(abs(f.detail) == 3.0 for f in drifts)
    assert all(f.end - f.start == timedelta(hours=1) for f in drifts)
    assert [f for f in on.labels if f.kind != "drift"] == off.labels
    for (sensor, t_on, h_on, ts), (_, t_off, h_off, _) in zip(a, b, strict=True):
        assert h_on == h_off  # humidity never drifts
        spell = [f for f in drifts if f.sensor_id == sensor and f.start <= ts < f.end]
        if any(f.sensor_id == sensor and f.start <= ts <= f.end for f in off.labels):
            continue  # a spike or a stuck spell: its own values
        if not spell:
            assert t_on == t_off
        else:  # off by the rate times the time since the drift began (± rounding)
            hours = (ts - spell[0].start).total_seconds() / 3600
            assert t_on - t_off == pytest.approx(spell[0].detail * hours, abs=0.011)
    # Slow: never more than 3 °C/h, so a tick (2 s) moves it by well under a noise step.
    assert max(abs(f.detail) for f in drifts) <= 3.0


def test_drift_is_seedable_rare_by_default_and_off_in_none() -> None:
    assert FaultRates.none().drift == 0.0
    a, b = Simulator(seed=3, start=T0), Simulator(seed=3, start=T0)
    for sim in (a, b):
        for _ in sim.stream(duration=600):
            pass
    assert a.labels == b.labels
    # About one drift per sensor per fortnight at one reading every 2 s.
    per_sensor_per_day = FaultRates().drift * 43_200
    assert 0.03 < per_sensor_per_day < 0.2
    assert FaultRates().drift_per_hour == (0.5, 3.0)


def test_labels_to_frame() -> None:
    sim = Simulator(seed=9, start=T0)
    for _ in sim.stream(duration=600):
        pass
    frame = simulate.labels_to_frame(sim.labels)
    assert list(frame.columns) == ["kind", "sensorId", "start", "end", "detail"]
    assert len(frame) == len(sim.labels) and str(frame["start"].dtype) == "datetime64[us, UTC]"
    assert list(simulate.labels_to_frame([]).columns) == list(frame.columns)


def test_frame_holds_the_stream_s_readings_and_labels() -> None:
    a, b = Simulator(seed=9, start=T0), Simulator(seed=9, start=T0)
    frame = a.frame(1200)
    rows = [(r.sensor_id, r.temperature, r.humidity, r.location, r.timestamp)
            for r in b.stream(duration=1200)]
    assert list(frame.columns) == ["sensorId", "temperature", "humidity", "location", "timestamp"]
    assert rows == list(zip(frame["sensorId"].astype(str), frame["temperature"],
                            frame["humidity"], frame["location"].astype(str),
                            frame["timestamp"], strict=True))
    assert a.labels == b.labels and a.labels
    # It carries on the same clock as stream().
    assert next(iter(a.stream(count=1))).timestamp == T0 + timedelta(seconds=1200)


def test_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet simulated for months keeps its newest labels only (the producer service)."""
    whole = Simulator(seed=9, start=T0)
    for _ in whole.stream(duration=3600):
        pass
    monkeypatch.setattr(Simulator, "MAX_LABELS", 8)
    bounded = Simulator(seed=9, start=T0)
    for _ in bounded.stream(duration=3600):
        pass
    assert len(whole.labels) > 8 >= len(bounded.labels) >= 4
    assert bounded.labels == whole.labels[-len(bounded.labels):]  # spells still extended
