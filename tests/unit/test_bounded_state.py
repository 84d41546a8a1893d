"""Per-sensor state is bounded: a cap on distinct sensors, eviction of long-silent ones,
storms of silences folded into one fleet alert, and ticks that cost what falls due.

Live (one by one, or in batches) and offline (``replay``/``run_frame``) agree on all of it:
differential tests over random fleets with many sensors, gaps long enough to evict, and a cap.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorlib.engine.detect import FLEET, RuleConfig
from sensorlib.engine.pipeline import DEFAULT_MAX_SENSORS, Pipeline, TooManySensors, run_frame
from sensorlib.engine.runs import MIN_RUN
from sensorlib.model.events import Reading, alert_id, new_reading
from sensorlib.model.rejections import InvalidReading
from sensorlib.model.times import from_us, to_us

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
DETECTED = datetime(2026, 11, 29, 13, tzinfo=UTC)
RULES = RuleConfig(silent_after=timedelta(seconds=3), cooldown=timedelta(seconds=5),
                   outlier_min_samples=10, silent_storm=4)
WINDOW = timedelta(seconds=60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def reading(sensor: str, seconds: float, temperature: float = 20.0,
            humidity: float = 50.0) -> Reading:
    return new_reading(sensor, temperature, humidity, "Hall", at(seconds))


def frame_of(readings: list[Reading]) -> pd.DataFrame:
    frame = pd.DataFrame([r.to_dict() for r in readings])
    frame["timestamp"] = pd.Series([r.timestamp for r in readings], dtype="datetime64[us, UTC]")
    return frame


def rows(alerts: list) -> list[dict]:
    return [{k: v for k, v in a.to_dict().items() if k != "detectedAt"} for a in alerts]


# -- the cap -------------------------------------------------------------------------------

def test_a_new_sensor_beyond_the_cap_is_refused_with_a_reason() -> None:
    p = Pipeline(max_sensors=3)
    for i in range(3):
        p.process(reading(f"s{i}", i))
    with pytest.raises(TooManySensors) as refused:
        p.process(reading("s3", 5))
    assert isinstance(refused.value, InvalidReading)  # the processor's dead-letter path
    assert str(refused.value) == "sensorId: more than 3 distinct sensors (SENSORLIB_MAX_SENSORS)"
    assert [(e.field, e.reason) for e in refused.value.errors] == [
        ("sensorId", "more than 3 distinct sensors (SENSORLIB_MAX_SENSORS)")]
    assert p.watermark == at(2)  # a refused reading moves nothing
    p.process(reading("s0", 6))  # known sensors go on
    assert (len(p), p.stats.refused, p.stats.processed) == (3, 1, 4)


def test_batches_list_what_they_refuse_in_arrival_order() -> None:
    p = Pipeline(max_sensors=2, clock=lambda: DETECTED)
    batch = [(r, to_us(r.timestamp)) for r in
             [reading("a", 0), reading("b", 1), reading("c", 2, 50.0), reading("a", 3),
              reading("d", 4), reading("b", 5)]]
    raised = p.process_batch_us(batch)
    assert [i for i, _ in p.refused] == [2, 4]
    assert all(isinstance(exc, TooManySensors) for _, exc in p.refused)
    assert raised == []  # c's threshold alert was never raised: c was refused
    assert [a.sensor_id for a in p.aggregates()] == ["a", "b"]
    p.process_batch_us(batch[:1])
    assert p.refused == []  # reset by every call
    assert Pipeline().max_sensors == DEFAULT_MAX_SENSORS


def test_the_cap_frees_up_as_silent_sensors_are_evicted() -> None:
    p = Pipeline(window=WINDOW, rules=RULES, max_sensors=2)
    for s in ("a", "b"):
        p.process(reading(s, 0))
        p.process(reading(s, 1))
    with pytest.raises(TooManySensors):
        p.process(reading("c", 2))
    evict = p.evict_after.total_seconds()
    p.process(reading("a", evict - 1))  # a streams on, b falls silent
    p.tick(at(evict + 2))
    assert p.windows.sensors() == ["a"] and p.stats.evicted == 1
    p.process(reading("c", evict + 3))
    assert p.windows.sensors() == ["a", "c"]


# -- eviction ------------------------------------------------------------------------------

def test_a_silent_sensor_is_evicted_after_its_silent_alert_and_comes_back_fresh() -> None:
    p = Pipeline(window=WINDOW, rules=RULES, clock=lambda: DETECTED)
    assert p.evict_after == WINDOW + RULES.silent_after  # max(window, cooldown) + silence
    p.process(reading("s", 0))
    p.process(reading("s", 1, 41.0))  # a threshold alert: a cooldown to forget later
    p.process(reading("s", -100))  # late: counted in its window
    assert [a.rule for a in p.tick(at(5))] == ["silent"]
    assert p.tick(at(62)) == [] and len(p) == 1  # 61 s of silence: not yet
    assert p.tick(at(64.5)) == [] and len(p) == 0  # over 63 s: evicted, silently
    assert p.aggregates() == [] and len(p.detector) == 0
    assert p.detector._last_alert == {} and p.stats.evicted == 1
    assert p.process(reading("s", 70, 41.0))[0].rule == "threshold"  # no cooldown left
    (agg,) = p.aggregates()
    assert (agg.count, agg.late) == (1, 0)  # a fresh window
    assert p.tick(at(100)) == []  # one reading: not watched for silence yet


def test_a_sensor_back_after_evict_after_starts_fresh_with_or_without_a_tick() -> None:
    def run(tick: bool) -> tuple[list, list]:
        p = Pipeline(window=WINDOW, rules=RuleConfig(stuck_readings=3, silent_after=timedelta(
            seconds=3), rules=frozenset({"stuck", "silent", "threshold"})), clock=lambda: DETECTED)
        alerts = [*p.process(reading("s", 0)), *p.process(reading("s", 1))]
        if tick:
            alerts += p.tick(at(100))
        alerts += p.process(reading("s", 101))  # the third equal reading, after 100 s
        alerts += p.process(reading("s", 102))
        return rows(alerts), [(a.count, a.window_start) for a in p.aggregates()]

    ticked, unticked = run(True), run(False)
    assert [a["rule"] for a in ticked[0]] == ["silent"]  # no stuck run across the gap
    assert unticked[0] == [] and ticked[1] == unticked[1] == [(2, at(102) - WINDOW)]


def test_eviction_can_be_turned_off_and_must_follow_the_silence() -> None:
    p = Pipeline(window=WINDOW, rules=RULES, evict_after=None)
    p.process(reading("s", 0))
    p.tick(at(10 ** 6))
    assert len(p) == 1
    with pytest.raises(ValueError, match="longer than silent_after"):
        Pipeline(rules=RULES, evict_after=timedelta(seconds=2))


# -- storms --------------------------------------------------------------------------------

def storm(n: int) -> list[Reading]:
    """n sensors stream for 10 s, then all stop within a second."""
    out = [reading(f"s{i:03d}", t + i / n) for t in range(10) for i in range(n)]
    return out + [reading("keeper", t) for t in range(0, 40, 2)]


def test_a_storm_of_silences_is_one_fleet_alert() -> None:
    p = Pipeline(window=WINDOW, rules=RULES, clock="event")
    alerts = list(p.replay(sorted(storm(50), key=lambda r: r.timestamp)))
    silent = [a for a in alerts if a.rule == "silent"]
    single = [a for a in silent if a.sensor_id != FLEET]
    (fleet,) = [a for a in silent if a.sensor_id == FLEET]
    # Silences fall due at 12.00-12.98 s (slots of 10 s): the first 4 one by one.
    assert [a.sensor_id for a in single] == ["s000", "s001", "s002", "s003"]
    assert fleet.reason.startswith("Silent fleet: 46 more sensors fell silent (no reading "
                                   "for over 3s) in the 10s from 2026-11-29 12:00:10 UTC, "
                                   "after 4 alerted one by one: s004, s005, s006, s007, "
                                   "s008 and 41 more")
    assert fleet.severity == "critical" and fleet.timestamp == at(9 + 49 / 50)
    assert fleet.alert_id == alert_id(f"{FLEET}|s004", "silent", at(10))
    assert fleet.detected_at == at(20)  # at the slot's end
    assert p.stats.alerts["silent"] == 5


@pytest.mark.parametrize("every", [0.1, 1.0, 3.3, 10.0])
def test_the_fold_does_not_depend_on_how_often_ticks_come(every: float) -> None:
    readings = sorted(storm(30), key=lambda r: r.timestamp)
    _, offline = run_frame(frame_of(readings), window=WINDOW,
                           rules=RULES)
    p = Pipeline(window=WINDOW, rules=RULES, clock=lambda: DETECTED)
    got = []
    k = 0
    for r in readings:  # ticks up to the last reading, as the replay does
        while at((k + 1) * every) <= r.timestamp:
            k += 1
            got += p.tick(at(k * every))
        got += p.process(r)
    assert sorted(a.alert_id for a in got) == sorted(offline["alertId"])
    assert len([a for a in got if a.rule == "silent"]) == RULES.silent_storm + 1
    assert [a.reason for a in got if a.sensor_id == FLEET] == list(
        offline.loc[offline["sensorId"] == FLEET, "reason"])


def test_no_fold_when_turned_off() -> None:
    rules = RuleConfig(silent_after=timedelta(seconds=3), silent_storm=None)
    p = Pipeline(window=WINDOW, rules=rules, clock="event")
    alerts = list(p.replay(sorted(storm(30), key=lambda r: r.timestamp)))
    assert len([a for a in alerts if a.rule == "silent"]) == 30


# -- tick cost -----------------------------------------------------------------------------

def test_a_tick_costs_what_falls_due_not_how_many_sensors_were_seen() -> None:
    def tick_seconds(n: int) -> float:
        p = Pipeline(window=WINDOW, rules=RULES, max_sensors=None)
        for i in range(n):  # each streams: watched for silence, due at 4 s or later
            p.process(reading(f"s{i}", 0))
            p.process(reading(f"s{i}", 1 + i / n))
        p.tick(at(1.5))
        started = time.perf_counter()
        for k in range(200):
            p.tick(at(1.5 + k / 1000))  # nothing due: each costs O(1)
        return time.perf_counter() - started

    small, large = min(tick_seconds(10) for _ in range(3)), min(tick_seconds(30_000)
                                                                for _ in range(2))
    assert large < 20 * small + 0.01, (small, large)  # 30,000 sensors once took a sort each


def test_memory_stays_bounded_under_a_flood_of_sensor_ids() -> None:
    p = Pipeline(window=WINDOW, rules=RULES, max_sensors=1000, clock=lambda: DETECTED)
    silent = 0
    for wave in range(20):  # 20 waves of 500 new ids, 2 readings each, 100 s apart
        base = wave * 100
        batch = [(r, to_us(r.timestamp)) for i in range(500)
                 for r in (reading(f"w{wave}-{i}", base), reading(f"w{wave}-{i}", base + 1))]
        p.process_batch_us(batch)
        for k in range(1, 100, 5):
            silent += len(p.tick(at(base + k)))
        assert len(p) <= 1000 and len(p.detector) <= 1000
        assert len(p.detector._silences) <= 1000 and len(p.detector._evictions) <= 1000
    assert p.stats.refused == 0 and p.stats.evicted == 20 * 500 - len(p)
    assert silent == 20 * (RULES.silent_storm + 1)  # each wave: 4 of their own + 1 fleet


# -- live and offline agree, with many sensors, eviction and a cap (property) ------------------

def fleet_stream(seed: int) -> list[Reading]:
    """Many sensors; some stream on, some stop, some come back after long gaps; odd ids
    keep arriving (a flood); values with spikes and stuck runs."""
    rnd = random.Random(seed)
    n = rnd.randint(5, 80)
    sensors = [f"s{i:02d}" for i in range(n)]
    clock = dict.fromkeys(sensors, 0.0)
    value = {s: rnd.uniform(15, 30) for s in sensors}
    out = []
    for _ in range(rnd.randint(100, 2500)):
        roll = rnd.random()
        if roll < 0.05:
            s = f"flood-{rnd.randint(0, 10**6)}"
            clock.setdefault(s, max(clock.values()))
        else:
            s = rnd.choice(sensors[: max(1, int(n * rnd.uniform(0.2, 1)))])
        step = rnd.choice([0.5, 1.0, 2.0, 2.0, 4.0]) if rnd.random() > 0.01 else \
            rnd.choice([70.0, 200.0])  # gaps beyond the silence and beyond eviction
        clock[s] += step
        if rnd.random() > 0.05:
            value[s] = value.get(s, 20.0) + rnd.gauss(0, 0.2) + (
                rnd.choice([-5, 5, 20]) if rnd.random() < 0.02 else 0)
        t = min(max(value.get(s, 20.0), -50), 150)
        out.append(new_reading(s, round(t, 1), 50.0, "Hall", at(clock[s])))
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([None, 10, 40]),
       st.sampled_from([RULES, RuleConfig(silent_after=timedelta(seconds=3), silent_storm=0,
                                          cooldown=timedelta(seconds=1)),
                        RuleConfig(silent_after=timedelta(seconds=5), silent_storm=None)]))
def test_one_by_one_batches_and_replay_agree_with_eviction(seed: int, cap: int | None,
                                                           rules: RuleConfig) -> None:
    rnd = random.Random(seed)
    readings = fleet_stream(seed)
    # Live: arrival order (not sorted), ticks between polls at the watermark; one by one
    # and in batches give the same alerts, refusals and state.
    one = Pipeline(window=WINDOW, rules=rules, clock=lambda: DETECTED, max_sensors=cap)
    batched = Pipeline(window=WINDOW, rules=rules, clock=lambda: DETECTED, max_sensors=cap)
    expected: list = []
    got: list = []
    refused_one: list[int] = []
    refused_batched: list[int] = []
    i = 0
    while i < len(readings):
        chunk = readings[i:i + rnd.choice([1, 7, MIN_RUN, 100, 600])]
        for j, r in enumerate(chunk):
            try:
                expected += one.process(r)
            except TooManySensors:
                refused_one.append(i + j)
        got += [a for _, found in batched.process_batch_us(
            [(r, to_us(r.timestamp)) for r in chunk]) for a in found]
        refused_batched += [i + j for j, _ in batched.refused]
        i += len(chunk)
        now = one.watermark
        assert now is not None
        now += timedelta(seconds=rnd.choice([0, 1, 5]))
        expected += one.tick(now)
        got += batched.tick(now)
    assert refused_batched == refused_one
    per_sensor = defaultdict(list)
    for a in rows(expected):
        per_sensor[a["sensorId"]].append(a)
    assert {s: [a for a in rows(got) if a["sensorId"] == s] for s in per_sensor} == per_sensor
    assert len(got) == len(expected)
    assert [(a.sensor_id, a.count, a.late, a.window_end) for a in one.aggregates()] == [
        (a.sensor_id, a.count, a.late, a.window_end) for a in batched.aggregates()]
    assert one.stats.evicted == batched.stats.evicted
    if cap is not None:
        assert len(one) <= cap
    # Offline: sorted by time, run_frame equals a live pipeline ticking at every boundary.
    ordered = sorted(readings, key=lambda r: r.timestamp)
    _, offline = run_frame(frame_of(ordered), window=WINDOW,
                           rules=rules, max_sensors=cap)
    live = Pipeline(window=WINDOW, rules=rules, clock="event", max_sensors=cap)
    step = 10_000_000
    alerts: list = []
    wm = None
    for r in ordered:
        ts = to_us(r.timestamp)
        if wm is not None:
            for boundary in range((wm // step + 1) * step, ts + 1, step):
                alerts += live.tick(from_us(boundary))
        try:
            alerts += live.process(r)
        except TooManySensors:
            pass
        wm = ts if wm is None else max(wm, ts)
    assert list(offline["alertId"]) == [a.alert_id for a in alerts]
    assert list(offline["reason"]) == [a.reason for a in alerts]
