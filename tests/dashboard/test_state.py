"""The dashboard's pure state and HTML rendering, without Kafka or a browser."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensorlib.config import Settings
from sensorlib.dashboard import render, serve_command
from sensorlib.dashboard.state import (
    AlertView,
    LagHistory,
    LiveState,
    SessionCursor,
    relative_time,
)
from sensorlib.events import Alert, Reading

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def reading(sensor: str = "sensor-01", at: float = 0.0, temperature: float = 22.0,
            humidity: float = 55.0, location: str = "Warehouse A") -> Reading:
    return Reading(sensor_id=sensor, temperature=temperature, humidity=humidity,
                   location=location, timestamp=T0 + timedelta(seconds=at))


def alert(n: int, severity: str = "critical", sensor: str = "sensor-05", at: float = 0.0,
          reason: str = "High temperature: 42.5°C") -> Alert:
    t = T0 + timedelta(seconds=at)
    return Alert(alert_id=f"a-{n}", sensor_id=sensor, location="Production Floor",
                 temperature=42.5, humidity=60.0, timestamp=t, detected_at=t, rule="threshold",
                 severity=severity, reason=reason)


# -- relative time ------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "just now"), (0.4, "just now"), (1, "1 s ago"), (12.9, "12 s ago"), (59, "59 s ago"),
    (60, "1 min ago"), (3599, "59 min ago"), (3600, "1 h ago"), (86400 * 3, "3 d ago"),
    (-5, "in 5 s"),
])
def test_relative_time(seconds: float, text: str) -> None:
    assert relative_time(T0, T0 + timedelta(seconds=seconds)) == text


# -- readings -----------------------------------------------------------------------


def test_latest_values_status_and_location_per_sensor() -> None:
    state = LiveState()
    state.add_reading(reading("sensor-02", 0, 24.0, 60.0, "Warehouse B"))
    state.add_reading(reading("sensor-01", 0, 31.0, 50.0))
    state.add_reading(reading("sensor-01", 2, 36.5, 50.0))
    views = state.sensors()
    assert [v.sensor_id for v in views] == ["sensor-01", "sensor-02"]
    assert (views[0].temperature, views[0].status) == (36.5, "critical")
    assert views[1].status == "normal" and views[1].location == "Warehouse B"


@pytest.mark.parametrize(("temperature", "humidity", "status"), [
    (35.0, 90.0, "warning"), (35.1, 50.0, "critical"),
    (20.0, 90.1, "critical"), (30.1, 50.0, "warning"), (20.0, 80.1, "warning"),
    (30.0, 80.0, "normal"),
])
def test_status_follows_the_reference_rules(temperature: float, humidity: float,
                                            status: str) -> None:
    state = LiveState()
    state.add_reading(reading(temperature=temperature, humidity=humidity))
    assert state.sensors()[0].status == status


def test_window_is_bounded_by_event_time_and_count() -> None:
    state = LiveState(window=timedelta(minutes=5), max_samples=100)
    for i in range(400):  # 400 readings, 2 s apart: 13 minutes
        state.add_reading(reading(at=2 * i))
    samples = state.window_samples("sensor-01")
    assert len(samples) == 100  # the count cap bites first here
    state = LiveState(window=timedelta(minutes=5), max_samples=10_000)
    for i in range(400):
        state.add_reading(reading(at=2 * i))
    samples = state.window_samples("sensor-01")
    assert samples[-1].timestamp - samples[0].timestamp <= timedelta(minutes=5)
    assert len(samples) == 151
    assert state.counts().readings_total == 400


def test_late_readings_are_slotted_in_by_event_time() -> None:
    state = LiveState()
    for at in (0, 10, 4, 2, 12):
        state.add_reading(reading(at=at, temperature=float(at)))
    assert [s.temperature for s in state.window_samples("sensor-01")] == [0, 2, 4, 10, 12]
    assert state.sensors()[0].temperature == 12.0  # latest by event time, not by arrival


def test_sensor_count_is_capped_least_recently_updated_first() -> None:
    state = LiveState(max_sensors=3)
    for name in ("a", "b", "c"):
        state.add_reading(reading(name))
    state.add_reading(reading("a", 1))
    state.add_reading(reading("d"))
    assert [v.sensor_id for v in state.sensors()] == ["a", "c", "d"]


# -- alerts -------------------------------------------------------------------------


def test_alert_feed_is_newest_first_deduplicated_and_bounded() -> None:
    state = LiveState(max_alerts=5)
    for n in (3, 1, 7, 2):
        assert state.add_alert(alert(n, at=n))
    assert not state.add_alert(alert(7, at=7))  # a replayed alert is not shown twice
    assert [a.alert_id for a in state.alerts()] == ["a-7", "a-3", "a-2", "a-1"]
    for n in range(10, 20):
        state.add_alert(alert(n, at=n, severity="warning"))
    feed = state.alerts()
    assert len(feed) == 5 and feed[0].alert_id == "a-19"
    counts = state.counts()
    assert (counts.alerts_total, counts.alerts_critical, counts.alerts_warning) == (14, 4, 10)


# -- sessions -----------------------------------------------------------------------


def test_cursor_returns_only_what_changed() -> None:
    state = LiveState()
    cursor = SessionCursor(state)
    state.add_reading(reading("sensor-01", 0))
    state.add_reading(reading("sensor-02", 0))
    first = cursor.poll()
    assert first.new_sensors == ["sensor-01", "sensor-02"]
    assert all(full for _, full in first.samples.values())
    assert cursor.poll().empty
    state.add_reading(reading("sensor-02", 2, temperature=25.0))
    update = cursor.poll()
    assert [v.sensor_id for v in update.sensors] == ["sensor-02"]
    samples, full = update.samples["sensor-02"]
    assert not full and [s.temperature for s in samples] == [25.0]
    state.add_alert(alert(1))
    assert cursor.poll().alerts_changed


def test_cursor_redraws_after_a_late_reading() -> None:
    state = LiveState()
    cursor = SessionCursor(state)
    for at in (0, 2, 4):
        state.add_reading(reading(at=at))
    cursor.poll()
    state.add_reading(reading(at=1))
    samples, full = cursor.poll().samples["sensor-01"]
    assert full and len(samples) == 4


def test_many_sessions_do_not_grow_the_state() -> None:
    state = LiveState(max_samples=50)
    for i in range(1000):
        state.add_reading(reading(f"sensor-{i % 5}", i))
        if i % 10 == 0:
            SessionCursor(state).poll()  # sessions come and go; the state keeps no trace
    assert sum(len(state.window_samples(v.sensor_id)) for v in state.sensors()) == 250


def test_lag_history_is_bounded_by_time() -> None:
    history = LagHistory(span=timedelta(minutes=10))
    for i in range(200):
        history.add(T0 + timedelta(seconds=5 * i), {"processor": i, "dashboard": 0})
    series = history.series()
    assert set(series) == {"processor", "dashboard"}
    assert len(series["processor"]) == 121  # 10 minutes at one point every 5 s
    history.add(T0 + timedelta(seconds=1000), {"processor": 1})
    assert set(history.series()) == {"processor"}


# -- rendering ----------------------------------------------------------------------

PAYLOADS = ["<img src=x onerror=alert(1)>", 'x" onmouseover="alert(2)', "<script>alert(3)</script>",
            "a'b", "&amp;"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_rendered_html_never_contains_raw_markup_from_data(payload: str) -> None:
    state = LiveState()
    state.add_reading(reading(payload, location=payload))
    state.add_alert(alert(1, sensor=payload, reason=payload))
    card = render.sensor_card(state.sensors()[0], T0)
    feed = render.alert_feed(state.alerts(), T0)
    for fragment in (card, feed):
        assert "<img" not in fragment and "<script" not in fragment
        assert 'onmouseover="' not in fragment
        assert html.escape(payload, quote=True) in fragment
    # Every attribute value is one quoted token: the payload cannot open a new attribute.
    assert re.search(r'data-sensor="[^"]*"', card).group(0) == (
        f'data-sensor="{html.escape(payload, quote=True)}"')


@given(st.text(min_size=1, max_size=64))
def test_escaping_holds_for_any_text(value: str) -> None:
    out = render.text(value)
    assert "<" not in out and ">" not in out and '"' not in out and "'" not in out
    assert html.unescape(out) == value


def test_unknown_severity_cannot_inject_a_class() -> None:
    feed = render.alert_feed([_as_view(alert(1), 'x" y')], T0)
    assert 'sev-normal' in feed and 'x"' not in feed


def _as_view(a: Alert, severity: str) -> AlertView:
    return AlertView(alert_id=a.alert_id, sensor_id=a.sensor_id, location=a.location,
                     severity=severity, reason=a.reason, rule=a.rule,
                     temperature=a.temperature, humidity=a.humidity, timestamp=a.timestamp,
                     detected_at=a.detected_at)


def test_banner_only_when_kafka_is_down() -> None:
    state = LiveState(clock=lambda: T0)
    assert render.kafka_banner(state.kafka, "localhost:9092", T0) == ""
    state.set_kafka(False, "no broker accepts connections")
    banner = render.kafka_banner(state.kafka, "localhost:9092", T0 + timedelta(seconds=7))
    assert "Kafka unreachable at localhost:9092 for 7 s" in banner
    state.set_kafka(True)
    assert state.kafka.ok


def test_serve_command() -> None:
    settings = Settings().replace(dashboard_port=5999, host="127.0.0.1")
    argv = serve_command(settings)
    assert argv[1:4] == ["-m", "panel", "serve"]
    assert argv[4].endswith("dashboards/live.py")
    assert argv[argv.index("--port") + 1] == "5999"
    assert argv[argv.index("--address") + 1] == "127.0.0.1"
    origins = [argv[i + 1] for i, a in enumerate(argv) if a == "--allow-websocket-origin"]
    assert "127.0.0.1:5999" in origins and "localhost:5999" in origins
