"""The served dashboard in headless Chromium: back-fill, live pushes, alerts, XSS, Kafka tab."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sensorlib.broker import LocalKafka, free_port
from sensorlib.config import Settings
from sensorlib.kafka_io import ensure_topics
from sensorlib.simulate import REFERENCE_FLEET

pytestmark = [pytest.mark.kafka, pytest.mark.browser]

#: Generous deadlines: the machine is shared, timings are the benchmark's business.
DEADLINE_MS = 15_000
XSS = "<img src=x onerror=alert(1)>"
XSS_QUOTE = 'x" onmouseover="alert(2)'


def card(page: Any, sensor_id: str) -> Any:
    return page.locator(f'.sensor-card[data-sensor="{_attr(sensor_id)}"]')


def _attr(value: str) -> str:
    # CSS attribute selector inside double quotes: escape backslashes and quotes.
    return value.replace("\\", "\\\\").replace('"', '\\"')


def wait_text(locator: Any, text: str, timeout_ms: int = DEADLINE_MS) -> None:
    """Poll the DOM until ``locator`` contains ``text`` (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout_ms / 1000
    last = ""
    while time.monotonic() < deadline:
        if locator.count():
            last = locator.first.inner_text()
            if text in last:
                return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} did not appear; last text was {last!r}")


def open_live(page: Any, dashboard: Any) -> None:
    page.goto(dashboard.url)
    card(page, "sensor-01").wait_for(timeout=30_000)


def test_backfill_shows_the_five_reference_sensors(page: Any, dashboard: Any,
                                                   screenshot: Callable[[str], Path]) -> None:
    open_live(page, dashboard)
    for spec in REFERENCE_FLEET:
        box = card(page, spec.sensor_id)
        box.wait_for(timeout=DEADLINE_MS)
        assert spec.location in box.inner_text()
        assert box.get_attribute("data-status") in ("normal", "warning", "critical")
    # Back-filled history draws the sparklines: two Bokeh canvases per card.
    readings = page.locator('[data-count="readings-window"] .stat-value').inner_text()
    assert int(readings.replace(",", "")) >= 5 * 50
    time.sleep(1.0)  # let the sparklines paint before the picture
    screenshot("live-backfill")


def test_a_new_reading_is_pushed_to_its_card(kit: Any, page: Any, dashboard: Any) -> None:
    open_live(page, dashboard)
    kit.produce_reading(dashboard.settings, "sensor-03", 17.7, 71.3, "Cold Storage")
    box = card(page, "sensor-03")
    wait_text(box.locator(".temperature"), "17.7")
    wait_text(box.locator(".humidity"), "71.3")


def test_a_new_sensor_gets_a_card_and_critical_stands_out(kit: Any, page: Any, dashboard: Any,
                                                          screenshot: Callable[[str], Path]) -> None:
    open_live(page, dashboard)
    kit.produce_reading(dashboard.settings, "sensor-test", 41.2, 93.0, "Test Bench")
    box = card(page, "sensor-test")
    wait_text(box, "Test Bench")
    assert box.get_attribute("data-status") == "critical"
    assert "CRITICAL" in box.inner_text()
    colour = box.locator(".badge").evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(255, 59, 59)"
    screenshot("live-new-sensor-critical")


def test_a_critical_alert_appears_first_in_the_feed(kit: Any, page: Any, dashboard: Any,
                                                    screenshot: Callable[[str], Path]) -> None:
    open_live(page, dashboard)
    kit.produce_alert(dashboard.settings, "sensor-02", "Warehouse B", "High humidity: 91.5%",
                  severity="warning", temperature=24.0)
    marker = uuid.uuid4().hex[:6]
    alert = kit.produce_alert(dashboard.settings, "sensor-05", "Production Floor",
                          f"High temperature: 42.5°C ({marker})")
    row = page.locator(f'.alert-row[data-alert="{alert.alert_id}"]')
    wait_text(row, marker)
    assert row.get_attribute("data-severity") == "critical"
    text = row.inner_text()
    assert "sensor-05" in text and "Production Floor" in text
    assert "ago" in text or "just now" in text
    # Newest first.
    wait_text(page.locator(".alert-row").first, marker)
    screenshot("live-alert-feed")


