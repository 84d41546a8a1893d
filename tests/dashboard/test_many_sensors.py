"""A thousand sensors in headless Chromium: one page of the worst, a count of the rest.

The fleet: 3 critical, 5 warning, 4 silent (their last reading reached the broker
200 s ago) and 988 normal sensors. ``SENSORLIB_STALE_AFTER`` is 150 s here so that the
normal ones stay normal for the length of the module; the default is covered in
``test_browser.py`` and ``test_state.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sensorlib.config import Settings
from sensorlib.kafka.clients import make_producer
from sensorlib.model.events import Reading
from tests.dashboard.conftest import SCREENSHOTS
from tests.dashboard.test_browser import DEADLINE_MS, wait_text

pytestmark = [pytest.mark.kafka, pytest.mark.browser, pytest.mark.slow]

SENSORS = 1000
CRITICAL = [17, 523, 901]
WARNING = [3, 250, 444, 600, 999]
STALE = [42, 314, 777, 888]
STALE_AGE = timedelta(seconds=200)
PAGE = 24


def sid(i: int) -> str:
    return f"sensor-{i:04d}"


def seed_thousand(settings: Settings) -> None:
    """One reading per sensor; the silent ones stamped (event and broker time) 200 s ago."""
    now = datetime.now(UTC)
    producer = make_producer(settings, linger_ms=20)
    try:
        for i in range(SENSORS):
            temperature = 40.0 if i in CRITICAL else 32.0 if i in WARNING else 21.0
            at = now - STALE_AGE if i in STALE else now
            reading = Reading(sensor_id=sid(i), temperature=temperature, humidity=50.0,
                              location=f"Hall {i % 10}", timestamp=at)
            producer.send(settings.topic_readings, key=sid(i), value=reading.to_json(),
                          timestamp_ms=int(at.timestamp() * 1000))
        producer.flush(60)
    finally:
        producer.close()


@pytest.fixture(scope="module")
def thousand(kit: Any, dash_settings: Settings,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    seed_thousand(dash_settings)
    dashboard = kit.start_dashboard(dash_settings,
                                    tmp_path_factory.mktemp("thousand") / "panel.log",
                                    env={"SENSORLIB_STALE_AFTER": "150s"})
    try:
        yield dashboard
    finally:
        dashboard.stop()


@pytest.fixture
def wide_page(browser: Any) -> Iterator[Any]:
    """A 1280 px wide page that records dialogs."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    try:
        yield page
    finally:
        context.close()


def cards(page: Any) -> Any:
    return page.locator(".sensor-card")


def wait_cards(page: Any, test: Callable[[list[str]], bool], what: str) -> list[str]:
    """Poll the ids of the cards on the page (in page order) until ``test`` holds."""
    deadline = time.monotonic() + 60
    ids: list[str] = []
    while time.monotonic() < deadline:
        # One snapshot of the page: cards come and go while a filter applies.
        ids = cards(page).evaluate_all("els => els.map(e => e.dataset.sensor)")
        if test(ids):
            return ids
        time.sleep(0.1)
    raise AssertionError(f"{what}: the page shows {ids}")


def test_the_worst_come_first_and_the_rest_are_counted(thousand: Any, wide_page: Any) -> None:
    page = wide_page
    page.goto(thousand.url)
    wait_text(page.locator(".board-summary"), "1,000 sensors", timeout_ms=60_000)
    ids = wait_cards(page, lambda ids: len(ids) == PAGE, "24 cards")
    expected = [sid(i) for i in (*CRITICAL, *WARNING, *STALE)]
    assert ids[:12] == expected
    statuses = cards(page).evaluate_all("els => els.map(e => e.dataset.status)")
    assert statuses == ["critical"] * 3 + ["warning"] * 5 + ["stale"] * 4 + ["normal"] * 12
    summary = page.locator(".board-summary")
    text = summary.inner_text()
    assert "3 critical" in text and "5 warning" in text and "4 stale" in text
    assert "988 normal" in text and "Showing 1–24" in text
    assert summary.locator(".more").inner_text() == "and 976 more"
    assert "page 1 of 42" in page.locator(".page-label").inner_text()
    time.sleep(1.0)  # let the sparklines paint before the picture
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "live-1000-sensors.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    assert page.dialogs == []


def test_search_filter_and_pager_reach_every_sensor(thousand: Any, wide_page: Any) -> None:
    page = wide_page
    page.goto(thousand.url)
    wait_cards(page, lambda ids: len(ids) == PAGE, "24 cards")
    search = page.locator(".sensor-search input")
    search.fill("SENSOR-0555")
    wait_cards(page, lambda ids: ids == [sid(555)], "the one match")
    wait_text(page.locator(".board-summary"), "Showing 1–1 of 1 matching")
    search.fill("hall 7")  # by location: sensors 7, 17, 27, … — 17 is critical
    ids = wait_cards(page, lambda ids: len(ids) == PAGE and ids[0] == sid(17), "Hall 7")
    assert all(int(i[-4:]) % 10 == 7 for i in ids)
    wait_text(page.locator(".board-summary .more"), "and 76 more")
    search.fill("no such sensor")
    wait_text(page.locator(".board-summary"), "No sensor matches")
    search.fill("")
    page.locator(".status-filter select").select_option(label="stale")
    wait_cards(page, lambda ids: ids == [sid(i) for i in STALE], "the stale ones")
    page.locator(".status-filter select").select_option(label="all statuses")
    wait_cards(page, lambda ids: len(ids) == PAGE and ids[0] == sid(CRITICAL[0]), "page 1")
    page.locator(".page-next button").click()
    wait_text(page.locator(".page-label"), "page 2 of 42", timeout_ms=DEADLINE_MS)
    # Page 2 holds normal sensors 12..35 of the normal ones, in id order.
    normal = [i for i in range(SENSORS) if i not in (*CRITICAL, *WARNING, *STALE)]
    wait_cards(page, lambda ids: ids == [sid(i) for i in normal[12:36]], "page 2")
    page.locator(".page-prev button").click()
    wait_text(page.locator(".page-label"), "page 1 of 42", timeout_ms=DEADLINE_MS)
