"""The ML score rule (sensorlib/rules/ml_score.py) through the real pipeline: it finds an
injected slow drift and a spike, stays quiet on a sensor that only wanders, and its state is
rebuilt by ``Pipeline.warm`` (the processor's path on assignment) to the same alerts.

Its two checks are held to the same alerts by tests/unit/test_rules_contract.py, which
discovers it in the registry like every rule.
"""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest

from sensorlib.engine.detect import RuleConfig
from sensorlib.engine.pipeline import Pipeline
from sensorlib.model.events import Reading, new_reading
from sensorlib.model.times import from_us, to_us
from sensorlib.processor.warmup import MAX_WARMUP, warm_span
from sensorlib.rules.ml_score import MLScoreSettings, river_missing

MISSING = river_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

T0_US = 1_795_000_000_000_000
STEP_US = 2_000_000  # the reference fleet's interval: a reading every 2 s
PER_HOUR = 1800
DAY = 24 * PER_HOUR
WINDOW = timedelta(seconds=60)


def wandering(seed: int, n: int, *, drift_per_hour: float = 0.0, drift_from: int = 0,
              spikes: frozenset[int] = frozenset()) -> list[Reading]:
    """One sensor like the simulator's: temperature and humidity wandering around 22 °C and
    55 % (±1.5 °C, ±3 %, 5-minute reversion) with sensor noise; optionally a drift of
    ``drift_per_hour`` °C/h from reading ``drift_from`` on, and 45 °C spikes."""
    rnd = random.Random(seed)
    keep = math.exp(-2 / 300)
    shake = math.sqrt(1 - keep * keep)
    t, h, out = 22.0, 55.0, []
    for i in range(n):
        t = 22.0 + (t - 22.0) * keep + 1.5 * shake * rnd.gauss(0, 1)
        h = 55.0 + (h - 55.0) * keep + 3.0 * shake * rnd.gauss(0, 1)
        temperature = t + rnd.gauss(0, 0.05) + drift_per_hour * max(0, i - drift_from) / PER_HOUR
        if i in spikes:
            temperature = 45.0
        out.append(new_reading("s1", round(temperature, 2), round(h + rnd.gauss(0, 0.05), 2),
                               "Hall", from_us(T0_US + i * STEP_US)))
    return out


def pipeline(settings: MLScoreSettings | None = None) -> Pipeline:
    config = RuleConfig(rules=frozenset({"ml_score"}),
                        rule_settings={"ml_score": settings or MLScoreSettings()})
    return Pipeline(window=WINDOW, rules=config, clock="event")


