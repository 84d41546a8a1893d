"""The History tab: the shared zoomable view (plain), and the served tab in headless Chromium."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sensorlib.dashboard.history_tab import incidents_table
from sensorlib.ingest.simulate import FaultRates, Simulator
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.clients import make_producer
from sensorlib.model.events import Alert, alert_id
from sensorlib.notebook import plots
from sensorlib.notebook.incidents import incidents

HOSTILE = "<img src=x onerror=alert(7)>"
HOSTILE_REASON = "<b onmouseover=alert(9)>too hot</b>"


def _alerts(start: datetime) -> list[Alert]:
    """Two incidents: three alerts of the hostile sensor a minute apart (one incident), one
    of sensor-02 an hour later (another)."""
    out = []
    for sensor, minutes, reason, severity in (
            (HOSTILE, 30, HOSTILE_REASON, "critical"), (HOSTILE, 31, HOSTILE_REASON, "warning"),
            (HOSTILE, 32, HOSTILE_REASON, "critical"),
            ("sensor-02", 90, "high temperature 31.0 °C", "warning")):
        at = start + timedelta(minutes=minutes)
        out.append(Alert(alert_id=alert_id(sensor, "threshold", at), sensor_id=sensor,
                         location="<script>alert(8)</script>", temperature=36.0 + minutes / 100,
                         humidity=50.0, timestamp=at, detected_at=at, rule="threshold",
                         severity=severity, reason=reason))
    return out


def _frame(n: int = 20_000, sensors: int = 3) -> pd.DataFrame:
    ts = pd.date_range("2026-11-01", periods=n, freq="2s", tz="UTC")
    rng = np.random.default_rng(1)
    parts = [pd.DataFrame({"sensorId": f"sensor-0{i + 1}", "timestamp": ts,
                           "temperature": 20 + rng.standard_normal(n).cumsum() * 0.01,
                           "humidity": 50.0}) for i in range(sensors)]
    return pd.concat(parts, ignore_index=True).sort_values("timestamp", kind="stable")


def test_the_view_draws_fewer_points_than_readings_and_every_reading_zoomed_in() -> None:
    frame = _frame()
    view = plots.history_view(frame, "temperature", width=400)
    view.plot[()]  # the first draw: the whole period
    whole = dict(view.resolution)
    assert whole["visible"] == len(frame) and not whole["raw"]
    assert whole["drawn"] <= 3 * 400 // 2 + 10
    assert "mean line and min–max band per 5 min" in view.summary()
    ts = frame["timestamp"].drop_duplicates()
    view.range.event(x_range=(ts.iloc[100].tz_convert(None), ts.iloc[150].tz_convert(None)))
    view.plot[()]
    zoomed = view.resolution
    assert zoomed["raw"] and zoomed["visible"] < 3 * 60
    assert "every reading drawn" in view.summary()


def test_zoomed_out_a_mean_line_in_a_min_max_band_keeps_the_spike_and_long_silences() -> None:
    frame = _frame(n=10_000, sensors=1)
    frame.loc[frame.index[5_000], "temperature"] = 99.0
    frame = frame.drop(frame.index[7_000:7_100])  # 200 s silent
    frame = frame.drop(frame.index[2_000:2_600])  # 20 min silent
    view = plots.history_view(frame, width=300)
    whole = view.sample("sensor-01", None)
    assert len(whole.time) < 300 and whole.n == len(frame)
    # The one-reading spike reaches the band's top; the bucket's mean is far below it.
    assert np.nanmax(whole.high) == 99.0 and np.nanmax(whole.value) < 50
    filled = ~np.isnan(whole.value)
    assert (whole.low[filled] <= whole.value[filled]).all()
    assert (whole.value[filled] <= whole.high[filled]).all()
    # 20 min of silence empties whole buckets: a gap in the line and the band.
    assert 1 <= np.isnan(whole.value).sum() <= 6
    assert (np.isnan(whole.low) == np.isnan(whole.value)).all()
    # Zoomed in on the 200 s silence: single readings, the line broken once.
    t = frame["timestamp"].dt.tz_convert(None)
    near = view.sample("sensor-01", (t.iloc[6_300], t.iloc[6_700]))
    assert near.n < 600 and len(near.time) == near.n + 2 + 1  # edge readings + one break
    assert np.isnan(near.value).sum() == 1


def test_the_incidents_table_is_newest_first_with_plain_text_cells() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    frame = pd.DataFrame([{"alertId": a.alert_id, "sensorId": a.sensor_id,
                           "location": a.location, "temperature": a.temperature,
                           "humidity": a.humidity, "timestamp": pd.Timestamp(a.timestamp),
                           "rule": a.rule, "severity": a.severity, "reason": a.reason}
                          for a in _alerts(start)])
    table = incidents_table(incidents(frame))
    assert list(table["sensor"]) == ["sensor-02", HOSTILE]
    first = table.iloc[1]
    assert (first["start (UTC)"], first["end (UTC)"]) == ("2026-11-01 00:30:00",
                                                          "2026-11-01 00:32:00")
    assert first["lasted"] == "2 min" and first["alerts"] == 3
    assert first["severity"] == "critical" and first["first alert"] == HOSTILE_REASON
    assert incidents_table(incidents(frame.iloc[:0])).empty


@pytest.fixture(scope="module")
def history_dashboard(kit: Any, base_settings: Any, kafka_cluster: str,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three hours of the fleet (plus a hostile sensor id), and the dashboard served."""
    settings = kit.private_settings(base_settings, kafka_cluster)
    ensure_topics(settings)
    hours = 3
    start = datetime.now(UTC) - timedelta(hours=hours)
    producer = make_producer(settings, linger_ms=20)
    try:
        sim = Simulator(seed=5, faults=FaultRates.none(), interval=2.0, start=start)
        for reading in sim.stream(duration=hours * 3600):
            producer.send(settings.topic_readings, key=reading.sensor_id, value=reading.to_json())
        kit.produce_reading(settings, HOSTILE, 21.0, 50.0, "<script>alert(8)</script>")
        for alert in _alerts(start):
            producer.send(settings.topic_alerts, key=alert.sensor_id, value=alert.to_json())
        producer.flush(30)
    finally:
        producer.close()
    running = kit.start_dashboard(settings, tmp_path_factory.mktemp("history") / "panel.log")
    try:
        yield running
    finally:
        running.stop()


