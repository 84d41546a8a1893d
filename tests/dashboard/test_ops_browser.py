"""Issue 17 on the dashboard side, end to end: the producer, processor and archiver services
and the dashboard server as real processes on the real broker, a real Zipkin server, and
headless Chromium. The dashboard's ``/metrics`` parses and moves; the archiver's too; the
Ops tab shows non-zero rates read from the services' own ``/metrics`` after N POSTs; an
alert in the feed links to its trace in Zipkin, where the dashboard's own span joins it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.history.query import table_name
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.ports import free_port
from sensorlib.observe.viewers import zipkin_spans_endpoint
from tests.conftest import private_settings
from tests.observe.conftest import scrape, value
from tests.observe.test_tracing import traceparent, zipkin  # noqa: F401 — the fixture
from tests.support import Running, Spawner, eventually

pytestmark = [pytest.mark.kafka, pytest.mark.browser, pytest.mark.slow]

N = 8
DEADLINE = 60.0
#: For a human to look at (docs/img/ops-tab.png and zipkin-trace.png are copies).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@dataclass
class Stack:
    settings: Settings
    producer: Running
    processor: Running
    archiver: Running
    dashboard: Any
    zipkin: str

    @property
    def dashboard_base(self) -> str:
        return self.dashboard.url.rsplit("/", 1)[0]


def _port(running: Running) -> int:
    return int(running.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def stack(base_settings: Settings, kafka_cluster: str, zipkin: str,  # noqa: F811
          tmp_path_factory: pytest.TempPathFactory, kit: Any) -> Iterator[Stack]:
    settings = private_settings(base_settings, kafka_cluster)
    ensure_topics(settings)
    zipkin_port = int(zipkin.rsplit(":", 1)[1])
    traced = {"OTEL_EXPORTER_ZIPKIN_ENDPOINT": zipkin_spans_endpoint(zipkin_port),
              "SENSORLIB_ZIPKIN_PORT": str(zipkin_port),
              "SENSORLIB_PROMETHEUS_PORT": str(free_port())}  # nothing listens there
    spawner = Spawner(tmp_path_factory.mktemp("ops-services"))
    dashboard = None
    try:
        producer = spawner("producer", settings, "--no-simulate", env=traced)
        processor = spawner("processor", settings, env=traced)
        archiver = spawner("archive", settings, env=traced)
        settings = settings.replace(producer_port=_port(producer),
                                    processor_port=_port(processor),
                                    archiver_port=_port(archiver))
        dashboard = kit.start_dashboard(settings, tmp_path_factory.mktemp("ops") / "panel.log",
                                        env=traced)
        yield Stack(settings, producer, processor, archiver, dashboard, zipkin)
    finally:
        if dashboard is not None:
            dashboard.stop()
        spawner.stop_all()


def post(stack: Stack, sensor: str, header: str | None = None) -> None:
    body = {"sensorId": sensor, "temperature": 42.5, "humidity": 95, "location": "Ops",
            "timestamp": datetime.now(UTC).isoformat()}
    answer = httpx.post(stack.producer.url + "/api/events", json=body, timeout=10,
                        headers={"traceparent": header} if header else {})
    assert answer.status_code == 201, answer.text


def stat(page: Any, key: str) -> str:
    return page.locator(f'[data-ops="{key}"] .stat-value').inner_text()


def test_dashboard_and_archiver_metrics_parse_and_move(stack: Stack, page: Any) -> None:
    base = stack.dashboard_base
    # The start-up probe's GET /live opened a session that no websocket joined: the server
    # drops it after --unused-session-lifetime (10 s).
    def no_session() -> dict | None:
        got = scrape(base)
        return got if value(got, "sensorlib_dashboard_sessions") == 0 else None
    first = eventually(no_session, DEADLINE)
    before = value(first, "sensorlib_dashboard_records_total",
                   topic=stack.settings.topic_readings)
    archived = value(scrape(stack.archiver.url), "sensorlib_archive_rows_total",
                     table=table_name(stack.settings.topic_readings))

    page.goto(stack.dashboard.url)
    page.locator(".alert-feed").wait_for(timeout=30_000)
    eventually(lambda: value(scrape(base), "sensorlib_dashboard_sessions") == 1, DEADLINE)
    for i in range(N):
        post(stack, f"ops-metrics-{i}")
    page.locator('.sensor-card[data-sensor="ops-metrics-0"]').wait_for(timeout=30_000)

    def moved() -> dict | None:
        now = scrape(base)
        got = value(now, "sensorlib_dashboard_records_total",
                    topic=stack.settings.topic_readings)
        pushes = value(now, "sensorlib_dashboard_push_duration_seconds_count")
        return now if got - before == N and pushes > 0 else None
    now = eventually(moved, DEADLINE)
    # The push histogram is well formed: +Inf holds every observation.
    assert value(now, "sensorlib_dashboard_push_duration_seconds_bucket", le="+Inf") == \
        value(now, "sensorlib_dashboard_push_duration_seconds_count")
    assert value(now, "sensorlib_dashboard_sessions_opened_total") >= 1

    # The archiver: exactly N more rows in the readings table; its lag back to 0.
    table = table_name(stack.settings.topic_readings)

    def archived_all() -> dict | None:
        got = scrape(stack.archiver.url)
        rows = value(got, "sensorlib_archive_rows_total", table=table)
        lags = [v for (n, _), v in got.items() if n == "sensorlib_consumer_lag_records"]
        return got if rows - archived == N and lags and not any(lags) else None
    got = eventually(archived_all, DEADLINE)
    assert value(got, "sensorlib_archive_commits_total", table=table) >= 1
    assert value(got, "sensorlib_archive_pending_rows", table=table) == 0

    # The Host guard covers /metrics too.
    refused = httpx.get(base + "/metrics", headers={"Host": "evil.example"}, timeout=5)
    assert refused.status_code == 400 and "sensorlib_" not in refused.text

    page.close()
    eventually(lambda: value(scrape(base), "sensorlib_dashboard_sessions") == 0, DEADLINE)


def test_ops_tab_shows_rates_from_the_services_metrics(stack: Stack, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(stack.dashboard.url)
        page.locator(".bk-tab", has_text="Ops").click()
        page.locator(".svc-table").wait_for(timeout=30_000)
        for i in range(N):
            post(stack, f"ops-rate-{i}")

        # What the tab says is what the services' own /metrics say, once it scraped again.
        accepted = value(scrape(stack.producer.url), "sensorlib_readings_accepted_total",
                         source="api")
        assert accepted >= N
        producer_row = page.locator('tr[data-service="producer"]')

        def shown() -> bool:
            try:
                return (f"({accepted:,.0f} in all)" in producer_row.inner_text()
                        and all(stat(page, key) not in ("—", "0") for key in
                                ("accepted-rate", "alerts-rate", "e2a-p50", "e2a-p99")))
            except Exception:  # noqa: BLE001 — re-rendered while we read
                return False
        eventually(shown, DEADLINE, interval=0.5)
        # N accepted within the last minute: at least N/60 per second.
        assert float(stat(page, "accepted-rate")) >= N / 60 - 1e-9
        for service in ("producer", "processor", "archiver", "dashboard"):
            row = page.locator(f'tr[data-service="{service}"]')
            assert row.get_attribute("data-up") == "true", row.inner_text()
        assert stat(page, "processor-lag").replace(",", "").isdigit()
        zipkin_link = page.locator('a.viewer[data-viewer="zipkin"]')
        assert zipkin_link.get_attribute("href") == f"{stack.zipkin}/zipkin/"
        # No Prometheus on the port the dashboard was given: it says so, with no link.
        assert "not running" in page.locator('[data-viewer="prometheus"]').inner_text()
        # The lag chart is drawn (a Bokeh canvas under its title).
        page.locator(".bk-Canvas, canvas").first.wait_for(timeout=30_000)
        page.wait_for_timeout(500)  # let Bokeh finish painting: only for the picture
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "ops-tab.png"), full_page=True)
    finally:
        context.close()


def test_alert_in_the_feed_links_to_its_trace(stack: Stack, page: Any) -> None:
    sent, trace_id, _ = traceparent()
    page.goto(stack.dashboard.url)
    page.locator(".alert-feed").wait_for(timeout=30_000)
    post(stack, "ops-traced", sent)
    link = page.locator('.alert-row[data-sensor="ops-traced"] a.alert-trace')
    link.first.wait_for(timeout=DEADLINE * 1000)
    assert link.first.get_attribute("data-trace") == trace_id
    assert link.first.get_attribute("href") == f"{stack.zipkin}/zipkin/traces/{trace_id}"
    assert link.first.get_attribute("rel") == "noopener noreferrer"

    # The dashboard's span continues the trace: Zipkin has it beside the services' spans.
    def spans() -> list[dict] | None:
        got = httpx.get(f"{stack.zipkin}/api/v2/trace/{trace_id}", timeout=5)
        found = got.json() if got.status_code == 200 else []
        names = {s["localEndpoint"]["serviceName"] for s in found}
        wanted = {"sensorlib-producer", "sensorlib-processor", "sensorlib-dashboard"}
        return found if wanted <= names else None
    found = eventually(spans, DEADLINE)
    ids = {s["id"] for s in found}
    mine = [s for s in found if s["localEndpoint"]["serviceName"] == "sensorlib-dashboard"]
    assert mine and all(s.get("parentId") in ids for s in mine)
    assert all(s["kind"] == "CONSUMER" for s in mine)

    # The link opens the trace in Zipkin's UI (its page for a human to look at).
    page.goto(f"{stack.zipkin}/zipkin/traces/{trace_id}")
    page.get_by_text("sensorlib-dashboard").first.wait_for(timeout=30_000)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.wait_for_timeout(500)  # only for the picture
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "zipkin-trace.png"))
