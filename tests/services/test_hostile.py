"""Hostile input against the running services (issue 12): each case failed before its fix.

Real processes, real sockets, the real broker. What must hold: a bad request gets a clear
4xx naming the field, nothing is published; a poison record reaches the DLQ and the
processor carries on in the same session; browsers cannot be tricked into posting.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.ingest.produce import ReadingProducer
from sensorlib.kafka.admin import end_offsets, ensure_topics
from sensorlib.model.times import format_timestamp
from tests.support import eventually, read_alerts, read_topic

from .test_producer_api import REFERENCE_PAYLOAD

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def producer_api(spawn_module, module_topics: Settings):
    return spawn_module("producer", module_topics.replace(body_timeout=2.0), "--no-simulate")


def stored(settings: Settings) -> int:
    return sum(end_offsets(settings, settings.topic_readings).values())


EXTREME_TIMES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00",
                 "9999-12-31T23:59:59-01:00", "2100-01-01T00:00:00Z", "2024-01-01T12:00:00Z",
                 0, "1700000000", "0"]


@pytest.mark.parametrize("stamp", EXTREME_TIMES)
def test_timestamps_outside_the_window_get_422_naming_it(producer_api, module_topics, stamp) -> None:
    before = stored(module_topics)
    answer = httpx.post(producer_api.url + "/api/events", json={**REFERENCE_PAYLOAD, "timestamp": stamp})
    assert answer.status_code == 422, answer.text  # never 201, never 500
    [detail] = answer.json()["detail"]
    assert detail["field"] == "timestamp"
    assert any(words in detail["reason"] for words in
               ("must lie between", "years 1900 to 2199", "ISO-8601 date-time"))
    assert stored(module_topics) == before


@pytest.mark.parametrize(("body", "field"), [
    ('{"sensorId":"s","temperature":20,"Temperature":999,"humidity":5}', "temperature"),
    ('{"sensorId":"s","sensorId":"t","temperature":20,"humidity":5}', "sensorId"),
    ('{"sensorId":"\\u200b","temperature":20,"humidity":5}', "sensorId"),
    ('{"sensorId":"a\\u202eb","temperature":20,"humidity":5}', "sensorId"),
    ('{"sensorId":"s","temperature":20,"humidity":5,"location":"a\\u2028b"}', "location"),
    ('{"sensorId":"\\ud800","temperature":20,"humidity":5}', "sensorId"),
])
def test_loose_input_is_refused_naming_the_field(producer_api, module_topics, body, field) -> None:
    before = stored(module_topics)
    answer = httpx.post(producer_api.url + "/api/events", content=body.encode(),
                        headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["field"] == field
    assert "JSON" not in answer.json()["detail"][0]["reason"]  # no misleading parser message
    assert stored(module_topics) == before


def test_a_text_plain_post_from_another_origin_is_refused(producer_api, module_topics) -> None:
    before = stored(module_topics)
    body = json.dumps(REFERENCE_PAYLOAD).encode()
    plain = httpx.post(producer_api.url + "/api/events", content=body,
                       headers={"content-type": "text/plain"})
    assert plain.status_code == 415 and plain.json()["detail"][0]["field"] == "Content-Type"
    evil = httpx.post(producer_api.url + "/api/events", content=body,
                      headers={"content-type": "application/json", "origin": "http://evil.example"})
    assert evil.status_code == 403 and evil.json()["detail"][0]["field"] == "Origin"
    assert stored(module_topics) == before
    same = httpx.post(producer_api.url + "/api/events", content=body,
                      headers={"content-type": "application/json", "origin": producer_api.url})
    assert same.status_code == 201  # the service's own origin is fine


def test_an_allowed_origin_may_post_with_cors_headers(spawn, settings: Settings) -> None:
    api = spawn("producer", settings.replace(cors_origins=("http://lab.example:8888",)),
                "--no-simulate")
    headers = {"origin": "http://lab.example:8888", "content-type": "application/json"}
    answer = httpx.post(api.url + "/api/events", json=REFERENCE_PAYLOAD, headers=headers)
    assert answer.status_code == 201
    assert answer.headers["access-control-allow-origin"] == "http://lab.example:8888"
    other = httpx.post(api.url + "/api/events", json=REFERENCE_PAYLOAD,
                       headers={**headers, "origin": "http://evil.example"})
    assert other.status_code == 403


@pytest.mark.parametrize("path", ["/api/sensors", "/health", "/docs"])
def test_a_foreign_host_header_is_refused(producer_api, path) -> None:
    # DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends its own Host.
    assert httpx.get(producer_api.url + path, headers={"host": "evil.example:8081"}).status_code == 400
    assert httpx.get(producer_api.url + path).status_code == 200


def _raw_connection(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    return sock


def test_a_slow_body_is_cut_off_within_the_body_timeout(producer_api) -> None:
    sock = _raw_connection(producer_api.url)
    host = urlsplit(producer_api.url).netloc
    body = json.dumps(REFERENCE_PAYLOAD).encode()
    sock.sendall(f"POST /api/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode())
    started = time.monotonic()
    answer = b""
    for byte in body:  # one byte every 0.5 s: the whole body would take over a minute
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        sock.settimeout(0.5)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        answer += chunk
        if b"\r\n\r\n" in answer:
            break
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 2.0 + 3.0  # the 2 s body timeout, plus slack


def test_an_idle_keep_alive_connection_is_closed(producer_api) -> None:
    sock = _raw_connection(producer_api.url)
    host = urlsplit(producer_api.url).netloc
    sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    sock.settimeout(30)
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    while sock.recv(65536):  # drain the rest of the answer; then the server closes
        pass
    sock.close()


# -- the processor ----------------------------------------------------------------------------

def test_poison_timestamps_go_to_the_dlq_and_the_processor_carries_on(spawn, topics: Settings) -> None:
    processor = spawn("processor", topics)
    now = datetime.now(UTC)
    poison = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2100-01-01T00:00:00Z",
              format_timestamp(now - timedelta(days=400)), format_timestamp(now + timedelta(hours=1))]
    with ReadingProducer(topics) as out:
        for stamp in poison:  # straight to Kafka: no API in the way
            out.send_raw("sensor-p", json.dumps({"SensorId": "sensor-p", "Temperature": 45.0,
                                                 "Humidity": 50.0, "Timestamp": stamp}).encode())
        out.send_raw("sensor-p", json.dumps({"SensorId": "sensor-p", "Temperature": 41.0,
                                             "Humidity": 50.0,
                                             "Timestamp": format_timestamp(now)}).encode())

    def dead() -> list:
        records = read_topic(topics, topics.topic_dlq)
        return records if len(records) == len(poison) else []

    letters = [json.loads(r.value) for r in eventually(dead)]
    assert [d["errors"][0]["field"] for d in letters] == ["timestamp"] * len(poison)
    alerts = eventually(lambda: httpx.get(processor.url + "/api/alerts").json())
    assert [a["reason"] for a in alerts] == ["High temperature: 41.0°C"]
    health = httpx.get(processor.url + "/health")
    assert health.status_code == 200, health.text
    assert health.json()["sessions"] == 1 and health.json()["invalid"] == len(poison)


def test_a_reading_minutes_ahead_does_not_make_other_sensors_silent(spawn, settings: Settings) -> None:
    topics = settings.replace(partitions=1)  # every sensor on one partition, one watermark
    ensure_topics(topics)
    processor = spawn("processor", topics)
    start = datetime.now(UTC)
    with ReadingProducer(topics) as out:
        for i in range(24):  # two sensors every 0.5 s for 12 s
            at = start + timedelta(seconds=i / 2)
            for sensor in ("sensor-a", "sensor-b"):
                out.send_raw(sensor, json.dumps({"SensorId": sensor, "Temperature": 20.0 + i % 3,
                                                 "Humidity": 50.0,
                                                 "Timestamp": format_timestamp(at)}).encode())
            if i == 4:  # inside the accepted 5 minutes ahead
                out.send_raw("sensor-c", json.dumps({
                    "SensorId": "sensor-c", "Temperature": 20.0, "Humidity": 50.0,
                    "Timestamp": format_timestamp(start + timedelta(minutes=4))}).encode())
            out.flush()
            time.sleep(max(0.0, (start + timedelta(seconds=(i + 1) / 2) - datetime.now(UTC))
                           .total_seconds()))
    eventually(lambda: httpx.get(processor.url + "/health").json()["processed"] >= 49)
    # A barrier instead of a pause: three more readings, each in a poll of its own, so the
    # processor has surely polled and ticked several times with the watermark 4 min ahead.
    with ReadingProducer(topics) as out:
        for n in range(3):
            out.send_raw("sensor-a", json.dumps({
                "SensorId": "sensor-a", "Temperature": 20.0, "Humidity": 50.0,
                "Timestamp": format_timestamp(datetime.now(UTC))}).encode())
            out.flush()
            eventually(lambda n=n: httpx.get(processor.url + "/health").json()["processed"]
                       >= 50 + n)
    assert [a for a in read_alerts(topics) if a.rule == "silent"] == []


def test_a_sasl_failure_shows_its_cause_and_never_the_password(spawn, topics: Settings) -> None:
    canary = "canary-pw-7f3a9c"
    wrong = topics.replace(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                           sasl_username="sensorlib", sasl_password=canary)
    processor = spawn("processor", wrong, wait=False)

    def explained():
        try:
            answer = httpx.get(processor.url + "/health", timeout=5)
        except httpx.HTTPError:
            return None
        body = answer.json()
        return (answer, body) if body.get("lastError") else None

    answer, body = eventually(explained, timeout=90)
    assert answer.status_code == 503 and body["ok"] is False and body["problems"]
    assert "Sasl" in body["lastError"] or "SASL" in body["lastError"]
    assert canary not in answer.text
    processor.kill()
    assert canary not in processor.log_text()