def _resolution(page: Any) -> dict[str, int]:
    node = page.locator(".history-resolution")
    return {"visible": int(node.get_attribute("data-visible")),
            "raw": int(node.get_attribute("data-raw")),
            "span": int(node.get_attribute("data-span"))}


@pytest.mark.kafka
@pytest.mark.browser
def test_the_history_tab_draws_and_zooming_asks_for_a_finer_resolution(
        page: Any, history_dashboard: Any, screenshot: Callable[[str], Path]) -> None:
    page.goto(history_dashboard.url)
    page.locator(".bk-tab", has_text="History").click()
    page.locator(".history-resolution").wait_for(timeout=40_000)
    plot = page.locator(".bk-Canvas").last  # the chart's canvas (Bokeh)
    plot.wait_for(timeout=15_000)
    first = _resolution(page)
    assert first["visible"] > 5 * 3 * 1800 * 0.9 and not first["raw"], first
    assert "points drawn" in page.locator(".history-resolution").inner_text()
    box = plot.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    deadline = time.monotonic() + 20
    seen = [first]
    while time.monotonic() < deadline and not (seen[-1]["span"] < first["span"] * 0.5
                                               and seen[-1]["visible"] < first["visible"] / 2):
        page.mouse.wheel(0, -400)  # wheel up: zoom in (the time axis)
        time.sleep(0.5)
        seen.append(_resolution(page))
    now = seen[-1]
    assert now["span"] < first["span"] * 0.5, seen
    assert now["visible"] < first["visible"] / 2, seen
    # A hostile sensor id from Kafka is a picker option and a legend entry, as text.
    assert page.locator("select option", has_text=HOSTILE).count() == 1
    assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    assert page.dialogs == []
    screenshot("history-tab-zoomed")


@pytest.mark.kafka
@pytest.mark.browser
def test_the_history_tab_lists_incidents_as_text_and_a_click_zooms_to_one(
        page: Any, history_dashboard: Any, screenshot: Callable[[str], Path]) -> None:
    page.goto(history_dashboard.url)
    page.locator(".bk-tab", has_text="History").click()
    note = page.locator(".history-incidents")
    note.wait_for(timeout=40_000)
    assert note.get_attribute("data-incidents") == "2", note.inner_text()
    assert note.get_attribute("data-alerts") == "4"
    first = _resolution(page)
    # The hostile sensor id and reason are cell text: shown as typed, never markup.
    cells = page.locator(".tabulator-cell")
    cells.filter(has_text=HOSTILE_REASON).first.wait_for(timeout=40_000)  # CI: 15 s was short
    assert cells.filter(has_text=HOSTILE).count() >= 1
    assert page.evaluate("document.querySelectorAll('img[src=x], b[onmouseover]').length") == 0
    # The newest incident is the first row (sensor-02); the hostile one the second.
    rows = page.locator(".tabulator-row").filter(has_text="threshold")
    assert rows.count() == 2 and "sensor-02" in rows.nth(0).inner_text()
    assert HOSTILE in rows.nth(1).inner_text()
    cells.filter(has_text=HOSTILE_REASON).first.click()
    deadline = time.monotonic() + 20
    now = _resolution(page)
    while time.monotonic() < deadline and now["span"] >= first["span"] / 4:
        time.sleep(0.3)
        now = _resolution(page)
    # 2 min of incident plus 2 min of margin on each side.
    assert 300 <= now["span"] <= 420, (first, now)
    assert now["raw"] == 1
    assert page.dialogs == []
    screenshot("history-tab-incidents")
