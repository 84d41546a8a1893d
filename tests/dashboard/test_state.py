"""The dashboard's pure state and HTML rendering, without Kafka or a browser."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensorlib.config import Settings
from sensorlib.dashboard import render, serve_command
from sensorlib.dashboard.feed import stale_after
from sensorlib.dashboard.state import (
    AlertView,
    LagHistory,
    LiveState,
    default_stale_after,
    relative_time,
    select_sensors,
)
from sensorlib.errors import ConfigError
from sensorlib.model.events import Alert, Reading

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


# -- incremental samples (what a card has not drawn yet) -----------------------------


def test_samples_after_a_seq_are_only_the_new_ones() -> None:
    state = LiveState()
    state.add_reading(reading("sensor-01", 0))
    state.add_reading(reading("sensor-02", 0))
    first, full = state.samples("sensor-02")
    assert full and len(first) == 1
    seen = first[-1].seq
    assert state.samples("sensor-02", seen) == ([], False)
    state.add_reading(reading("sensor-02", 2, temperature=25.0))
    samples, full = state.samples("sensor-02", seen)
    assert not full and [s.temperature for s in samples] == [25.0]
    assert state.samples("nobody", 0) == ([], True)


def test_a_late_reading_asks_for_a_redraw() -> None:
    state = LiveState()
    for at in (0, 2, 4):
        state.add_reading(reading(at=at))
    seen = state.sensors()[0].version
    state.add_reading(reading(at=1))
    samples, full = state.samples("sensor-01", seen)
    assert full and len(samples) == 4


def test_many_boards_do_not_grow_the_state() -> None:
    state = LiveState(max_samples=50)
    for i in range(1000):
        state.add_reading(reading(f"sensor-{i % 5}", i))
        if i % 10 == 0:
            state.board(query="sensor", page=3)  # sessions come and go; the state keeps no trace
    assert sum(len(state.window_samples(v.sensor_id)) for v in state.sensors()) == 250


# -- stale ---------------------------------------------------------------------------


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def test_a_silent_sensor_turns_stale_after_stale_after_by_arrival() -> None:
    clock = Clock(T0)
    state = LiveState(stale_after=timedelta(seconds=10), clock=clock)
    state.add_reading(reading("quiet", 0, temperature=36.0))
    state.add_reading(reading("chatty", 0))
    clock.advance(9.9)
    state.add_reading(reading("chatty", 2))
    assert {v.sensor_id: v.status for v in state.sensors()} == {"chatty": "normal",
                                                                "quiet": "critical"}
    clock.advance(0.2)  # 10.1 s since "quiet" last reported
    views = {v.sensor_id: v for v in state.sensors()}
    assert views["quiet"].status == "stale" and views["quiet"].value_status == "critical"
    assert views["chatty"].status == "normal"
    state.add_reading(reading("quiet", 20, temperature=21.0))  # it speaks again
    assert {v.sensor_id: v.status for v in state.sensors()}["quiet"] == "normal"


def test_staleness_uses_arrival_not_event_time() -> None:
    clock = Clock(T0)
    state = LiveState(stale_after=timedelta(seconds=10), clock=clock)
    # A producer whose clock is an hour behind: its readings still arrive now.
    state.add_reading(reading("skewed", -3600))
    assert state.sensors()[0].status == "normal"
    # Read back at start-up: it reached the broker a minute ago, so it is stale already.
    state.add_reading(reading("old", 0), arrived=T0 - timedelta(minutes=1))
    # An arrival time in the future (a skewed broker clock) counts as now.
    state.add_reading(reading("future", 0), arrived=T0 + timedelta(hours=1))
    views = {v.sensor_id: v for v in state.sensors()}
    assert views["old"].status == "stale" and views["future"].status == "normal"
    clock.advance(10.5)
    assert views["future"].arrived == T0
    assert {v.sensor_id: v.status for v in state.sensors()}["future"] == "stale"


def test_a_back_filled_reading_never_moves_arrival_backwards() -> None:
    clock = Clock(T0)
    state = LiveState(stale_after=timedelta(seconds=10), clock=clock)
    state.add_reading(reading("s", 2))
    state.add_reading(reading("s", 0), arrived=T0 - timedelta(minutes=1))
    assert state.sensors()[0].arrived == T0


@pytest.mark.parametrize(("interval", "seconds"), [(0.5, 10), (2, 10), (5, 15), (60, 180)])
def test_default_stale_after_is_three_intervals_at_least_ten_seconds(interval: float,
                                                                     seconds: float) -> None:
    assert default_stale_after(interval) == timedelta(seconds=seconds)


def test_stale_after_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings().replace(interval=5.0)
    assert stale_after(settings) == timedelta(seconds=15)
    configured = Settings.from_env({"SENSORLIB_STALE_AFTER": "1m", "SENSORLIB_INTERVAL": "5"})
    assert stale_after(configured) == timedelta(minutes=1)
    for bad in ("0", "soon", "-3s"):
        with pytest.raises(ConfigError, match="SENSORLIB_STALE_AFTER"):
            Settings.from_env({"SENSORLIB_STALE_AFTER": bad})
    with pytest.raises(ValueError, match="stale_after"):
        LiveState(stale_after=timedelta(0))


# -- the board: worst first, filtered, paginated ---------------------------------------


def fleet(clock: Clock, *, critical: int = 0, warning: int = 0, stale: int = 0,
          normal: int = 0) -> LiveState:
    """A state with that many sensors of each status (ids say which)."""
    state = LiveState(stale_after=timedelta(seconds=10), clock=clock)
    for status, n, temperature in (("critical", critical, 40.0), ("warning", warning, 32.0),
                                   ("stale", stale, 20.0), ("normal", normal, 20.0)):
        for i in range(n):
            arrived = T0 - timedelta(minutes=1) if status == "stale" else None
            state.add_reading(reading(f"{status}-{i:04d}", 0, temperature,
                                      location=f"Hall {i % 7}"), arrived=arrived)
    return state


def test_board_is_worst_first_and_capped() -> None:
    state = fleet(Clock(T0), critical=3, warning=5, stale=4, normal=988)
    board = state.board(size=24)
    assert [v.status for v in board.views] == (["critical"] * 3 + ["warning"] * 5
                                               + ["stale"] * 4 + ["normal"] * 12)
    assert [v.sensor_id for v in board.views[:3]] == ["critical-0000", "critical-0001",
                                                      "critical-0002"]
    assert (board.total, board.matched, board.more, board.pages) == (1000, 1000, 976, 42)
    assert (board.first, board.last) == (1, 24)
    assert board.by_status == {"critical": 3, "warning": 5, "stale": 4, "normal": 988}


def test_board_pages_and_clamps() -> None:
    state = fleet(Clock(T0), critical=2, normal=48)
    second = state.board(page=1, size=24)
    assert (second.first, second.last, second.page) == (25, 48, 1)
    last = state.board(page=99, size=24)
    assert (last.page, last.first, last.last, len(last.views)) == (2, 49, 50, 2)
    assert state.board(page=-5, size=24).page == 0


def test_board_search_and_status_filter() -> None:
    state = fleet(Clock(T0), critical=3, warning=5, normal=92)
    found = state.board(query="  NORMAL-0042 ")
    assert [v.sensor_id for v in found.views] == ["normal-0042"] and found.matched == 1
    hall = state.board(query="hall 0")  # the location counts too: ids 0, 7, 14, … of each kind
    assert hall.matched == 1 + 1 + 14
    assert [v.sensor_id for v in hall.views[:3]] == ["critical-0000", "warning-0000",
                                                     "normal-0000"]
    warnings = state.board(status="warning")
    assert warnings.matched == 5 and {v.status for v in warnings.views} == {"warning"}
    assert warnings.by_status["normal"] == 92  # the counts are of the whole fleet
    nothing = state.board(query="no such sensor")
    assert (nothing.views, nothing.matched, nothing.first, nothing.pages) == ([], 0, 0, 1)
    with pytest.raises(ValueError, match="status"):
        state.board(status="purple")
    with pytest.raises(ValueError, match="size"):
        select_sensors([], size=0)


def test_a_thousand_sensors_fit_under_the_cap() -> None:
    state = LiveState()
    for i in range(1000):
        state.add_reading(reading(f"s-{i:04d}"))
    assert state.counts().sensors == 1000 == len(state.sensors())


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
    assert argv[1:3] == ["-m", "sensorlib.dashboard.server"]  # panel serve + the Host guard
    assert argv[3].endswith("sensorlib/dashboard/scripts/live.py")  # in the package (a wheel)
    assert Path(argv[3]).is_file() and Path(argv[argv.index("--setup") + 1]).is_file()
    assert argv[argv.index("--port") + 1] == "5999"
    assert argv[argv.index("--address") + 1] == "127.0.0.1"
    origins = [argv[i + 1] for i, a in enumerate(argv) if a == "--allow-websocket-origin"]
    assert sorted(origins) == ["127.0.0.1:5999", "localhost:5999"]
    wide = Settings().replace(dashboard_port=5006, host="0.0.0.0",
                              allowed_hosts=("Dash.Example.com", "10.0.0.7", "proxy.example:443"))
    origins = [a for i, a in enumerate(serve_command(wide)) if i and
               serve_command(wide)[i - 1] == "--allow-websocket-origin"]
    assert sorted(origins) == ["10.0.0.7:5006", "127.0.0.1:5006", "dash.example.com:5006",
                               "localhost:5006", "proxy.example:443"]  # loopback names stay
    assert "*" not in " ".join(origins)


# -- rendering of the new states ---------------------------------------------------------


def test_a_stale_card_is_grey_and_says_for_how_long() -> None:
    clock = Clock(T0)
    state = LiveState(stale_after=timedelta(seconds=10), clock=clock)
    state.add_reading(reading("s", 0, temperature=40.0))
    clock.advance(75)
    card = render.sensor_card(state.sensors()[0], clock.at)
    assert 'data-status="stale"' in card and "badge-stale" in card and ">STALE<" in card
    assert "no reading for 1 min · last values CRITICAL" in card
    assert render.STATUS_COLOURS["stale"] == "#8b949e"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_board_summary_escapes_the_search(payload: str) -> None:
    state = fleet(Clock(T0), critical=1, normal=30)
    summary = render.board_summary(state.board(query=payload), payload)
    assert "<img" not in summary and "<script" not in summary and 'onmouseover="' not in summary
    summary = render.board_summary(state.board(), "")
    assert "31 sensors" in summary and "Showing 1–24, worst first" in summary
    assert 'data-more="7"' in summary and "and 7 more" in summary
    assert 'data-status-count="critical">1 critical' in summary


def test_sparklines_are_numbers_only_and_bounded() -> None:
    state = LiveState(max_samples=10_000)
    for i in range(2000):  # 2,000 readings in the window, one spike
        state.add_reading(reading("s", i * 0.1, temperature=80.0 if i == 1234 else 20.0 + i % 3,
                                  location="<img src=x onerror=alert(1)>"))
    svg = render.sparklines(state.window_samples("s"))
    lines = re.findall(r'<polyline points="([^"]*)"', svg)
    assert len(lines) == 2
    for points in lines:
        assert re.fullmatch(r"[0-9., -]+", points)
        assert len(points.split()) <= render.SPARK_POINTS
    top = min(float(p.split(",")[1]) for p in lines[0].split())
    assert top == 2.0  # the one-reading spike survives the downsampling
    assert "<img" not in svg and 'data-points="2000"' in svg


def test_sparklines_of_one_or_no_sample() -> None:
    assert "<polyline" not in render.sparklines([]) and "<circle" not in render.sparklines([])
    state = LiveState()
    state.add_reading(reading("s", 0))
    one = render.sparklines(state.window_samples("s"))
    assert one.count("<circle") == 2 and "<polyline" not in one


def test_sparklines_span_at_most_the_window() -> None:
    state = LiveState(window=timedelta(minutes=10))
    for i in range(0, 600, 2):  # 10 minutes of readings
        state.add_reading(reading("s", i))
    svg = render.sparklines(state.window_samples("s"), timedelta(minutes=5))
    assert 'data-points="151"' in svg  # the last 5 minutes only


def test_cards_show_the_thresholds_in_force_for_their_sensor() -> None:
    from sensorlib.engine.detect import RuleConfig, SensorRules

    state = LiveState(clock=lambda: T0)
    state.add_reading(reading("sensor-01"))
    state.add_reading(reading("sensor-03", location="Cold Storage"))
    assert [v.alert_above for v in state.sensors()] == [None, None]  # not known yet
    assert "limits" not in render.sensor_card(state.sensors()[0], T0)
    before = state.version
    state.set_rules(RuleConfig(per_sensor=(
        SensorRules({"temperature_threshold": 8.0}, location="Cold Storage"),
        SensorRules({"humidity_threshold": 70.0}, sensor_id="sensor-01"))), "abc123")
    assert state.version > before  # the cards are redrawn
    one, three = state.sensors()
    assert (one.alert_above, three.alert_above) == ((35.0, 70.0), (8.0, 90.0))
    card = render.sensor_card(one, T0)
    assert "alerts above 35 °C · 70 %" in card and 'title="rule settings abc123' in card
    state.set_rules(RuleConfig(per_sensor=()))
    assert state.sensors()[1].alert_above == (35.0, 90.0)


def test_a_card_above_its_own_threshold_is_a_warning_like_its_alert() -> None:
    from sensorlib.engine.detect import RuleConfig, SensorRules

    state = LiveState(clock=lambda: T0)
    state.add_reading(reading("sensor-03", temperature=12.0, location="Cold Storage"))
    state.add_reading(reading("sensor-01", temperature=12.0))
    assert [v.status for v in state.sensors()] == ["normal", "normal"]  # no limits known yet
    state.set_rules(RuleConfig(per_sensor=(
        SensorRules({"temperature_threshold": 8.0}, location="Cold Storage"),)))
    by_id = {v.sensor_id: v for v in state.sensors()}
    assert by_id["sensor-03"].status == "warning" and by_id["sensor-01"].status == "normal"
    state.add_reading(reading("sensor-03", at=1.0, temperature=36.0, location="Cold Storage"))
    assert {v.sensor_id: v.status for v in state.sensors()}["sensor-03"] == "critical"


def test_the_limits_cache_stays_bounded_when_a_sensor_keeps_moving() -> None:
    from sensorlib.engine.detect import RuleConfig

    state = LiveState(clock=lambda: T0, max_sensors=5)
    state.set_rules(RuleConfig())
    for i in range(100):
        state.add_reading(reading("sensor-01", at=i, location=f"room {i}"))
        assert state.sensors()[0].alert_above == (35.0, 90.0)
    assert len(state._limits) <= 10
