"""``GET /metrics`` of the producer and the processor (issue 17): real processes, the real
broker; the text is parsed with ``prometheus_client.parser`` and every counter must move by
exactly what the requests caused."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.ingest.produce import ReadingProducer
from tests.support import eventually, read_alerts, read_topic

from .conftest import scrape, total, value

pytestmark = pytest.mark.kafka

N = 6


def reading(sensor: str, **changes: object) -> dict[str, object]:
    return {"sensorId": sensor, "temperature": 42.5, "humidity": 95, "location": "Metrics",
            "timestamp": datetime.now(UTC).isoformat(), **changes}


def test_counters_move_by_what_the_posts_caused(spawn, topics: Settings) -> None:
    producer = spawn("producer", topics, "--no-simulate")
    processor = spawn("processor", topics)
    p0, q0 = scrape(producer.url), scrape(processor.url)
    assert value(p0, "sensorlib_readings_accepted_total", source="api") == 0
    assert total(q0, "sensorlib_alerts_total") == 0

    with httpx.Client(timeout=10) as client:
        for i in range(N):
            assert client.post(producer.url + "/api/events",
                               json=reading(f"metrics-{i}")).status_code == 201
        for _ in range(2):
            assert client.post(producer.url + "/api/events",
                               json=reading("bad", humidity=120)).status_code == 422
        assert client.post(producer.url + "/api/events", content=b"{}",
                           headers={"content-type": "text/plain"}).status_code == 415
        big = b'{"sensorId": "' + b"x" * 70_000 + b'"}'
        assert client.post(producer.url + "/api/events", content=big,
                           headers={"content-type": "application/json"}).status_code == 422
    with ReadingProducer(topics) as raw:  # a poison record straight onto the topic
        raw.send_raw("poison", b"not json")

    def all_processed() -> bool:
        health = httpx.get(processor.url + "/health").json()
        return health["processed"] == N and health["invalid"] == 1 and health["lag"] == 0
    eventually(all_processed)

    p1 = scrape(producer.url)
    assert value(p1, "sensorlib_readings_accepted_total", source="api") == N
    assert value(p1, "sensorlib_readings_accepted_total", source="simulator") == 0
    assert value(p1, "sensorlib_readings_refused_total", reason="invalid", field="humidity") == 2
    assert value(p1, "sensorlib_readings_refused_total", reason="unsupported_media_type",
                 field="") == 1
    assert value(p1, "sensorlib_readings_refused_total", reason="body_too_large", field="") == 1
    assert total(p1, "sensorlib_readings_refused_total") == 4
    assert value(p1, "sensorlib_publish_duration_seconds_count") == N
    assert value(p1, "sensorlib_publish_duration_seconds_bucket", le="+Inf") == N

    alerts = read_alerts(topics)
    assert len({a.sensor_id for a in alerts}) == N  # every POSTed sensor alerted
    q1 = eventually(lambda: (s := scrape(processor.url))
                    and total(s, "sensorlib_alerts_total") == len(alerts) and s)
    assert value(q1, "sensorlib_readings_processed_total") == N
    by_rule: dict[tuple[str, str], int] = {}
    for a in alerts:
        key = (a.rule, str(a.severity))
        by_rule[key] = by_rule.get(key, 0) + 1
    for (rule, severity), count in by_rule.items():
        assert value(q1, "sensorlib_alerts_total", rule=rule, severity=severity) == count
    assert value(q1, "sensorlib_dead_letters_total", field="body") == 1  # not JSON
    assert total(q1, "sensorlib_dead_letters_total") == len(read_topic(topics, topics.topic_dlq))
    # Every alert was caused by a reading: one latency observation each, well under a minute.
    assert value(q1, "sensorlib_event_to_alert_seconds_count") == len(alerts)
    assert value(q1, "sensorlib_event_to_alert_seconds_bucket", le="60.0") == len(alerts)
    assert value(q1, "sensorlib_transactions_total") >= 1
    assert (value(q1, "sensorlib_transaction_duration_seconds_count")
            == value(q1, "sensorlib_transactions_total"))
    assert value(q1, "sensorlib_processor_sessions_total") == 1
    # Lag per partition: every partition of the readings topic, all caught up.
    lag = {dict(ls)["partition"]: v for (n, ls), v in q1.items()
           if n == "sensorlib_consumer_lag_records"}
    assert sorted(lag) == [str(p) for p in range(topics.partitions)]
    assert set(lag.values()) == {0}
    assert value(q1, "sensorlib_state_rebuild_duration_seconds_count") == topics.partitions


def test_records_written_before_start_are_counted_and_lag_drains(spawn, topics) -> None:
    """Records written while no processor ran: each is counted once and every partition's
    lag series ends at 0."""
    with ReadingProducer(topics) as raw:
        for i in range(40):
            raw.send_raw(f"lag-{i % 4}", b"{}")  # invalid: dead letters, no alerts
    processor = spawn("processor", topics)

    def drained() -> dict | None:
        s = scrape(processor.url)
        lag = [v for (n, _), v in s.items() if n == "sensorlib_consumer_lag_records"]
        done = len(lag) == topics.partitions and sum(lag) == 0
        return s if done and total(s, "sensorlib_dead_letters_total") >= 40 else None
    s = eventually(drained)
    assert total(s, "sensorlib_dead_letters_total") == 40
    assert value(s, "sensorlib_readings_processed_total") == 0
    assert value(s, "sensorlib_state_rebuild_readings_total") == 0
