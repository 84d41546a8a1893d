"""POST /api/events answers with the trace id: a ``traceparent`` response header
(issue 24, item 15)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from sensorlib.config import Settings
from tests.support import read_topic

pytestmark = pytest.mark.kafka

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _reading() -> dict[str, object]:
    return {"sensorId": "sensor-trace", "temperature": 21.5, "humidity": 40,
            "timestamp": datetime.now(UTC).isoformat()}


def test_traceparent_of_the_caller_is_answered_when_not_tracing(spawn, module_topics: Settings
                                                                 ) -> None:
    api = spawn("producer", module_topics, "--no-simulate",
                env={"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_ZIPKIN_ENDPOINT": ""})
    answer = httpx.post(api.url + "/api/events", json=_reading(),
                        headers={"traceparent": CALLER}, timeout=30)
    assert answer.status_code == 201, answer.text
    assert answer.headers["traceparent"] == CALLER
    records = read_topic(module_topics, module_topics.topic_readings)
    assert ("traceparent", CALLER.encode()) in [h for r in records for h in r.headers]
    plain = httpx.post(api.url + "/api/events", json=_reading(), timeout=30)
    assert plain.status_code == 201 and "traceparent" not in plain.headers


def test_traceparent_of_the_request_when_tracing(spawn, module_topics: Settings) -> None:
    import socket

    with socket.socket() as sink:  # spans are exported nowhere that answers; fine
        sink.bind(("127.0.0.1", 0))
        port = sink.getsockname()[1]
    api = spawn("producer", module_topics, "--no-simulate",
                env={"OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"http://127.0.0.1:{port}/api/v2/spans"})
    answer = httpx.post(api.url + "/api/events", json=_reading(),
                        headers={"traceparent": CALLER}, timeout=30)
    assert answer.status_code == 201, answer.text
    _, trace_id, span_id, _ = answer.headers["traceparent"].split("-")
    assert trace_id == CALLER.split("-")[1]  # the caller's trace, continued
    assert span_id != CALLER.split("-")[2] and len(span_id) == 16
    own = httpx.post(api.url + "/api/events", json=_reading(), timeout=30)
    assert len(own.headers["traceparent"].split("-")[1]) == 32
