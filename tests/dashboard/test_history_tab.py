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

from sensorlib.ingest.simulate import FaultRates, Simulator
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.clients import make_producer
from sensorlib.notebook import plots

HOSTILE = "<img src=x onerror=alert(7)>"


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
    assert whole["drawn"] <= 3 * 400 + 10
    ts = frame["timestamp"].drop_duplicates()
    view.range.event(x_range=(ts.iloc[100].tz_convert(None), ts.iloc[150].tz_convert(None)))
    view.plot[()]
    zoomed = view.resolution
    assert zoomed["raw"] and zoomed["visible"] < 3 * 60
    assert "every reading drawn" in view.summary()


def test_a_silence_breaks_the_line_and_a_spike_survives_downsampling() -> None:
    frame = _frame(n=10_000, sensors=1)
    frame.loc[frame.index[5_000], "temperature"] = 99.0
    frame = frame.drop(frame.index[7_000:7_100])  # 200 s silent
    view = plots.history_view(frame, width=300)
    x, y, _ = view.sample("sensor-01", None)
    assert len(x) < 1_000
    assert np.nanmax(y) == 99.0
    assert np.isnan(y).sum() == 1


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
