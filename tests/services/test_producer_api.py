"""The producer service over real sockets against the real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.kafka.admin import end_offsets, ensure_topics
from sensorlib.model.events import parse_reading
from tests.support import eventually, read_topic

pytestmark = pytest.mark.kafka

#: The reference README's curl example, byte for byte in meaning — but for its timestamp
#: (2024-01-01), now outside the accepted event-time window (at most a year old): see
#: test_the_reference_payloads_old_timestamp_is_refused_naming_the_window.
REFERENCE_PAYLOAD = {
    "sensorId": "sensor-test",
    "temperature": 42.5,
    "humidity": 95,
    "location": "Test Area",
    "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
}


@pytest.fixture(scope="module")
def producer_api(spawn_module, module_topics: Settings):
    """One producer API for the module (starting a process per test would dominate)."""
    return spawn_module("producer", module_topics, "--no-simulate")


@pytest.fixture
def topics(module_topics: Settings) -> Settings:
    return module_topics


def test_sensors_lists_the_five_reference_sensors(producer_api) -> None:
    sensors = httpx.get(producer_api.url + "/api/sensors").json()
    assert [s["id"] for s in sensors] == [f"sensor-0{i}" for i in range(1, 6)]
    assert {s["location"] for s in sensors} == {
        "Warehouse A", "Warehouse B", "Cold Storage", "Server Room", "Production Floor"}


def test_reference_curl_payload_is_published_keyed_by_sensor(producer_api, topics: Settings) -> None:
    answer = httpx.post(producer_api.url + "/api/events", json=REFERENCE_PAYLOAD)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "published" and body["topic"] == topics.topic_readings
    assert body["sensorEvent"]["sensorId"] == "sensor-test"
    records = read_topic(topics, topics.topic_readings)
    [record] = [r for r in records if (r.partition, r.offset) == (body["partition"], body["offset"])]
    assert (record.partition, record.offset) == (body["partition"], body["offset"])
    assert record.key == "sensor-test"
    reading = parse_reading(record.value)
    assert reading.temperature == 42.5 and reading.humidity == 95.0
    assert json.loads(record.value)["SensorId"] == "sensor-test"  # .NET PascalCase on the wire


def test_the_reference_payloads_old_timestamp_is_refused_naming_the_window(producer_api) -> None:
    answer = httpx.post(producer_api.url + "/api/events",
                        json={**REFERENCE_PAYLOAD, "timestamp": "2024-01-01T12:00:00Z"})
    assert answer.status_code == 422
    [detail] = answer.json()["detail"]
    assert detail["field"] == "timestamp"
    assert "must lie between" in detail["reason"] and "SENSORLIB_MAX_PAST" in detail["reason"]


def test_missing_timestamp_means_now(producer_api) -> None:
    payload = {k: v for k, v in REFERENCE_PAYLOAD.items() if k != "timestamp"}
    answer = httpx.post(producer_api.url + "/api/events", json=payload)
    assert answer.status_code == 201
    assert answer.json()["sensorEvent"]["timestamp"].startswith("20")


BAD_INPUTS = [
    ("missing sensorId", {"temperature": 1, "humidity": 1}, "sensorId"),
    ("null sensorId", {"sensorId": None, "temperature": 1, "humidity": 1}, "sensorId"),
    ("empty sensorId", {"sensorId": "", "temperature": 1, "humidity": 1}, "sensorId"),
    ("long sensorId", {"sensorId": "s" * 65, "temperature": 1, "humidity": 1}, "sensorId"),
    ("control chars", {"sensorId": "a\u0007b", "temperature": 1, "humidity": 1}, "sensorId"),
    ("missing temperature", {"sensorId": "s", "humidity": 1}, "temperature"),
    ("string temperature", {"sensorId": "s", "temperature": "hot", "humidity": 1}, "temperature"),
    ("numeric string", {"sensorId": "s", "temperature": "42", "humidity": 1}, "temperature"),
    ("bool humidity", {"sensorId": "s", "temperature": 1, "humidity": True}, "humidity"),
    ("humidity over 100", {"sensorId": "s", "temperature": 1, "humidity": 100.5}, "humidity"),
    ("humidity below 0", {"sensorId": "s", "temperature": 1, "humidity": -1}, "humidity"),
    ("temperature over 200", {"sensorId": "s", "temperature": 200.1, "humidity": 1}, "temperature"),
    ("temperature below -100", {"sensorId": "s", "temperature": -101, "humidity": 1}, "temperature"),
    ("bad timestamp", {"sensorId": "s", "temperature": 1, "humidity": 1, "timestamp": "yesterday"},
     "timestamp"),
]


@pytest.mark.parametrize(("case", "payload", "field"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_json_inputs_get_422_naming_the_field(producer_api, topics: Settings, case, payload, field) -> None:
    before = sum(end_offsets(topics, topics.topic_readings).values())
    answer = httpx.post(producer_api.url + "/api/events", json=payload)
    assert answer.status_code == 422, answer.text
    assert sum(end_offsets(topics, topics.topic_readings).values()) == before
    fields = [d["field"] for d in answer.json()["detail"]]
    assert field in fields
    assert all(d["reason"] for d in answer.json()["detail"])


RAW_BAD = [
    ("NaN", b'{"sensorId": "s", "temperature": NaN, "humidity": 1}', "temperature"),
    ("Infinity", b'{"sensorId": "s", "temperature": 1, "humidity": Infinity}', "humidity"),
    ("array body", b'[{"sensorId": "s"}]', "body"),
    ("string body", b'"hello"', "body"),
    ("not json", b"sensor-01,22.5,55", "body"),
    ("empty body", b"", "body"),
    ("oversize", b'{"sensorId": "s", "temperature": 1, "humidity": 1, "location": "'
     + b"x" * 70000 + b'"}', "body"),
]


@pytest.mark.parametrize(("case", "body", "field"), RAW_BAD, ids=[c[0] for c in RAW_BAD])
def test_bad_bodies_get_422_and_nothing_is_published(producer_api, topics: Settings, case, body, field) -> None:
    before = sum(end_offsets(topics, topics.topic_readings).values())
    answer = httpx.post(producer_api.url + "/api/events", content=body,
                        headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert field in [d["field"] for d in answer.json()["detail"]]
    assert sum(end_offsets(topics, topics.topic_readings).values()) == before


def test_kafka_down_gives_503_not_500(spawn, settings: Settings) -> None:
    from sensorlib.kafka.ports import free_port

    nowhere = settings.replace(bootstrap_servers=f"127.0.0.1:{free_port()}")
    api = spawn("producer", nowhere, "--no-simulate", wait=False)
    from tests.support import wait_http

    health = wait_http(api.url + "/health", ok=(503,))
    assert health.json()["kafka"] == "unreachable"
    answer = httpx.post(api.url + "/api/events", json=REFERENCE_PAYLOAD)
    assert answer.status_code == 503
    assert "not reachable" in answer.json()["error"]


def test_simulator_publishes_the_fleet_and_health_counts_it(spawn, settings: Settings) -> None:
    topics = settings  # topics of its own: the module's are shared with the POST tests
    ensure_topics(topics)
    api = spawn("producer", topics, "--rate", "10")  # a tick of the 5 sensors every 0.1 s

    def simulated() -> int:
        count = httpx.get(api.url + "/health").json()["simulated"]
        return count if count >= 25 else 0

    counted = eventually(simulated)
    stored = sum(end_offsets(topics, topics.topic_readings).values())
    assert stored >= counted, "every counted reading was acknowledged by Kafka"
    sensors = {r.key for r in read_topic(topics, topics.topic_readings)}
    assert sensors == {f"sensor-0{i}" for i in range(1, 6)}
