"""Drop-in with the reference system (issue 13): its consumers read what sensorlib writes.

The reference sample's parts talk through Kafka. Its Python consumer does
``event = json.loads(msg.value()); event['SensorId'], event['Temperature'], ...`` and its
Node dashboard ``JSON.parse(message.value)`` then ``reading.SensorId``, ``reading.Temperature``.
Both are exercised here over readings from every sensorlib writer: a POST to the producer
service, the producer service's simulator, and ``sensorlib simulate``. The REST answers are
compared key by key with the reference's shapes, written down below as data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.kafka.admin import end_offsets
from tests.support import eventually, read_topic, service_env

pytestmark = pytest.mark.kafka

HERE = Path(__file__).parent
#: The .NET producer's SensorEvent, serialised by System.Text.Json (PascalCase).
DOTNET_KEYS = ["SensorId", "Temperature", "Humidity", "Location", "Timestamp"]

#: The reference's REST shapes (its README, ASP.NET's and Flask's camelCase answers).
REFERENCE_SHAPES = {
    "GET /api/sensors item": {"id", "location", "baseTemperature", "baseHumidity"},
    "POST /api/events answer": {"status", "sensorEvent"},
    "POST /api/events sensorEvent": {"sensorId", "temperature", "humidity", "location",
                                     "timestamp"},
    "GET /api/aggregates value": {"sensorId", "location", "avgTemperature", "avgHumidity",
                                  "lastUpdate", "readingCount"},
}


def reference_python_consumer(settings: Settings) -> dict[str, list[float]]:
    """What the reference python-consumer computes from the topic: temperatures by sensor."""
    by_sensor: dict[str, list[float]] = {}
    for record in read_topic(settings, settings.topic_readings):
        event = json.loads(record.value)
        assert list(event) == DOTNET_KEYS, event  # exactly the .NET producer's shape
        by_sensor.setdefault(event["SensorId"], []).append(float(event["Temperature"]))
        float(event["Humidity"]), str(event["Location"]), str(event["Timestamp"])
    return by_sensor


@pytest.fixture
def written(spawn, topics: Settings) -> Settings:
    """Readings from each sensorlib writer on one topic: POST, service simulator, CLI."""
    api = spawn("producer", topics, "--rate", "10")
    posted = httpx.post(api.url + "/api/events", json={
        "sensorId": "sensor-posted", "temperature": 21.5, "humidity": 40,
        "location": "Test Area", "timestamp": datetime.now(UTC).isoformat()})
    assert posted.status_code == 201, posted.text
    eventually(lambda: httpx.get(api.url + "/health").json()["simulated"] >= 10)
    api.kill()
    cli = subprocess.run([sys.executable, "-m", "sensorlib.cli", "simulate", "--fast",
                          "--count", "25", "--seed", "4"], env=service_env(topics),
                         check=False, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    return topics


def test_the_reference_python_consumer_reads_every_writer(written: Settings) -> None:
    by_sensor = reference_python_consumer(written)
    assert by_sensor["sensor-posted"] == [21.5]
    assert {f"sensor-0{i}" for i in range(1, 6)} <= set(by_sensor)
    assert sum(map(len, by_sensor.values())) == sum(end_offsets(written, written.topic_readings).values())


def test_the_reference_node_dashboard_reads_every_writer(written: Settings) -> None:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "kafkajs").is_dir():
        pytest.skip("Node.js with kafkajs is needed (.ci/run installs it: npm ci in tests/interop)")
    total = sum(end_offsets(written, written.topic_readings).values())
    run = subprocess.run([node, str(HERE / "reference_dashboard.js"), written.bootstrap_servers,
                          written.topic_readings, f"dashboard-{written.topic_readings}",
                          str(total), "60000"], check=False, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr + run.stdout
    seen = json.loads(run.stdout)
    assert seen["seen"] == total
    sensors = seen["sensors"]
    assert "undefined" not in sensors  # what camelCase records gave: reading.SensorId undefined
    assert sensors["sensor-posted"]["latest"] == {
        "sensorId": "sensor-posted", "location": "Test Area", "temperature": 21.5,
        "humidity": 40, "timestamp": sensors["sensor-posted"]["latest"]["timestamp"]}
    for sensor_id in (f"sensor-0{i}" for i in range(1, 6)):
        history = sensors[sensor_id]["history"]
        assert history and all(isinstance(h["temperature"], (int, float)) for h in history)
        assert all(h["timestamp"].endswith("Z") for h in history)


def test_rest_answers_have_the_reference_shapes(spawn, topics: Settings) -> None:
    processor = spawn("processor", topics)
    api = spawn("producer", topics, "--no-simulate")
    sensors = httpx.get(api.url + "/api/sensors").json()
    for item in sensors:
        assert set(item) >= REFERENCE_SHAPES["GET /api/sensors item"]
    answer = httpx.post(api.url + "/api/events", json={
        "SensorId": "sensor-shape", "Temperature": 22.0, "Humidity": 50.0,
        "Location": "Lab", "Timestamp": datetime.now(UTC).isoformat()})  # PascalCase in, too
    body = answer.json()
    assert answer.status_code == 201 and body["status"] == "published"
    assert set(body) >= REFERENCE_SHAPES["POST /api/events answer"]
    assert set(body["sensorEvent"]) == REFERENCE_SHAPES["POST /api/events sensorEvent"]

    def aggregated():
        rows = httpx.get(processor.url + "/api/aggregates").json()
        return rows if "sensor-shape" in rows else None

    rows = eventually(aggregated, timeout=60)
    assert isinstance(rows, dict)  # an object keyed by sensorId, like the reference
    value = rows["sensor-shape"]
    assert set(value) >= REFERENCE_SHAPES["GET /api/aggregates value"]
    assert (value["sensorId"], value["location"], value["readingCount"]) == ("sensor-shape", "Lab", 1)
    assert value["avgTemperature"] == 22.0 and value["lastUpdate"].endswith("Z")
