"""The fast record unpacking on a real broker: the same records as kafka-python's own.

Transactions are what the fast path must not get wrong: under ``read_committed`` an
aborted transaction's records and every commit/abort marker (control batch) are skipped,
and offsets still run on past them.
"""

from __future__ import annotations

import time

import pytest
from kafka import TopicPartition

from sensorlib.config import Settings
from sensorlib.kafka.clients import make_consumer, make_producer
from sensorlib.kafka.records import install

pytestmark = pytest.mark.kafka


def _read_all(settings: Settings, topic: str, fast: bool, isolation: str, until: int) -> list:
    consumer = make_consumer(settings, client_id="test-fast-records", isolation_level=isolation,
                             max_poll_records=7)  # polls that stop inside batches
    if fast:
        assert install(consumer)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    out = []
    deadline = time.monotonic() + 60
    while consumer.position(tp) < until and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            out.extend(records)
    position = consumer.position(tp)
    consumer.close()
    assert position == until
    if fast:
        return [(o, t, k.decode() if k is not None else None, v, list(h))
                for o, t, k, v, h in out]
    return [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in out]


def test_fast_records_equal_kafka_pythons_around_aborted_and_committed_transactions(
        topics: Settings) -> None:
    topic = topics.topic_readings
    plain = make_producer(topics)
    for i in range(5):
        plain.send(topic, key="s1", value=f"plain-{i}".encode(), partition=0,
                   headers=[("eventId", f"e{i}".encode())] if i % 2 else None)
    plain.send(topic, key="s9", value=None, partition=0)  # a tombstone: a null value
    plain.send(topic, key=None, value=b"", partition=0)  # a null key, an empty value
    plain.flush()
    txn = make_producer(topics, transactional_id=f"{topics.processor_group}-fast-records")
    txn.init_transactions()
    txn.begin_transaction()
    for i in range(4):
        txn.send(topic, key="s2", value=f"aborted-{i}".encode(), partition=0)
    txn.flush()
    txn.abort_transaction()
    txn.begin_transaction()
    for i in range(3):
        txn.send(topic, key="s3", value=f"committed-{i}".encode(), partition=0)
    txn.commit_transaction()
    for i in range(2):
        plain.send(topic, key="s1", value=f"after-{i}".encode(), partition=0)
    plain.flush()
    end = plain.send(topic, key="s1", value=b"last", partition=0).get(timeout=30).offset + 1
    txn.close()
    plain.close()

    committed = _read_all(topics, topic, fast=True, isolation="read_committed", until=end)
    assert committed == _read_all(topics, topic, fast=False, isolation="read_committed",
                                  until=end)
    values = [r[3] for r in committed]
    assert values == [b"plain-0", b"plain-1", b"plain-2", b"plain-3", b"plain-4", None, b"",
                      b"committed-0", b"committed-1", b"committed-2", b"after-0", b"after-1",
                      b"last"]
    assert committed[1][4] == [("eventId", b"e1")] and committed[6][2] is None

    everything = _read_all(topics, topic, fast=True, isolation="read_uncommitted", until=end)
    assert everything == _read_all(topics, topic, fast=False, isolation="read_uncommitted",
                                   until=end)
    assert [r[3] for r in everything].count(b"aborted-0") == 1
