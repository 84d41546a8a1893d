"""The alert feed in headless Chromium with a real Alertmanager (issue 28, item 4): an alert
whose sensor is silenced shows the mark, the others do not, and every row offers the
``amtool`` command (Debian's Alertmanager has no web UI) as text, whatever the sensor id."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sensorlib.config import Settings
from sensorlib.dashboard.silences import amtool_command
from tests.notify.conftest import Alertmanager, needs_alertmanager

pytestmark = [pytest.mark.kafka, pytest.mark.browser, needs_alertmanager]

DEADLINE = 30.0


@pytest.fixture
def alertmanager(tmp_path: Path, base_settings: Settings) -> Iterator[Alertmanager]:
    am = Alertmanager(tmp_path, base_settings, "http://127.0.0.1:9/unused").start()
    yield am
    am.stop()


def _row(page: Any, alert_id: str) -> Any:
    return page.locator(f'.alert-row[data-alert="{alert_id}"]')


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {DEADLINE}s")


def test_a_silenced_sensor_is_marked_in_the_feed(
        kit: Any, page: Any, dash_settings: Settings, alertmanager: Alertmanager,
        tmp_path: Path, screenshot: Callable[[str], Path]) -> None:
    tag = uuid.uuid4().hex[:4]
    noisy, quiet = f'noisy-{tag} <b>"x"</b>', f"quiet-{tag}"
    subprocess.run(["bash", "-c", amtool_command(alertmanager.url, noisy)], check=True,
                   capture_output=True, timeout=30)
    settings = dash_settings.replace(alertmanager_url=alertmanager.url)
    dashboard = kit.start_dashboard(settings, tmp_path / "panel.log")
    try:
        loud = kit.produce_alert(settings, noisy, "Lab <i>1</i>", "High temperature: 41.0°C")
        calm = kit.produce_alert(settings, quiet, "Lab 2", "High temperature: 40.0°C")
        page.goto(dashboard.url)
        _row(page, calm.alert_id).wait_for(timeout=DEADLINE * 1000)
        _row(page, loud.alert_id).wait_for(timeout=DEADLINE * 1000)
        # Silences are polled in the background: the mark comes within a few seconds.
        mark = _row(page, loud.alert_id).locator(".alert-silenced")
        _until(lambda: mark.count() == 1, "the silenced mark did not appear")
        assert mark.inner_text().lower() == "silenced"
        assert "noisy sensor" in (mark.get_attribute("title") or "")
        assert "silenced" in (_row(page, loud.alert_id).get_attribute("class") or "")
        calm_row = _row(page, calm.alert_id)
        assert calm_row.locator(".alert-silenced").count() == 0
        assert "silenced" not in (calm_row.get_attribute("class") or "")
        # No UI to link to: the row's "silence…" carries the amtool command as text.
        offer = calm_row.locator(".alert-silence")
        assert offer.get_attribute("data-command") == amtool_command(alertmanager.url, quiet)
        assert "no web UI" in (offer.get_attribute("title") or "")
        assert _row(page, loud.alert_id).locator(".alert-sensor").inner_text() == noisy
        assert page.locator("b", has_text='"x"').count() == 0
        assert page.dialogs == []
        screenshot("live-alert-feed-silenced")

        # Alertmanager gone: the marks and offers go, the feed stays.
        alertmanager.stop()
        _until(lambda: page.locator(".alert-silence").count() == 0,
               "the silence offers did not go with Alertmanager")
        assert _row(page, calm.alert_id).count() == 1
        assert "Traceback" not in dashboard.log_text()
    finally:
        dashboard.stop()
