"""One trace from ``POST /api/events`` to the alert (issue 17): W3C ``traceparent`` on the
HTTP request, on the reading's Kafka record and on the alert's record; with tracing on,
the spans reach a real Zipkin server (the jar from Maven Central). Real broker, real sockets."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.errors import SensorlibError
from sensorlib.kafka.ports import free_port
from sensorlib.observe.tracing import trace_id_of
from sensorlib.observe.viewers import resolve_zipkin, zipkin_command, zipkin_spans_endpoint
from tests.support import eventually, read_topic, wait_http

pytestmark = pytest.mark.kafka


def traceparent() -> tuple[str, str, str]:
    """A fresh sampled W3C traceparent, its trace id and its parent span id."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def post(url: str, sensor: str, header: str | None) -> None:
    body = {"sensorId": sensor, "temperature": 42.5, "humidity": 50, "location": "Trace",
            "timestamp": datetime.now(UTC).isoformat()}
    headers = {"traceparent": header} if header else {}
    answer = httpx.post(url + "/api/events", json=body, headers=headers, timeout=10)
    assert answer.status_code == 201, answer.text


def record_of(settings: Settings, topic: str, sensor: str):
    found = [r for r in read_topic(settings, topic) if r.key == sensor]
    return found[0] if found else None


def header(record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode()
    return None


@pytest.fixture(scope="module")
def zipkin(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Zipkin server on a free port (its base URL); skipped if the jar can't be had."""
    try:
        jar = resolve_zipkin(base_settings)
    except SensorlibError as exc:
        pytest.skip(f"the Zipkin server jar could not be fetched from Maven Central: {exc}")
    port = free_port()
    log: Path = tmp_path_factory.mktemp("zipkin") / "zipkin.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(zipkin_command(jar, port), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", timeout=180)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_an_incoming_traceparent_reaches_the_alert_with_tracing_off(spawn, topics) -> None:
    producer = spawn("producer", topics, "--no-simulate")
    processor = spawn("processor", topics)
    sent, trace_id, _ = traceparent()
    post(producer.url, "traced-off", sent)
    post(producer.url, "untraced", None)
    alert = eventually(lambda: record_of(topics, topics.topic_alerts, "traced-off"))
    # Not tracing, each hop forwards the context unchanged.
    assert header(record_of(topics, topics.topic_readings, "traced-off"), "traceparent") == sent
    assert header(alert, "traceparent") == sent
    assert trace_id_of(alert.headers) == trace_id
    # Without a traceparent nothing is added (tracing off costs no header).
    plain = eventually(lambda: record_of(topics, topics.topic_alerts, "untraced"))
    assert not plain.headers
    assert not record_of(topics, topics.topic_readings, "untraced").headers
    assert httpx.get(processor.url + "/health").json()["alerts"] >= 2


def test_one_trace_from_post_to_alert_in_zipkin(spawn, topics, zipkin) -> None:
    env = {"OTEL_EXPORTER_ZIPKIN_ENDPOINT": zipkin + "/api/v2/spans"}
    assert zipkin_spans_endpoint(int(zipkin.rsplit(":", 1)[1])) == env[
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT"]
    producer = spawn("producer", topics, "--no-simulate", env=env)
    spawn("processor", topics, env=env)
    sent, trace_id, span_id = traceparent()
    post(producer.url, "traced-on", sent)
    alert = eventually(lambda: record_of(topics, topics.topic_alerts, "traced-on"))
    reading = record_of(topics, topics.topic_readings, "traced-on")
    # The same trace, continued by new spans at each hop.
    for record in (reading, alert):
        assert trace_id_of(record.headers) == trace_id
        assert header(record, "traceparent") != sent
    assert header(reading, "traceparent") != header(alert, "traceparent")

    def spans() -> list[dict] | None:
        answer = httpx.get(f"{zipkin}/api/v2/trace/{trace_id}", timeout=5)
        got = answer.json() if answer.status_code == 200 else []
        services = {s.get("localEndpoint", {}).get("serviceName") for s in got}
        wanted = {"sensorlib-producer", "sensorlib-processor"}
        return got if len(got) >= 4 and wanted <= services else None
    got = eventually(spans, timeout=60)
    by_id = {s["id"]: s for s in got}
    names = {(s["localEndpoint"]["serviceName"], s.get("kind"), s["name"]) for s in got}
    assert ("sensorlib-producer", "SERVER", "post /api/events") in names
    assert any(svc == "sensorlib-producer" and kind == "PRODUCER" for svc, kind, _ in names)
    assert any(svc == "sensorlib-processor" and kind == "CONSUMER" for svc, kind, _ in names)
    assert any(svc == "sensorlib-processor" and kind == "PRODUCER" for svc, kind, _ in names)
    # The server span continues the caller's span; every other span has its parent here.
    server = next(s for s in got if s.get("kind") == "SERVER")
    assert server["parentId"] == span_id
    for span in got:
        if span is not server:
            assert span["parentId"] in by_id
    # The alert's header names the processor's publish span.
    publish = next(s for s in got if s["localEndpoint"]["serviceName"] == "sensorlib-processor"
                   and s.get("kind") == "PRODUCER")
    assert header(alert, "traceparent").split("-")[2] == publish["id"]