def alerts_of(p: Pipeline, readings: list[Reading]) -> list[tuple[int, str]]:
    """(reading number, reason) of each alert, through the pipeline's batched path."""
    out = []
    for start in range(0, len(readings), 500):
        batch = [(r, to_us(r.timestamp)) for r in readings[start:start + 500]]
        for _, found in p.process_batch_us(batch):
            out.extend(((to_us(a.timestamp) - T0_US) // STEP_US, a.reason) for a in found
                       if a.rule == "ml_score")
    return out


def test_it_finds_a_slow_drift_that_no_threshold_catches() -> None:
    # A day of normal readings, then the temperature creeps 1 °C per hour: after 2 h it is
    # still inside the sensor's own ±1.5 °C wander (and far from any threshold).
    readings = wandering(3, DAY + 8 * PER_HOUR, drift_per_hour=1.0, drift_from=DAY)
    found = alerts_of(pipeline(), readings)
    assert found, "the drift was not found"
    first, reason = found[0]
    assert first > DAY, f"alert before the drift began: {reason}"
    assert "temperature drifting" in reason
    assert (first - DAY) / PER_HOUR < 6  # hours after it began (about 4 with the defaults)


def test_it_finds_a_spike() -> None:
    spikes = frozenset({2 * PER_HOUR, 3 * PER_HOUR})
    readings = wandering(4, 4 * PER_HOUR, spikes=spikes)
    found = alerts_of(pipeline(), readings)
    assert [i for i, _ in found] == sorted(spikes)
    assert all("temperature 45.0°C is a spike" in reason for _, reason in found)


def test_it_stays_quiet_on_a_sensor_that_only_wanders() -> None:
    for seed in (0, 1):
        readings = wandering(seed, 2 * DAY)
        assert alerts_of(pipeline(), readings) == [], seed


def test_nothing_before_the_warm_up_ends() -> None:
    readings = wandering(5, 1000, spikes=frozenset({500}))
    assert alerts_of(pipeline(MLScoreSettings(ml_warmup=1000)), readings) == []
    assert [i for i, _ in alerts_of(pipeline(MLScoreSettings(ml_warmup=100)), readings)] == [500]


def test_its_state_is_rebuilt_by_warm_like_the_windows() -> None:
    # The processor rebuilds a partition's state with Pipeline.warm over its history: a
    # pipeline warmed over the history gives the same alerts afterwards as the one that
    # lived through it (small horizons, so the drift shows within the test's readings).
    settings = MLScoreSettings(ml_warmup=300, ml_level=100, ml_baseline=2000)
    readings = wandering(6, 6000, drift_per_hour=6.0, drift_from=4000,
                         spikes=frozenset({3500, 4500}))
    history, rest = readings[:3000], readings[3000:]
    lived, rebuilt, cold = pipeline(settings), pipeline(settings), pipeline(settings)
    alerts_of(lived, history)
    rebuilt.warm(history)
    expected = alerts_of(lived, rest)
    assert {r.split(",")[0].split(" is")[0] for _, r in expected} >= {
        "ML score: temperature drifting", "ML score: temperature 45.0°C"}
    assert alerts_of(rebuilt, rest) == expected
    # Without the history the model is a different one (it starts learning afresh).
    assert alerts_of(cold, rest) != expected


def test_a_restarted_processor_replays_the_history_the_model_needs() -> None:
    # The processor re-reads warm_span(window, detector.warmup) of a partition on
    # assignment and warms a fresh pipeline with it (Processor.on_assigned): with the ML
    # rule on that is its ml_history (a day by default), not the window plus two minutes,
    # so a restart gives the alerts of a processor that never stopped.
    readings = wandering(7, 3 * PER_HOUR, spikes=frozenset({int(2.2 * PER_HOUR),
                                                            int(2.7 * PER_HOUR)}))
    restart = 2 * PER_HOUR
    lived, restarted = pipeline(), pipeline()
    span = warm_span(WINDOW, restarted.detector.warmup)
    assert span == timedelta(hours=24)
    alerts_of(lived, readings[:restart])
    expected = alerts_of(lived, readings[restart:])
    assert [i for i, _ in expected] == [int(2.2 * PER_HOUR), int(2.7 * PER_HOUR)]

    def history(span: timedelta) -> list[Reading]:
        since = to_us(readings[restart].timestamp) - span // timedelta(microseconds=1)
        return [r for r in readings[:restart] if to_us(r.timestamp) >= since]

    restarted.warm(history(span))
    assert alerts_of(restarted, readings[restart:]) == expected
    # The old replay (window + 2 min) left the model cold: it learns afresh for ml_warmup
    # readings and misses both spikes.
    short = pipeline()
    short.warm(history(warm_span(WINDOW, None)))
    assert alerts_of(short, readings[restart:]) == []
    # Bounded: a rule asking for more than MAX_WARMUP gets MAX_WARMUP; default rules ask
    # for nothing more than the window.
    greedy = pipeline(MLScoreSettings(ml_history=timedelta(days=3)))
    assert warm_span(WINDOW, greedy.detector.warmup) == MAX_WARMUP
    assert Pipeline(window=timedelta(seconds=60)).detector.warmup is None
