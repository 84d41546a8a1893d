"""Every registered rule's columnar check raises what its single-reading check raises.

The test discovers the rules in the registry (built-in, entry points, ``register``): for
each, over generated in-order series of one sensor (noise, drifts, spikes, fast rises, stuck
spells, gaps), with the real window's moments, the rule's ``update`` reading by reading and
its ``update_many`` over random runs must give the same findings (positions, severities,
reasons, quantities, in order) and leave the same per-sensor state. A rule that declines a
run (returns None) is judged reading by reading there, as the pipeline does.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorlib import rules
from sensorlib.engine.detect import RuleConfig
from sensorlib.engine.pipeline import Pipeline
from sensorlib.engine.windows import SensorWindow
from sensorlib.model.events import new_reading
from sensorlib.model.times import from_us
from sensorlib.rules import SEQUENCE, TICK, Finding, Rule, Run

T0_US = 1_795_000_000_000_000
WINDOW = timedelta(seconds=60)


def series(seed: int, n: int) -> list[tuple[int, float, float]]:
    """One sensor's in-order readings: (event time µs, temperature, humidity)."""
    rnd = random.Random(seed)
    ts, t, h = T0_US, rnd.uniform(-5, 30), rnd.uniform(20, 80)
    out, stuck = [], 0
    for _ in range(n):
        ts += int(rnd.choice([0.1, 0.5, 1.0, 2.0, 2.0, 70.0]) * 1e6) if rnd.random() > 0.01 \
            else 400_000_000
        if stuck:
            stuck -= 1
        else:
            t += rnd.gauss(0, 0.05) + (rnd.choice([-4, 4]) if rnd.random() < 0.02 else 0)
            h += rnd.gauss(0, 0.1)
            t, h = min(max(t, -50), 150), min(max(h, 0), 100)
            if rnd.random() < 0.01:
                stuck = rnd.randint(3, 15)
        temp, hum = t, h
        if rnd.random() < 0.01:
            temp = rnd.choice([38.0, 45.5, -20.0])
        if rnd.random() < 0.005:
            hum = rnd.choice([92.0, 99.0])
        out.append((ts, round(temp, 2), round(hum, 2)))
    return out


def reading(ts: int, temp: float, hum: float) -> Any:
    return new_reading("s", temp, hum, "Hall", from_us(ts))


def cases() -> list[tuple[str, Any]]:
    out = []
    for name, cls in rules.registry().items():
        if cls.sees == TICK:
            continue
        for setting in (cls.Settings(), *cls.examples):
            out.append((name, setting))
    return out


def missing(name: str) -> str | None:
    """Why rule ``name`` cannot run here (e.g. ml_score without river), or None."""
    return rules.get(name).missing()


def one_by_one(rule: Rule[Any], data: list[tuple[int, float, float]], moments_from: int,
               ) -> tuple[list[tuple[int, Finding]], Any]:
    window = SensorWindow(WINDOW)
    ts, t, h = data[0]
    found = []
    first = rule.update(None, reading(ts, t, h), ts, None) if rule.sees != SEQUENCE else None
    if first is not None:
        found.append((0, first))
    state = rule.start(ts, t, h)
    window.add_us(reading(ts, t, h), ts)
    for j, (ts, t, h) in enumerate(data[1:], start=1):
        r = reading(ts, t, h)
        _, moments = window.before_us(ts, moments_from)
        f = rule.update(state, r, ts, moments)
        if f is not None:
            found.append((j, f))
        window.add_us(r, ts)
    return found, state


def in_runs(rule: Rule[Any], data: list[tuple[int, float, float]], moments_from: int,
            rnd: random.Random) -> tuple[list[tuple[int, Finding]], Any, int]:
    window = SensorWindow(WINDOW)
    ts, t, h = data[0]
    found = []
    first = rule.update(None, reading(ts, t, h), ts, None) if rule.sees != SEQUENCE else None
    if first is not None:
        found.append((0, first))
    state = rule.start(ts, t, h)
    window.add_us(reading(ts, t, h), ts)
    i, columnar = 1, 0
    while i < len(data):
        part = data[i:i + rnd.choice([1, 3, 24, 100, 1000])]
        ts_a = np.array([p[0] for p in part], np.int64)
        temp, hum = np.array([p[1] for p in part]), np.array([p[2] for p in part])
        count, moments, commit = window.plan_run(ts_a, temp, hum, moments_from)
        before = repr(state)
        done = rule.update_many(state, Run("s", ts_a, temp, hum, count, *(moments or ())))
        assert repr(state) == before, "update_many changed the state it was given"
        if done is None:  # declined: one by one, as the pipeline does
            for k, (ts, t, h) in enumerate(part):
                r = reading(ts, t, h)
                _, m = window.before_us(ts, moments_from)
                f = rule.update(state, r, ts, m)
                if f is not None:
                    found.append((i + k, f))
                window.add_us(r, ts)
        else:
            hits, state = done
            found.extend((i + j, f) for j, f in hits)
            commit("Hall")
            columnar += len(part)
        i += len(part)
    return found, state, columnar


