"""``sensorlib processor --workers 2``: two group members in two processes, one API in front.

Real broker, real processes, real sockets: the partitions are shared between the workers,
the front answers the reference's API over both, its metrics carry a ``worker`` label,
and a worker killed with SIGKILL is started again.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sensorlib.config import Settings
from sensorlib.kafka.clients import make_producer
from sensorlib.model.events import Reading
from tests.support import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SENSORS = [f"wk-{i:02d}" for i in range(12)]  # spread over the 3 partitions by key


def _produce(settings: Settings, temperature: float = 21.0) -> None:
    producer = make_producer(settings, client_id="test-workers")
    now = datetime.now(UTC)
    for i, sensor in enumerate(SENSORS):
        reading = Reading(sensor_id=sensor, temperature=temperature, humidity=40.0,
                          location="Hall", timestamp=now - timedelta(seconds=len(SENSORS) - i))
        producer.send(settings.topic_readings, key=sensor, value=reading.to_json())
    producer.flush()
    producer.close()


def _health(url: str) -> dict:
    try:
        answer = httpx.get(url + "/health", timeout=5)
    except httpx.HTTPError:
        return {}
    return answer.json() if answer.status_code == 200 else {}


def _both_own_partitions(url: str) -> dict:
    body = _health(url)
    workers = body.get("workers", [])
    spread = len(workers) == 2 and all(w["assignedPartitions"] for w in workers)
    return body if spread and body["assignedPartitions"] == [0, 1, 2] else {}


def test_two_workers_share_the_partitions_behind_one_api(spawn, topics: Settings) -> None:
    front = spawn("processor", topics, "--workers", "2", wait=False)
    body = eventually(lambda: _both_own_partitions(front.url), 120)
    assert body["ok"] and body["problems"] == []
    assert {w["worker"] for w in body["workers"]} == {"1-w1", "1-w2"}

    _produce(topics)
    _produce(topics, temperature=41.0)  # every sensor alerts once
    eventually(lambda: set(httpx.get(front.url + "/api/aggregates", timeout=5).json())
               == set(SENSORS), 60)

    def threshold_alerts() -> list[dict]:
        alerts = httpx.get(front.url + "/api/alerts?limit=1000", timeout=5).json()
        hot = {a["sensorId"] for a in alerts if a["rule"] == "threshold"}
        return alerts if hot == set(SENSORS) else []

    alerts = eventually(threshold_alerts, 60)
    stamps = [a["detectedAt"] for a in alerts]
    assert stamps == sorted(stamps, reverse=True)
    one = httpx.get(front.url + "/api/alerts", params={"sensorId": SENSORS[3]}, timeout=5).json()
    assert one and {a["sensorId"] for a in one} == {SENSORS[3]}

    text = httpx.get(front.url + "/metrics", timeout=5).text
    workers = {s.labels.get("worker") for f in text_string_to_metric_families(text)
               for s in f.samples}
    assert workers == {"1-w1", "1-w2"}

    # Rule settings: written through the front (to the topic), followed by every worker.
    put = httpx.put(front.url + f"/api/rules/sensor:{SENSORS[0]}",
                    json={"temperature_threshold": 30}, timeout=30)
    assert put.status_code == 200, put.text
    version = put.json()["version"]

    def followed() -> dict | None:
        body = httpx.get(front.url + "/api/rules", timeout=5).json()
        return body if set(body["workers"].values()) == {version} else None

    rules = eventually(followed, 30)
    assert set(rules["sensors"]) == set(SENSORS)
    assert rules["sensors"][SENSORS[0]]["temperature_threshold"] == 30.0
    bad = httpx.put(front.url + "/api/rules/sensor:x", json={"outlier_z": 0}, timeout=30)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "outlier_z"

    # Crash-only: a worker killed outright is started again and takes its partitions back.
    children = psutil.Process(front.process.pid).children()
    assert len(children) == 2
    children[0].send_signal(signal.SIGKILL)
    eventually(lambda: not _health(front.url).get("ok"), 30)
    eventually(lambda: _both_own_partitions(front.url), 120)
    assert len(psutil.Process(front.process.pid).children()) == 2


def test_two_archivers_behind_one_health(spawn, topics: Settings, tmp_path) -> None:
    """``sensorlib archive --workers 2``: both archivers in the group, their rows summed."""
    settings = topics.replace(warehouse_dir=tmp_path / "warehouse")
    front = spawn("archive", settings, "--workers", "2", "--batch-seconds", "0.5", wait=False)
    topic = settings.topic_readings

    def spread() -> dict:
        body = _health(front.url)
        owned = [set(w.get("assignedPartitions", {}).get(topic, []))
                 for w in body.get("workers", [])]
        return body if len(owned) == 2 and all(owned) and owned[0] | owned[1] == {0, 1, 2} \
            else {}
    body = eventually(lambda: spread(), 120)
    assert body["ok"] and body["group"] == settings.archiver_group
    _produce(settings)
    body = eventually(lambda: (b := _health(front.url)).get("tables", {}).get(topic, {})
                      .get("archived") == len(SENSORS) and b, 60)
    assert len({w["worker"] for w in body["workers"]}) == 2
    metrics = httpx.get(front.url + "/metrics", timeout=5).text
    assert 'sensorlib_archive_rows_total{table="' in metrics and 'worker="1-w2"' in metrics
