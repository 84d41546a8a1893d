"""The served dashboard in headless Chromium: back-fill, live pushes, alerts, STALE, XSS, Kafka tab."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from sensorlib.config import Settings
from sensorlib.dashboard.kafka_view import shown_topics
from sensorlib.engine.detect import COLD_STORAGE
from sensorlib.ingest.simulate import REFERENCE_FLEET
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.broker import LocalKafka
from sensorlib.kafka.ports import free_port
from sensorlib.kafka.ruletable import write_layer
from tests.support import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.browser]

#: Generous deadlines: the machine is shared, timings are the benchmark's business.
DEADLINE_MS = 15_000
XSS = "<img src=x onerror=alert(document.domain)>"
XSS_LOCATION = "<script>alert(2)</script>"
XSS_QUOTE = 'x" onmouseover="alert(3)'
XSS_REASON = '<b onmouseover="alert(4)">High</b> temperature: <svg onload=alert(5)>'


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


def wait_style(locator: Any, prop: str, expected: str, timeout_ms: int = DEADLINE_MS) -> None:
    """Poll a computed style until it is ``expected`` (cards re-render as the page reorders)."""
    deadline = time.monotonic() + timeout_ms / 1000
    last = ""
    while time.monotonic() < deadline:
        try:
            last = locator.evaluate(f"e => getComputedStyle(e).{prop}", timeout=1000)
        except Exception:  # noqa: BLE001 — replaced while we looked; look again
            last = "(detached)"
        if last == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"{prop} stayed {last!r}, expected {expected!r}")


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
        # The seeded readings stop at start-up: by now they may have gone STALE.
        assert box.get_attribute("data-status") in ("normal", "warning", "critical", "stale")
    # Back-filled history draws the sparklines: two SVG lines per card, numbers only.
    readings = page.locator('[data-count="readings-window"] .stat-value').inner_text()
    assert int(readings.replace(",", "")) >= 5 * 50
    lines = page.locator(".sparks polyline")
    deadline = time.monotonic() + DEADLINE_MS / 1000
    while lines.count() < 2 * len(REFERENCE_FLEET) and time.monotonic() < deadline:
        time.sleep(0.1)
    points = lines.evaluate_all("els => els.map(e => e.points.numberOfItems)")
    assert len(points) >= 2 * len(REFERENCE_FLEET) and min(points) >= 40
    screenshot("live-backfill")


def test_a_new_reading_is_pushed_to_its_card(kit: Any, page: Any, dashboard: Any) -> None:
    open_live(page, dashboard)
    kit.produce_reading(dashboard.settings, "sensor-03", 17.7, 71.3, "Cold Storage")
    box = card(page, "sensor-03")
    wait_text(box.locator(".temperature"), "17.7")
    wait_text(box.locator(".humidity"), "71.3")


def test_each_card_shows_its_thresholds_and_follows_the_rules_table(
        page: Any, dashboard: Any, screenshot: Callable[[str], Path]) -> None:
    open_live(page, dashboard)
    cold = COLD_STORAGE.settings["temperature_threshold"]  # the shipped layer
    wait_text(card(page, "sensor-03").locator(".limits"), f"alerts above {cold:g} °C · 90 %")
    wait_text(card(page, "sensor-01").locator(".limits"), "alerts above 35 °C · 90 %")
    write_layer(dashboard.settings, "sensor:sensor-01", {"temperature_threshold": 28.5,
                                                         "humidity_threshold": 70})
    try:
        limits = card(page, "sensor-01").locator(".limits")
        wait_text(limits, "alerts above 28.5 °C · 70 %")  # live, no reload
        assert limits.get_attribute("data-temperature") == "28.5"
        assert "rule settings " in (limits.get_attribute("title") or "")
        wait_text(card(page, "sensor-02").locator(".limits"), "alerts above 35 °C")
        page.set_viewport_size({"width": 1280, "height": 900})
        screenshot("live-card-thresholds")
    finally:
        write_layer(dashboard.settings, "sensor:sensor-01", None)
    wait_text(card(page, "sensor-01").locator(".limits"), "alerts above 35 °C · 90 %")


def test_a_new_sensor_gets_a_card_and_critical_stands_out(kit: Any, page: Any, dashboard: Any,
                                                          screenshot: Callable[[str], Path]) -> None:
    open_live(page, dashboard)
    kit.produce_reading(dashboard.settings, "sensor-test", 41.2, 93.0, "Test Bench")
    box = card(page, "sensor-test")
    wait_text(box, "Test Bench")
    assert box.get_attribute("data-status") == "critical"
    assert "CRITICAL" in box.inner_text()
    wait_style(box.locator(".badge"), "backgroundColor", "rgb(255, 59, 59)")
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


def test_a_silent_sensor_turns_stale_and_grey(kit: Any, page: Any, dashboard: Any,
                                              screenshot: Callable[[str], Path]) -> None:
    open_live(page, dashboard)
    sensor = f"sensor-quiet-{uuid.uuid4().hex[:4]}"
    kit.produce_reading(dashboard.settings, sensor, 21.5, 50.0, "Attic")
    box = card(page, sensor)
    wait_text(box, "NORMAL")
    assert box.get_attribute("data-status") == "normal"
    # Default: 3 × SENSORLIB_INTERVAL (2 s), at least 10 s, by the wall clock.
    wait_text(box, "STALE", timeout_ms=40_000)
    assert box.get_attribute("data-status") == "stale"
    assert "no reading for" in box.locator(".updated").inner_text()
    wait_style(box.locator(".badge"), "color", "rgb(201, 209, 217)")
    # It speaks again: the value-based status is back.
    kit.produce_reading(dashboard.settings, sensor, 33.0, 50.0, "Attic")
    wait_text(box, "WARNING")
    screenshot("live-stale")


def test_untrusted_strings_are_shown_as_text_and_run_nothing(
        kit: Any, page: Any, dashboard: Any, screenshot: Callable[[str], Path]) -> None:
    open_live(page, dashboard)
    kit.produce_reading(dashboard.settings, XSS, 20.0, 50.0, XSS_LOCATION)
    kit.produce_reading(dashboard.settings, XSS_QUOTE, 20.0, 50.0, XSS)
    alert = kit.produce_alert(dashboard.settings, XSS, XSS_LOCATION, XSS_REASON)
    box = card(page, XSS)
    wait_text(box, XSS)
    wait_text(box.locator(".location"), XSS_LOCATION)  # the card may be redrawn meanwhile
    assert box.locator(".sensor-id").inner_text() == XSS
    assert box.locator(".location").inner_text() == XSS_LOCATION
    quoted = card(page, XSS_QUOTE)
    wait_text(quoted, XSS)
    row = page.locator(f'.alert-row[data-alert="{alert.alert_id}"]')
    wait_text(row, XSS_REASON)
    assert row.locator(".alert-sensor").inner_text() == XSS
    assert row.locator(".alert-location").inner_text() == XSS_LOCATION
    assert row.locator(".alert-reason").inner_text() == XSS_REASON
    quoted.hover()
    row.hover()
    # A barrier instead of a pause: two animation frames and a task later, every handler
    # the hovers or a render could have triggered has run.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                  "requestAnimationFrame(() => setTimeout(r, 0))))")
    assert page.dialogs == []
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("svg[onload]").count() == 0
    assert page.locator("script", has_text="alert(2)").count() == 0
    screenshot("live-xss-as-text")

    # The search box echoes what is typed into the summary: still text.
    search = page.locator(".sensor-search input")
    search.fill(XSS_LOCATION)
    wait_text(page.locator(".board-summary"), f"“{XSS_LOCATION}”")
    wait_text(box.locator(".location"), XSS_LOCATION)  # found by its location
    search.fill("")
    time.sleep(0.5)
    assert page.dialogs == []

    # The message browser shows the raw records: still text.
    page.locator(".bk-tab", has_text="Kafka").click()
    page.locator("input[placeholder='sensor-01']").fill("img")
    page.locator("input[placeholder='sensor-01']").press("Enter")
    cell = page.locator(".tabulator-cell", has_text=XSS).first
    cell.wait_for(timeout=DEADLINE_MS)
    # The table is re-rendered as records arrive: a cell can detach mid-scroll; the locator
    # finds the new one on the next try.
    eventually(lambda: _scrolled(cell), DEADLINE_MS / 1000)
    time.sleep(0.5)
    assert page.dialogs == []
    assert page.locator('img[src="x"]').count() == 0
    screenshot("kafka-browser-xss-as-text")


def test_kafka_tab_lists_topics_groups_and_records(page: Any, dashboard: Any,
                                                   screenshot: Callable[[str], Path]) -> None:
    settings = dashboard.settings
    open_live(page, dashboard)
    page.locator(".bk-tab", has_text="Kafka").click()
    for name in (*shown_topics(settings), settings.dashboard_readings_group,  # rules, faults too
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


def _scrolled(cell: Any) -> bool:
    try:
        cell.scroll_into_view_if_needed(timeout=2000)
    except PlaywrightError:
        return False
    return True
