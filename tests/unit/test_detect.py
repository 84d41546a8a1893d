"""Anomaly rules: boundaries, severities, cooldowns, silences, late readings (pure)."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta

import pytest

from sensorlib.engine import detect
from sensorlib.engine.detect import ALL_RULES, Detector, RuleConfig
from sensorlib.engine.windows import WindowStore
from sensorlib.model.events import Alert, Reading, alert_id, status_of

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
DETECTED = datetime(2030, 1, 1, tzinfo=UTC)


def reading(seconds: float, temperature: float = 20.0, humidity: float = 50.0,
            sensor: str = "s1") -> Reading:
    return Reading(sensor_id=sensor, temperature=temperature, humidity=humidity,
                   location="Lab", timestamp=T0 + timedelta(seconds=seconds))


class Harness:
    """A detector plus windows, fed in the documented order (observe, then add)."""

    def __init__(self, **config: object) -> None:
        self.detector = Detector(RuleConfig(**config), clock=lambda: DETECTED)  # type: ignore[arg-type]
        self.windows = WindowStore(timedelta(minutes=5))

    def feed(self, r: Reading) -> list[Alert]:
        window = self.windows.window(r.sensor_id)
        alerts = self.detector.observe(r, window)
        window.add(r)
        return alerts

    def rules(self, r: Reading) -> list[str]:
        return [a.rule for a in self.feed(r)]

    def tick(self, seconds: float) -> list[Alert]:
        return self.detector.tick(T0 + timedelta(seconds=seconds))


# -- threshold ----------------------------------------------------------------------------

@pytest.mark.parametrize(("temperature", "humidity", "fires"), [
    (35.0, 50.0, False), (35.01, 50.0, True), (20.0, 90.0, False), (20.0, 90.01, True),
])
def test_threshold_is_strictly_greater(temperature: float, humidity: float, fires: bool) -> None:
    h = Harness(rules=frozenset({"threshold"}))
    assert h.rules(reading(0, temperature, humidity)) == (["threshold"] if fires else [])


@pytest.mark.parametrize(("temperature", "humidity", "reason", "severity"), [
    (42.5, 95.0, "High temperature: 42.5°C, High humidity: 95.0%", "critical"),
    (42.5, 50.0, "High temperature: 42.5°C", "critical"),
    (36.04, 50.0, "High temperature: 36.0°C", "critical"),
    (40.0, 50.0, "High temperature: 40.0°C", "critical"),
    (20.0, 95.01, "High humidity: 95.0%", "critical"),
    (20.0, 91.0, "High humidity: 91.0%", "critical"),
])
def test_threshold_reason_and_severity(temperature: float, humidity: float, reason: str,
                                       severity: str) -> None:
    (alert,) = Harness().feed(reading(0, temperature, humidity))
    assert (alert.rule, alert.reason, alert.severity) == ("threshold", reason, severity)
    # One definition of critical: the alert says what the reading's dashboard card shows.
    assert alert.severity == status_of(temperature, humidity)


def test_a_lower_threshold_alerts_with_the_cards_status() -> None:
    h = Harness(temperature_threshold=30.0)
    (alert,) = h.feed(reading(0, 32.0, 50.0))
    assert alert.severity == "warning" == status_of(32.0, 50.0)


def test_alert_carries_the_triggering_reading() -> None:
    r = reading(3, 41.0, 60.0)
    (alert,) = Harness().feed(r)
    assert (alert.sensor_id, alert.location, alert.temperature, alert.humidity,
            alert.timestamp) == ("s1", "Lab", 41.0, 60.0, r.timestamp)
    assert alert.detected_at == DETECTED
    assert alert.alert_id == alert_id("s1", "threshold", r.timestamp)


def test_thresholds_are_configurable() -> None:
    h = Harness(temperature_threshold=25.0, humidity_threshold=60.0)
    assert h.feed(reading(0, 25.5, 61.0))[0].reason == "High temperature: 25.5°C, High humidity: 61.0%"


# -- cooldown -----------------------------------------------------------------------------

def test_cooldown_holds_back_repeats_of_one_rule_for_one_sensor() -> None:
    h = Harness()
    assert h.rules(reading(0, 41.0)) == ["threshold"]
    assert h.rules(reading(10, 41.0)) == []
    assert h.rules(reading(59.999, 41.0)) == []
    assert h.rules(reading(60, 41.0)) == ["threshold"]  # one full minute later
    assert h.rules(reading(61, 41.0, sensor="s2")) == ["threshold"]  # other sensor


def test_cooldown_is_event_time_so_a_late_replay_of_old_data_still_alerts() -> None:
    h = Harness()
    assert h.rules(reading(600, 41.0)) == ["threshold"]
    # A late reading from 10 minutes earlier: a real measurement, outside the cooldown.
    assert h.rules(reading(0, 41.0)) == ["threshold"]
    assert h.rules(reading(630, 41.0)) == []  # the cooldown of the newest alert holds


def test_cooldowns_are_per_rule() -> None:
    h = Harness(rate_of_change=1.0)
    assert h.rules(reading(0, 41.0)) == ["threshold"]
    assert h.rules(reading(10, 20.0)) == ["rate_of_change"]


def test_alert_ids_do_not_depend_on_the_clock() -> None:
    a = Detector(clock=lambda: T0).observe(reading(0, 41.0), WindowStore().window("s1"))
    b = Detector(clock=lambda: DETECTED).observe(reading(0, 41.0), WindowStore().window("s1"))
    assert a[0].alert_id == b[0].alert_id and a[0].detected_at != b[0].detected_at


# -- rate of change -----------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "temperature", "fires"), [
    (10, 25.0, True),  # 30 °C/min
    (10, 15.0, True),  # falling as fast
    (60, 25.0, False),  # 5 °C/min
    (6, 21.9, False),  # 19 °C/min but under 2 °C: sensor noise, not a trend
    (12, 22.0, False),  # exactly 10 °C/min: not above
])
def test_rate_of_change(seconds: float, temperature: float, fires: bool) -> None:
    h = Harness(rules=frozenset({"rate_of_change"}))
    h.feed(reading(0, 20.0))
    alerts = h.feed(reading(seconds, temperature))
    assert [a.rule for a in alerts] == (["rate_of_change"] if fires else [])
    if fires:
        direction, sign = ("rose", "+") if temperature > 20 else ("fell", "-")
        assert alerts[0].reason == f"Temperature {direction} 5.0°C in 10s ({sign}30.0°C/min)"


def test_rate_is_measured_over_the_minimum_span_not_between_close_readings() -> None:
    # A 24 °C jump 1 ms after the previous reading is not "-1,440,000 °C/min": the rate is
    # taken over at least rate_min_span (10 s) of event time.
    h = Harness(rules=frozenset({"rate_of_change"}))
    h.feed(reading(0, 44.0))
    alerts = h.feed(reading(0.001, 20.0))
    assert [a.reason for a in alerts] == ["Temperature fell 24.0°C in 1ms (-144.0°C/min)"]


def test_rate_compares_with_the_newest_reading_at_least_the_span_old() -> None:
    h = Harness(rules=frozenset({"rate_of_change"}))
    reasons = []
    for i in range(36):  # 1 °C every 2 s: 30 °C/min, over 10 s once 10 s have passed
        reasons += [a.reason for a in h.feed(reading(2 * i, 20.0 + i))]
    assert reasons == ["Temperature rose 2.0°C in 4s (+12.0°C/min)",  # divided by 10 s
                       "Temperature rose 5.0°C in 10s (+30.0°C/min)"]  # after the cooldown
    steady = Harness(rules=frozenset({"rate_of_change"}))
    # ±0.75 °C of noise at 100 readings/s around a slow 1 °C/min drift: never a rate alert.
    noisy = [20.0 + i / 6000 + (0.75 if i % 2 else -0.75) for i in range(5000)]
    assert not any(steady.rules(reading(i / 100, t)) for i, t in enumerate(noisy))


def test_rate_needs_time_to_pass_and_ignores_out_of_order() -> None:
    h = Harness(rules=frozenset({"rate_of_change"}))
    h.feed(reading(10, 20.0))
    assert h.rules(reading(10, 30.0)) == []  # same instant: no rate
    assert h.rules(reading(5, 30.0)) == []  # older than the newest: no "consecutive" pair
    assert h.rules(reading(11, 30.0)) == ["rate_of_change"]


# -- stuck --------------------------------------------------------------------------------

def test_stuck_after_ten_identical_readings_and_reset_by_any_change() -> None:
    h = Harness(rules=frozenset({"stuck"}))
    for i in range(9):
        assert h.rules(reading(i * 2, 21.5, 40.0)) == []
    (alert,) = h.feed(reading(18, 21.5, 40.0))
    assert (alert.rule, alert.reason) == ("stuck", "Stuck: same values for 10 readings")
    h.feed(reading(20, 21.5, 40.1))  # humidity moved: not stuck any more
    for i in range(8):  # the reading at 20 s was the first of this run
        assert h.rules(reading(100 + i * 2, 21.5, 40.1)) == []
    assert h.rules(reading(116, 21.5, 40.1)) == ["stuck"]


def test_a_long_stuck_run_repeats_only_after_the_cooldown() -> None:
    h = Harness(rules=frozenset({"stuck"}))
    fired = [i for i in range(100) if h.rules(reading(i * 2, 21.5, 40.0))]
    assert fired == [9, 39, 69, 99]  # every 60 s of event time


def test_stuck_needs_both_values_equal() -> None:
    h = Harness(rules=frozenset({"stuck"}))
    assert not any(h.rules(reading(i, 21.5, 40.0 + i % 2)) for i in range(30))


# -- silent -------------------------------------------------------------------------------

def test_silent_once_per_silence_and_rearmed_when_the_sensor_speaks() -> None:
    h = Harness()
    last = reading(0, 20.0)
    h.feed(reading(-2, 20.0))
    h.feed(last)
    assert h.tick(30) == []  # exactly 30 s: not more than silent_after
    (alert,) = h.tick(45)
    assert (alert.rule, alert.severity, alert.reason) == ("silent", "warning",
                                                          "Silent: no reading for 45s")
    assert alert.timestamp == last.timestamp
    assert alert.alert_id == alert_id("s1", "silent", last.timestamp)
    assert h.tick(50) == [] and h.tick(500) == []  # the same silence
    h.feed(reading(600, 20.0))
    assert h.tick(620) == []
    (again,) = h.tick(700)
    assert again.alert_id != alert.alert_id


def test_silent_per_sensor_and_only_for_sensors_seen() -> None:
    h = Harness()
    assert h.tick(1000) == []
    h.feed(reading(-2, sensor="b"))
    h.feed(reading(0, sensor="b"))
    h.feed(reading(0, sensor="a"))
    h.feed(reading(40, sensor="a"))
    assert [a.sensor_id for a in h.tick(45)] == ["b"]
    assert [a.sensor_id for a in h.tick(80)] == ["a"]


def test_a_one_off_reading_never_falls_silent() -> None:
    h = Harness()
    h.feed(reading(0, sensor="sensor-test"))  # e.g. the reference walkthrough's POST
    assert h.tick(10_000) == []
    h.feed(reading(20_000, sensor="sensor-test"))  # now it streams
    assert [a.rule for a in h.tick(20_031)] == ["silent"]


def test_silence_is_not_ended_by_a_late_or_older_reading() -> None:
    h = Harness()
    h.feed(reading(398))
    h.feed(reading(400))
    assert len(h.tick(440)) == 1
    h.feed(reading(10))  # late (older than the window): says nothing about now
    h.feed(reading(300))  # out of order: not newer than what we have
    assert h.tick(450) == []


def test_next_silence() -> None:
    d = Detector()
    assert d.next_silence() is None
    d.observe(reading(3), WindowStore().window("s1"))
    assert d.next_silence() is None  # one reading: not streaming yet
    d.observe(reading(5), WindowStore().window("s1"))
    assert d.next_silence() == T0 + timedelta(seconds=35)
    d.tick(T0 + timedelta(seconds=36))
    assert d.next_silence() is None


# -- outlier ------------------------------------------------------------------------------

def steady(h: Harness, n: int) -> None:
    for i in range(n):
        h.feed(reading(i, 20.0 + (i % 2) * 2.0, 50.0 + (i % 2)))  # mean 21, std 1


def test_outlier_needs_min_samples() -> None:
    h = Harness(rules=frozenset({"outlier"}))
    steady(h, 29)
    assert h.rules(reading(29, 30.0)) == []  # 29 readings in the window before it
    h = Harness(rules=frozenset({"outlier"}))
    steady(h, 30)
    (alert,) = h.feed(reading(30, 30.0))
    assert alert.reason == "Outlier: temperature 30.0°C is 9.0σ from window mean 21.0°C"


def test_outlier_compares_with_the_window_before_the_reading() -> None:
    for value, fires in ((25.0, False), (25.1, True)):  # 4σ exactly is not more than 4σ
        h = Harness(rules=frozenset({"outlier"}))
        steady(h, 30)
        assert h.rules(reading(30, value)) == (["outlier"] if fires else [])
        assert len(h.windows.window("s1")) == 31  # added after it was judged


def test_outlier_on_humidity_and_the_std_floor() -> None:
    def fresh() -> Harness:
        h = Harness(rules=frozenset({"outlier"}))
        for i in range(40):
            h.feed(reading(i, 20.0, 50.0))  # perfectly steady: std 0, floors apply
        return h

    assert fresh().rules(reading(40, 23.9, 57.9)) == []  # within 4 × 1 °C and 4 × 2 %
    alerts = fresh().feed(reading(40, 20.0, 58.5))
    assert alerts[0].reason == "Outlier: humidity 58.5% is 4.2σ from window mean 50.0%"


# -- late readings, rule selection ----------------------------------------------------------

def test_late_readings_only_feed_the_threshold_rule() -> None:
    h = Harness(stuck_readings=2, rate_of_change=0.1)
    for i in range(40):
        h.feed(reading(1000 + i, 20.0 + (i % 2) * 2.0))
    old = reading(0, 45.0)  # way past the window
    assert h.rules(old) == ["threshold"]
    assert h.rules(reading(1, 45.0)) == []  # same values again, late: no stuck, no rate
    assert h.windows.window("s1").late == 2


def test_disabled_rules_stay_quiet_and_unknown_rules_are_refused() -> None:
    h = Harness(rules=frozenset())
    assert h.rules(reading(0, 41.0)) == [] and h.tick(999) == []
    with pytest.raises(ValueError, match="unknown rules"):
        RuleConfig(rules=frozenset({"threshold", "psychic"}))
    assert {"threshold", "rate_of_change", "stuck", "silent", "outlier"} == ALL_RULES


def test_forget_drops_a_sensor() -> None:
    h = Harness()
    h.feed(reading(0, 41.0))
    h.detector.forget(["s1"])
    assert h.tick(100) == []
    assert h.rules(reading(10, 41.0)) == ["threshold"]  # cooldown forgotten too


def test_docstring_examples() -> None:
    assert doctest.testmod(detect).failed == 0
