"""Round trips through the real broker: keys, ordering, topic set-up."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from kafka import TopicPartition

from sensorlib.config import Settings
from sensorlib.kafka.admin import ensure_topics, topic_partitions
from sensorlib.kafka.clients import make_consumer, make_producer

pytestmark = pytest.mark.kafka


def _drain(settings: Settings, topic: str, expected: int, timeout: float = 60.0) -> list:
    consumer = make_consumer(settings, client_id="test-drain")
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    records = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    consumer.close()
    return records


def test_keyed_round_trip_of_thousands_keeps_per_partition_order(topics: Settings) -> None:
    producer = make_producer(topics)
    sensors = [f"sensor-{i:02d}" for i in range(1, 8)]
    n = 5000
    sent = []
    for i in range(n):
        key = sensors[i % len(sensors)]
        value = f'{{"seq": {i}}}'.encode()
        sent.append(producer.send(topics.topic_readings, key=key, value=value))
    producer.flush()
    metas = [f.get(timeout=30) for f in sent]
    producer.close()

    records = _drain(topics, topics.topic_readings, n)
    assert len(records) == n
    # Every record arrived once, with its key.
    seqs = sorted(int(r.value.decode()[8:-1]) for r in records)
    assert seqs == list(range(n))
    # One key always lands on one partition (keyed by sensorId).
    partitions_of_key = defaultdict(set)
    for r in records:
        partitions_of_key[r.key].add(r.partition)
    assert set(partitions_of_key) == set(sensors)
    assert all(len(p) == 1 for p in partitions_of_key.values())
    # Within a partition, offsets and per-key send order agree.
    by_key = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key[r.key].append(int(r.value.decode()[8:-1]))
    for seq in by_key.values():
        assert seq == sorted(seq)
    # The producer's acknowledgements name the same partitions the consumer saw.
    assert {m.partition for m in metas} == {r.partition for r in records}


def test_topic_setup_is_idempotent_with_the_design_partitions(settings: Settings) -> None:
    first = ensure_topics(settings)
    assert first == {settings.topic_readings: "created", settings.topic_alerts: "created",
                     settings.topic_dlq: "created", settings.topic_rules: "created",
                     settings.topic_faults: "created"}
    second = ensure_topics(settings)
    assert set(second.values()) == {"exists"}
    parts = topic_partitions(settings, settings.topics)
    assert len(parts[settings.topic_readings]) == 3
    assert len(parts[settings.topic_alerts]) == 3
    assert len(parts[settings.topic_dlq]) == 1
    assert len(topic_partitions(settings, [settings.topic_faults])[settings.topic_faults]) == 1


def test_topics_have_retention_set(topics: Settings) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    from sensorlib.kafka.clients import make_admin

    admin = make_admin(topics)
    try:
        result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics.topic_readings)])
    finally:
        admin.close()
    text = repr(result)
    assert "retention.ms" in text
    assert str(topics.retention_hours * 3600 * 1000) in text