CASES = cases()


def test_every_registered_rule_is_covered() -> None:
    # A rule that is registered is held to the contract: nothing is left out silently.
    checked = {name for name, _ in CASES}
    assert checked == {n for n, c in rules.registry().items() if c.sees != TICK}
    assert checked >= {"threshold", "rate_of_change", "stuck", "outlier"}


@pytest.mark.parametrize(("name", "setting"), [
    pytest.param(n, s, id=f"{n}-{i}",
                 marks=[pytest.mark.skip(reason=f"{n}: {why}")] if (why := missing(n)) else [])
    for i, (n, s) in enumerate(CASES)])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(2, 1500))
def test_columnar_check_equals_single_reading_check(name: str, setting: Any, seed: int,
                                                    n: int) -> None:
    cls = rules.get(name)
    data = series(seed, n)
    rule_a, rule_b = cls(setting), cls(setting)
    moments_from = rule_a.moments_from if rule_a.moments_from is not None else 10**9
    expected, state_a = one_by_one(rule_a, data, moments_from)
    got, state_b, _ = in_runs(rule_b, data, moments_from, random.Random(seed))
    assert got == expected
    assert state_b == state_a


def test_the_sensitive_settings_fire_and_mostly_take_the_columnar_path() -> None:
    # The generated series do exercise every rule (the test above could not fail otherwise).
    for name, setting in CASES:
        cls = rules.get(name)
        if setting == cls.Settings() or cls.missing():  # a rule that cannot run here: skipped above
            continue
        rule = cls(setting)
        moments_from = rule.moments_from if rule.moments_from is not None else 10**9
        data = series(5, 5000)
        found, _, columnar = in_runs(rule, data, moments_from, random.Random(5))
        assert len(found) > 5, name
        assert columnar > 0.5 * len(data), name


class _Cold(Rule[None]):
    """A rule written in a test: below a temperature."""

    name = "test_cold"
    sees = SEQUENCE

    class Settings:
        def __init__(self, below: float = 0.0) -> None:
            self.below = below

    def update(self, state: None, reading: Any, ts: int, moments: Any) -> Finding | None:
        if reading.temperature < self.settings.below:
            return Finding("warning", f"Cold: {reading.temperature:.1f}°C", "temperature")
        return None

    def update_many(self, state: None, run: Run) -> tuple[list[tuple[int, Finding]], None]:
        hits = np.flatnonzero(run.temperature < self.settings.below).tolist()
        return [(j, Finding("warning", f"Cold: {run.temperature[j]:.1f}°C", "temperature"))
                for j in hits], None


def test_a_registered_rule_runs_in_the_pipeline_both_ways() -> None:
    rules.register(_Cold)
    try:
        config = RuleConfig(rules=frozenset({"threshold", "test_cold"}),
                            rule_settings={"test_cold": _Cold.Settings(below=5.0)})
        data = [(ts, t - 10, h) for ts, t, h in series(11, 3000)]
        batch = [(reading(ts, t, h), ts) for ts, t, h in data]
        one = Pipeline(window=WINDOW, rules=config, clock=lambda: from_us(0))
        runs = Pipeline(window=WINDOW, rules=config, clock=lambda: from_us(0))
        expected = [a for r, ts in batch for a in one.process_us(r, ts)]
        got = [a for _, found in runs.process_batch_us(batch) for a in found]
        assert [a.to_dict() for a in got] == [a.to_dict() for a in expected]
        assert {a.rule for a in expected} == {"threshold", "test_cold"}
    finally:
        rules._REGISTRY.pop("test_cold", None)
