"""``GET /metrics`` under a plain ``panel serve dashboards/live.py --plugins
sensorlib.dashboard.metrics`` (no sensorlib server around it): Panel mounts the plugin's
ROUTES, the handler checks the Host itself. Real broker, real sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from sensorlib.config import Settings
from tests.observe.conftest import scrape, value

pytestmark = pytest.mark.kafka


def test_plain_panel_serve_with_the_plugin_serves_metrics(dash_settings: Settings, kit: Any,
                                                          tmp_path: Path) -> None:
    def command(settings: Settings) -> list[str]:
        return [*kit.plain_panel_serve(settings), "--plugins", "sensorlib.dashboard.metrics"]

    dashboard = kit.start_dashboard(dash_settings, tmp_path / "panel.log", command=command)
    try:
        base = dashboard.url.rsplit("/", 1)[0]
        samples = scrape(base)  # parsed by prometheus_client.parser
        # The start-up probe opened one session (GET /live): it is counted.
        assert value(samples, "sensorlib_dashboard_sessions_opened_total") >= 1
        assert ("sensorlib_dashboard_push_duration_seconds_count", ()) in samples
        refused = httpx.get(base + "/metrics", headers={"Host": "evil.example"}, timeout=5)
        assert refused.status_code == 400 and "sensorlib_" not in refused.text
    finally:
        dashboard.stop()
