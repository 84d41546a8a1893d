"""Dead letters keep the rejected record's trace context (issue 17): the W3C
``traceparent``/``tracestate`` headers go from the bad reading's record to its DLQ record.
Real broker, real processor process."""

from __future__ import annotations

import pytest

from sensorlib.config import Settings
from sensorlib.kafka.clients import make_producer
from sensorlib.kafka.deadletters import dead_letter_headers
from sensorlib.observe.tracing import trace_id_of
from tests.support import eventually, read_topic

from .test_tracing import traceparent

pytestmark = pytest.mark.kafka


def send_poison(settings: Settings, key: str, headers: list[tuple[str, bytes]]) -> None:
    producer = make_producer(settings)
    try:
        producer.send(settings.topic_readings, key=key, value=b"{not json", headers=headers)
        producer.flush(30)
    finally:
        producer.close()


def test_dead_letter_headers_keep_only_the_trace_context(topics: Settings) -> None:
    sent, trace_id, _ = traceparent()
    send_poison(topics, "traced", [("traceparent", sent.encode()), ("tracestate", b"k=v"),
                                   ("x-secret", b"not copied")])
    send_poison(topics, "untraced", [])
    records = {r.key: r for r in read_topic(topics, topics.topic_readings)}
    headers = dead_letter_headers(records["traced"])
    assert headers == [("traceparent", sent.encode()), ("tracestate", b"k=v")]
    assert trace_id_of(headers) == trace_id
    assert dead_letter_headers(records["untraced"]) == []


def test_processor_dead_letter_continues_the_trace(spawn, topics: Settings) -> None:
    processor = spawn("processor", topics)
    sent, trace_id, _ = traceparent()
    send_poison(topics, "poison-traced", [("traceparent", sent.encode())])

    def letter():
        found = [r for r in read_topic(topics, topics.topic_dlq) if r.key == "poison-traced"]
        return found[0] if found else None
    record = eventually(letter, timeout=60)
    assert processor.process.poll() is None
    assert trace_id_of(record.headers) == trace_id
    assert dict(record.headers)["traceparent"] == sent.encode()
