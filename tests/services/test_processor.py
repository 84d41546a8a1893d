"""The processor service: the reference walkthrough, DLQ, restarts, scale-out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.ingest.produce import ReadingProducer
from sensorlib.ingest.simulate import Simulator
from sensorlib.model.events import Reading
from tests.support import eventually, read_alerts, read_topic

from .test_producer_api import REFERENCE_PAYLOAD

pytestmark = pytest.mark.kafka


def test_reference_walkthrough_post_to_alert(spawn, topics: Settings) -> None:
    processor = spawn("processor", topics)
    producer = spawn("producer", topics, "--no-simulate")
    posted = httpx.post(producer.url + "/api/events", json=REFERENCE_PAYLOAD)
    assert posted.status_code == 201

    def alert_seen():
        alerts = httpx.get(processor.url + "/api/alerts").json()
        return [a for a in alerts if a["sensorId"] == "sensor-test"]

    alerts = eventually(alert_seen)
    threshold = [a for a in alerts if a["rule"] == "threshold"]
    assert threshold and threshold[0]["reason"] == "High temperature: 42.5°C, High humidity: 95.0%"
    assert threshold[0]["location"] == "Test Area"
    assert threshold[0]["severity"] in ("warning", "critical")
    # The alert is on the alerts topic too, keyed by sensorId, exactly once.
    on_topic = [a for a in read_alerts(topics) if a.rule == "threshold"]
    assert [a.alert_id for a in on_topic] == [threshold[0]["alertId"]]
    # Filters of /api/alerts.
    assert httpx.get(processor.url + "/api/alerts", params={"sensorId": "nope"}).json() == []
    assert len(httpx.get(processor.url + "/api/alerts", params={"limit": 1}).json()) == 1
    assert httpx.get(processor.url + "/api/alerts", params={"limit": 0}).status_code == 422


def test_aggregates_cover_the_fleet(spawn, topics: Settings) -> None:
    sim = Simulator(seed=3, interval=2.0, start=datetime.now(UTC) - timedelta(minutes=2))
    with ReadingProducer(topics) as out:
        for reading in sim.stream(count=5 * 30):
            out.send(reading)
    processor = spawn("processor", topics)

    def covered():
        rows = httpx.get(processor.url + "/api/aggregates").json()
        return rows if set(rows) >= {f"sensor-0{i}" for i in range(1, 6)} else None

    rows = eventually(covered, timeout=60)
    for sensor_id, row in rows.items():
        assert row["sensorId"] == sensor_id and row["readingCount"] > 0
        assert row["minTemperature"] <= row["avgTemperature"] <= row["maxTemperature"]
        assert row["location"]
    assert httpx.get(processor.url + "/health").json()["status"] == "healthy"


def test_garbage_goes_to_dlq_and_good_readings_behind_it_are_processed(spawn, topics: Settings) -> None:
    processor = spawn("processor", topics)
    now = datetime.now(UTC).isoformat()
    with ReadingProducer(topics) as out:
        out.send_raw("sensor-x", b"\x00\xffnot json at all")
        out.send_raw("sensor-x", b'{"sensorId": "sensor-x", "temperature": 500, "humidity": 10}')
        # The reference .NET producer's PascalCase format with 7-digit fractions.
        out.send_raw("sensor-x", json.dumps({"SensorId": "sensor-x", "Temperature": 41.0,
                                             "Humidity": 50.0, "Location": "Dock",
                                             "Timestamp": now[:19] + ".1234567Z"}).encode())

    def dead_letters():
        records = read_topic(topics, topics.topic_dlq, committed_only=True)
        return records if len(records) == 2 else None

    records = eventually(dead_letters)
    first, second = (json.loads(r.value) for r in records)
    assert first["source"]["topic"] == topics.topic_readings
    assert first["source"]["offset"] == 0 and first["valueBase64"]
    assert second["errors"][0]["field"] == "temperature"
    assert records[0].key == "sensor-x"
    alerts = eventually(lambda: httpx.get(processor.url + "/api/alerts").json())
    assert alerts[0]["sensorId"] == "sensor-x" and alerts[0]["reason"] == "High temperature: 41.0°C"
    health = httpx.get(processor.url + "/health").json()
    assert health["invalid"] == 2 and health["processed"] == 1


def _anomalous_stream(n_ticks: int, start: datetime) -> list[Reading]:
    """Five sensors; every 7th tick sensor-01 spikes (threshold alerts with cooldown)."""
    sim = Simulator(seed=11, interval=2.0, start=start)
    readings = list(sim.stream(count=5 * n_ticks))
    out = []
    for i, r in enumerate(readings):
        if r.sensor_id == "sensor-02" and (i // 5) % 40 == 0:
            r = r.model_copy(update={"temperature": 45.0})
        out.append(r)
    return out


def _offline_alert_ids(readings: list[Reading], settings: Settings) -> set[str]:
    """What the same rules raise over the same history offline (silence aside: it is
    driven by the wall clock live)."""
    import pandas as pd

    from sensorlib.engine.pipeline import run_frame
    from sensorlib.processor.loop import rules_from_settings

    frame = pd.DataFrame([r.to_dict() for r in readings])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    _, alerts = run_frame(frame, window=timedelta(seconds=settings.window_seconds),
                          rules=rules_from_settings(settings), tick_every=None)
    return set(alerts.loc[alerts["rule"] != "silent", "alertId"])


def _lag(settings: Settings):
    from sensorlib.kafka.admin import group_lag

    return group_lag(settings, settings.processor_group, settings.topic_readings)


@pytest.mark.slow
def test_two_processors_share_partitions_and_publish_each_alert_once(spawn, topics: Settings) -> None:
    readings = _anomalous_stream(600, datetime.now(UTC) - timedelta(hours=1))
    one = spawn("processor", topics, "--instance", "a")
    two = spawn("processor", topics, "--instance", "b")

    def split():
        a = httpx.get(one.url + "/health").json()["assignedPartitions"]
        b = httpx.get(two.url + "/health").json()["assignedPartitions"]
        return (a, b) if a and b and sorted(a + b) == [0, 1, 2] else None

    eventually(split, timeout=60)
    with ReadingProducer(topics) as out:
        for r in readings:
            out.send(r)
    eventually(lambda: all((p["end"] if p["lag"] is None else p["lag"]) == 0  # None: never
                           for p in _lag(topics).values()), timeout=120)  # committed
    processed = sum(httpx.get(p.url + "/health").json()["processed"] for p in (one, two))
    assert processed == len(readings)
    got = [a.alert_id for a in read_alerts(topics) if a.rule != "silent"]
    assert len(got) == len(set(got))
    assert _offline_alert_ids(readings, topics) == set(got)
