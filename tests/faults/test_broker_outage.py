"""A single broker killed with SIGKILL and restarted under load: nothing acknowledged is
lost or duplicated, every alert still comes, and the services ride it out."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.kafka.broker import LocalKafka
from tests.dashboard.conftest import start_dashboard
from tests.support import eventually

from .conftest import (
    Feeder,
    assert_acknowledged_stored_once,
    assert_alerts_as_offline,
    caught_up,
    is_probe,
    live_alerts,
    spiked_stream,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


def test_broker_killed_and_restarted_while_producing_and_processing(
        lone_kafka: LocalKafka, lone: Settings, spawn) -> None:
    readings = spiked_stream(800, datetime.now(UTC) - timedelta(hours=1), probe_every=40)
    processor = spawn("processor", lone)
    feeder = Feeder(lone, readings, batch=40, pause=0.04)
    feeder.start()
    eventually(lambda: len(feeder.acked) >= len(readings) // 3, timeout=60)
    lone_kafka.kill_node(lone_kafka.nodes[0], signal.SIGKILL)
    eventually(lambda: _status(processor.url + "/health") == 503, timeout=30)
    time.sleep(2.0)  # let the producer and the processor run into the outage
    lone_kafka.start(timeout=120)
    feeder.join(timeout=180)
    assert not feeder.is_alive(), "the producer never finished after the broker came back"
    assert feeder.crash is None, repr(feeder.crash)
    stored = assert_acknowledged_stored_once(lone, feeder)
    # The producer retried through the outage: everything it sent was acknowledged.
    assert len(feeder.acked) == len(readings), feeder.errors[:3]

    eventually(lambda: caught_up(lone), timeout=120)
    assert_alerts_as_offline(lone, stored)
    probes = {r.sensor_id for r in stored if is_probe(r.sensor_id)}
    alerted = [a.sensor_id for a in live_alerts(lone)
               if is_probe(a.sensor_id) and a.rule == "threshold"]
    assert sorted(alerted) == sorted(probes), "each probe reading raises exactly one alert"
    # The same processor process carried on: no restart was needed.
    assert processor.process.poll() is None
    eventually(lambda: _status(processor.url + "/health") == 200, timeout=60)


@pytest.mark.browser
def test_services_answer_503_while_the_broker_is_down_and_recover_without_restart(
        lone_kafka: LocalKafka, lone: Settings, spawn, chromium_page, tmp_path: Path) -> None:
    processor = spawn("processor", lone)
    producer = spawn("producer", lone, "--no-simulate")
    dashboard = start_dashboard(lone, tmp_path / "panel.log")
    page = chromium_page
    banner = page.locator(".kafka-banner")
    try:
        assert httpx.post(producer.url + "/api/events", json=_reading("before")).status_code == 201
        page.goto(dashboard.url)
        _card(page, "outage-before").wait_for(timeout=60_000)

        lone_kafka.kill_node(lone_kafka.nodes[0], signal.SIGKILL)
        for service in (producer, processor):
            eventually(lambda url=service.url: _status(url + "/health") == 503, timeout=30)
        body = httpx.get(producer.url + "/health", timeout=5).json()
        assert body["kafka"] == "unreachable" and body["status"] == "unhealthy"
        down = httpx.post(producer.url + "/api/events", json=_reading("during"), timeout=60)
        assert down.status_code == 503, down.text
        assert down.json()["error"]
        eventually(lambda: banner.count() and banner.first.is_visible()
                   and "Kafka unreachable" in banner.first.inner_text(), timeout=30)
        page.screenshot(path=str(tmp_path / "dashboard-kafka-down.png"))

        lone_kafka.start(timeout=120)
        for service in (producer, processor):
            eventually(lambda url=service.url: _status(url + "/health") == 200, timeout=90)

        def posted() -> bool:
            answer = httpx.post(producer.url + "/api/events", json=_reading("after"), timeout=60)
            assert answer.status_code in (201, 503), answer.text
            return answer.status_code == 201

        eventually(posted, timeout=60, interval=1.0)

        def alerted() -> bool:
            alerts = httpx.get(processor.url + "/api/alerts", params={"sensorId": "outage-after"})
            return bool(alerts.json())

        eventually(alerted, timeout=60)
        # The same dashboard page (no reload) shows the new reading and drops the banner.
        _card(page, "outage-after").wait_for(timeout=60_000)
        eventually(lambda: not (banner.count() and banner.first.is_visible()), timeout=30)
        page.screenshot(path=str(tmp_path / "dashboard-kafka-back.png"))
        for service in (producer, processor):
            assert service.process.poll() is None, f"{service.name} exited:\n{service.log_text()[-2000:]}"
        assert dashboard.process.poll() is None, dashboard.log_text()[-2000:]
    finally:
        dashboard.stop()


def _card(page: Any, sensor_id: str) -> Any:
    return page.locator(f'.sensor-card[data-sensor="{sensor_id}"]')


def _reading(tag: str) -> dict[str, object]:
    return {"sensorId": f"outage-{tag}", "temperature": 42.5, "humidity": 95.0,
            "location": "Outage test", "timestamp": datetime.now(UTC).isoformat()}