def test_untrusted_strings_are_shown_as_text_and_run_nothing(
        kit: Any, page: Any, dashboard: Any, screenshot: Callable[[str], Path]) -> None:
    open_live(page, dashboard)
    kit.produce_reading(dashboard.settings, XSS, 20.0, 50.0, XSS)
    kit.produce_reading(dashboard.settings, XSS_QUOTE, 20.0, 50.0, "<script>alert(3)</script>")
    alert = kit.produce_alert(dashboard.settings, XSS, XSS, f"High temperature: {XSS}")
    box = card(page, XSS)
    wait_text(box, XSS)
    assert box.locator(".sensor-id").inner_text() == XSS
    assert box.locator(".location").inner_text() == XSS
    quoted = card(page, XSS_QUOTE)
    wait_text(quoted, "<script>alert(3)</script>")
    row = page.locator(f'.alert-row[data-alert="{alert.alert_id}"]')
    wait_text(row, f"High temperature: {XSS}")
    quoted.hover()
    time.sleep(1.0)  # give an injected handler every chance to fire
    assert page.dialogs == []
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("script", has_text="alert(3)").count() == 0
    screenshot("live-xss-as-text")

    # The message browser shows the raw records: still text.
    page.locator(".bk-tab", has_text="Kafka").click()
    page.locator("input[placeholder='sensor-01']").fill("img")
    page.locator("input[placeholder='sensor-01']").press("Enter")
    cell = page.locator(".tabulator-cell", has_text=XSS).first
    cell.wait_for(timeout=DEADLINE_MS)
    cell.scroll_into_view_if_needed()
    time.sleep(0.5)
    assert page.dialogs == []
    assert page.locator('img[src="x"]').count() == 0
    screenshot("kafka-browser-xss-as-text")


def test_kafka_tab_lists_topics_groups_and_records(page: Any, dashboard: Any,
                                                   screenshot: Callable[[str], Path]) -> None:
    settings = dashboard.settings
    open_live(page, dashboard)
    page.locator(".bk-tab", has_text="Kafka").click()
    for name in (*settings.topics, settings.dashboard_readings_group,
                 settings.dashboard_alerts_group, settings.processor_group):
        page.locator(".tabulator-cell", has_text=name).first.wait_for(timeout=DEADLINE_MS)
    # The message browser lists the latest readings of the first topic by default.
    page.locator(".tabulator-cell", has_text='"sensorId"').first.wait_for(timeout=DEADLINE_MS)
    time.sleep(1.0)
    screenshot("kafka-view")


@pytest.mark.slow
def test_kafka_down_shows_a_banner_and_recovers(kit: Any, base_settings: Settings, page: Any,
                                                tmp_path: Path,
                                                screenshot: Callable[[str], Path]) -> None:
    port = free_port()
    settings = kit.private_settings(base_settings, f"localhost:{port}")
    dashboard = kit.start_dashboard(settings, tmp_path / "panel.log")
    kafka = LocalKafka(tmp_path / "kafka", ports=[port], controller_ports=[free_port()],
                       settings=base_settings, heap="384m")
    try:
        page.goto(dashboard.url)
        banner = page.locator(".kafka-banner")
        wait_text(banner, "Kafka unreachable")
        screenshot("live-kafka-unreachable")
        kafka.start(timeout=120)
        ensure_topics(settings)
        kit.produce_reading(settings, "sensor-01", 23.4, 57.9, "Warehouse A")
        wait_text(card(page, "sensor-01").locator(".temperature"), "23.4", timeout_ms=60_000)
        deadline = time.monotonic() + 20
        while banner.count() and banner.first.is_visible() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not (banner.count() and banner.first.is_visible())
    finally:
        dashboard.stop()
        kafka.stop()
