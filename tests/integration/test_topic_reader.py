"""The one bounded topic reader (kafka_io.TopicReader) against the real broker."""

from __future__ import annotations

import time

import pytest

from sensorlib.config import Settings
from sensorlib.errors import KafkaUnavailable
from sensorlib.kafka.clients import make_producer
from sensorlib.kafka.reader import TopicReader

pytestmark = pytest.mark.kafka


def produce(settings: Settings, count: int, partition: int = 0, start: int = 0) -> list[int]:
    producer = make_producer(settings)
    stamps = []
    for i in range(start, start + count):
        stamp = 1_700_000_000_000 + i * 1000
        producer.send(settings.topic_readings, key="k", value=str(i).encode(),
                      partition=partition, timestamp_ms=stamp)
        stamps.append(stamp)
    producer.flush()
    producer.close()
    return stamps


def values(reader: TopicReader) -> list[int]:
    return [int(r.value) for _, records in reader for r in records]


def test_from_the_beginning_to_the_end_taken_at_the_start(topics: Settings) -> None:
    produce(topics, 10)
    with TopicReader(topics, topics.topic_readings, partitions=[0]) as reader:
        assert reader.total == 10
        produce(topics, 5, start=10)  # arrives during the read: not part of it
        assert values(reader) == list(range(10))


def test_start_by_time_offset_or_last_n_and_stop_at_until(topics: Settings) -> None:
    stamps = produce(topics, 20)
    topic = topics.topic_readings
    with TopicReader(topics, topic, partitions=[0], since_ms=stamps[12]) as reader:
        assert values(reader) == list(range(12, 20))
    with TopicReader(topics, topic, partitions=[0], offsets={0: 5}, until={0: 8}) as reader:
        assert values(reader) == [5, 6, 7]
    with TopicReader(topics, topic, last=3) as reader:
        assert values(reader) == [17, 18, 19]  # partitions 1 and 2 are empty
    with TopicReader(topics, topic, partitions=[0], since_ms=stamps[-1] + 1) as reader:
        assert reader.total == 0 and values(reader) == []


def test_follow_reads_what_arrives_until_the_deadline(topics: Settings) -> None:
    produce(topics, 3)
    started = time.monotonic()
    with TopicReader(topics, topics.topic_readings, last=0, follow=1.5) as reader:
        produce(topics, 2, start=3)
        assert values(reader) == [3, 4]
    assert time.monotonic() - started >= 1.5


def test_a_missing_topic_is_said_and_a_dead_broker_is_kafka_unavailable(topics: Settings) -> None:
    with TopicReader(topics, "no-such-topic") as reader:
        assert not reader.exists and values(reader) == []
    from sensorlib.kafka.ports import free_port

    nowhere = topics.replace(bootstrap_servers=f"127.0.0.1:{free_port()}")
    reader = TopicReader(nowhere, topics.topic_readings, request_timeout_ms=2000,
                         api_version_auto_timeout_ms=2000)
    with pytest.raises(KafkaUnavailable):
        reader.__enter__()
