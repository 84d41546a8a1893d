"""No date arithmetic overflows for any reading that validation lets through (issue 12).

Readings with event times anywhere in :data:`sensorlib.model.limits.TIMESTAMP_RANGE` — its
edges included — go through the windows, every rule, ticks and cooldowns, in any order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sensorlib.engine.detect import RuleConfig
from sensorlib.engine.pipeline import Pipeline
from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.model.events import parse_reading
from sensorlib.model.limits import TIMESTAMP_RANGE
from sensorlib.model.times import format_timestamp

LOW, HIGH = TIMESTAMP_RANGE
LAST = HIGH - timedelta(microseconds=1)
EDGES = [LOW, LOW + timedelta(microseconds=1), LOW + timedelta(days=1), LAST,
         LAST - timedelta(days=1), datetime(1970, 1, 1, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC)]
times = st.one_of(st.sampled_from(EDGES),
                  st.datetimes(LOW.replace(tzinfo=None), LAST.replace(tzinfo=None),
                               timezones=st.just(UTC)))


def wire(sensor: str, temperature: float, at: datetime) -> bytes:
    return (f'{{"SensorId": "{sensor}", "Temperature": {temperature}, "Humidity": 50, '
            f'"Timestamp": "{format_timestamp(at)}"}}').encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.floats(-100, 200), times),
                min_size=1, max_size=12))
def test_any_valid_reading_goes_through_windows_rules_and_ticks(
        events: list[tuple[str, float, datetime]]) -> None:
    pipeline = Pipeline(rules=RuleConfig(silent_after=timedelta(seconds=1),
                                         cooldown=timedelta(days=365 * 50)))
    for sensor, temperature, at in events:
        reading = parse_reading(wire(sensor, temperature, at))  # validation lets it through
        pipeline.process(reading)
        pipeline.tick(at)
    for a in pipeline.aggregates():
        assert a.window_start < a.window_end
    due = pipeline.detector.next_silence()
    if due is not None:
        pipeline.tick(min(due + timedelta(seconds=1), LAST))
    pipeline.tick(LAST)


@settings(max_examples=100, deadline=None)
@given(st.lists(times, min_size=1, max_size=30))
def test_replay_over_extreme_times_ticks_without_overflow(stamps: list[datetime]) -> None:
    readings = [parse_reading(wire("a", 20.0, t)) for t in sorted(stamps)]
    list(Pipeline(clock="event").replay(readings))


@given(st.sampled_from(EDGES), times)
def test_the_time_window_check_never_overflows(now: datetime, stamp: datetime) -> None:
    window = EventTimeWindow(timedelta(days=365 * 100), timedelta(days=365 * 100))
    window.error(stamp, now)
    low, high = window.bounds_us(0)
    assert low < 0 < high
