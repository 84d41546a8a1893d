"""Back-pressure and idempotency when Kafka stalls or goes away (the fault tests' own broker)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx
import psutil
import pytest

from sensorlib.model.events import parse_reading
from tests.support import eventually, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _reading(sensor: str) -> dict[str, object]:
    return {"sensorId": sensor, "temperature": 21.0, "humidity": 40.0,
            "timestamp": datetime.now(UTC).isoformat()}


def _in_flight(url: str) -> int:
    return httpx.get(url + "/health", timeout=10).json()["inFlight"]


def test_a_full_in_flight_queue_answers_429_with_retry_after(lone_kafka, lone, spawn) -> None:
    api = spawn("producer", lone, "--no-simulate",
                env={"SENSORLIB_MAX_IN_FLIGHT": "1", "SENSORLIB_ACK_TIMEOUT": "10m",
                     "SENSORLIB_RETRY_AFTER": "3"})
    assert httpx.post(api.url + "/api/events", json=_reading("bp-warm")).status_code == 201
    # A batch that can never fit the bound is refused as too large, whatever Kafka does.
    too_big = httpx.post(api.url + "/api/events/batch", json=[_reading("bp-a"), _reading("bp-b")])
    assert too_big.status_code == 413 and "SENSORLIB_MAX_IN_FLIGHT" in too_big.text

    broker = psutil.Process(lone_kafka.pid(lone_kafka.nodes[0]))
    broker.suspend()  # Kafka stalls: the next reading stays in flight
    first: dict[str, httpx.Response] = {}
    sender = threading.Thread(target=lambda: first.setdefault(
        "answer", httpx.post(api.url + "/api/events", json=_reading("bp-first"), timeout=600)))
    sender.start()
    try:
        eventually(lambda: _in_flight(api.url) == 1, timeout=60)
        refused = httpx.post(api.url + "/api/events", json=_reading("bp-second"))
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "3"
        assert "SENSORLIB_MAX_IN_FLIGHT" in refused.json()["error"]
        batch = httpx.post(api.url + "/api/events/batch", json=[_reading("bp-batch")])
        assert batch.status_code == 429 and batch.headers["retry-after"] == "3"
    finally:
        broker.resume()
    sender.join(timeout=300)
    assert first["answer"].status_code == 201, first["answer"].text
    stored = {parse_reading(r.value).sensor_id for r in read_topic(lone, lone.topic_readings)}
    assert "bp-first" in stored
    assert not stored & {"bp-second", "bp-batch", "bp-a", "bp-b"}
    assert httpx.post(api.url + "/api/events", json=_reading("bp-after")).status_code == 201


def test_an_idempotency_key_retried_through_a_broker_outage_is_stored_once(
        lone_kafka, lone, spawn) -> None:
    api = spawn("producer", lone, "--no-simulate", env={"SENSORLIB_ACK_TIMEOUT": "2s"})
    assert httpx.post(api.url + "/api/events", json=_reading("outage-warm")).status_code == 201
    payload = _reading("outage-keyed")
    headers = {"Idempotency-Key": "outage-key-1"}
    lone_kafka.stop()
    answers = [httpx.post(api.url + "/api/events", json=payload, headers=headers, timeout=60)
               for _ in range(4)]
    assert [a.status_code for a in answers] == [503] * 4, [a.text for a in answers]
    assert all(a.headers.get("retry-after") for a in answers)
    assert "Idempotency-Key" in answers[0].json()["error"]
    # A reading without a key is refused at once while Kafka makes no progress.
    unkeyed = httpx.post(api.url + "/api/events", json=_reading("outage-unkeyed"), timeout=60)
    assert unkeyed.status_code == 503 and unkeyed.headers.get("retry-after")

    lone_kafka.start(timeout=120)

    def retried() -> httpx.Response | None:
        answer = httpx.post(api.url + "/api/events", json=payload, headers=headers, timeout=60)
        assert answer.status_code in (201, 503), answer.text
        return answer if answer.status_code == 201 else None

    final = eventually(retried, timeout=120, interval=1.0)
    assert final.json()["eventId"] == "outage-key-1"
    stored = [r for r in read_topic(lone, lone.topic_readings, timeout=30)
              if parse_reading(r.value).sensor_id == "outage-keyed"]
    assert len(stored) == 1, f"{len(stored)} records for one key"
    assert [v for k, v in stored[0].headers if k == "eventId"] == [b"outage-key-1"]
    assert (stored[0].partition, stored[0].offset) == (final.json()["partition"],
                                                       final.json()["offset"])
