"""The processor drops retried readings by their ``eventId`` header, live and after a restart.

Real broker, real Processor. Copies of one reading with the same (sensorId, eventId) count
once in the aggregates; readings without the header, or with different ids, all count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sensorlib.config import Settings
from sensorlib.kafka.clients import make_producer
from sensorlib.model.events import Reading
from sensorlib.processor.loop import Processor
from tests.support import eventually, running_processor

pytestmark = pytest.mark.kafka


def _send(settings: Settings, reading: Reading, event_id: str | None) -> None:
    producer = make_producer(settings, client_id="test-dedup")
    headers = [("eventId", event_id.encode())] if event_id else None
    producer.send(settings.topic_readings, key=reading.sensor_id,
                  value=reading.to_json(), headers=headers).get(timeout=30)
    producer.close()


def _send_raw(settings: Settings, value: bytes) -> None:
    producer = make_producer(settings, client_id="test-dedup")
    producer.send(settings.topic_readings, key="dedup-1", value=value).get(timeout=30)
    producer.close()


def _running(settings: Settings, instance: str):
    return running_processor(settings, instance=instance)


def _count(processor: Processor, sensor_id: str) -> int:
    return next((a["readingCount"] for a in processor.aggregates()
                 if a["sensorId"] == sensor_id), 0)


@pytest.mark.parametrize("fast_records", [True, False], ids=["fast-records", "kafka-python-records"])
def test_retried_copies_count_once_live_and_after_a_restart(
        topics: Settings, fast_records: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not fast_records:  # as if sensorlib.kafka.records could not be installed on this kafka-python
        monkeypatch.setattr("sensorlib.processor.loop.install_fast_records", lambda consumer: False)
    now = datetime.now(UTC).replace(microsecond=0)
    first = Reading(sensor_id="dedup-1", temperature=21.0, humidity=40.0, location="Lab",
                    timestamp=now - timedelta(seconds=30))
    second = first.model_copy(update={"timestamp": now - timedelta(seconds=20)})
    third = first.model_copy(update={"timestamp": now - timedelta(seconds=10)})

    with _running(topics, "a") as processor:
        _send(topics, first, "retry-1")
        _send(topics, first, "retry-1")  # the retried POST: dropped
        _send(topics, second, "retry-2")  # another id: counted
        _send(topics, third, None)  # no id: never de-duplicated
        _send(topics, third, None)
        _send_raw(topics, b'{"SensorId": "dedup-1"}')  # a dead letter, through the same loop
        eventually(lambda: processor.stats.processed + processor.stats.duplicates
                   + processor.stats.invalid >= 6, 60)
        assert processor.stats.duplicates == 1 and processor.stats.invalid == 1
        assert _count(processor, "dedup-1") == 4
        assert processor._fast_records is fast_records
        assert processor.stats.sessions == 1 and processor.stats.last_error is None

    # A producer restarted between the tries sends the copy again; a processor that
    # restarts in between must still recognise it from the history it rebuilds.
    _send(topics, first, "retry-1")
    with _running(topics, "b") as processor:
        eventually(lambda: processor.stats.duplicates == 1, 60)
        assert processor.stats.processed == 0
        assert _count(processor, "dedup-1") == 4


def test_a_retried_post_after_a_producer_sigkill_is_one_row_in_the_archive(
        spawn, topics: Settings, tmp_path) -> None:
    """The archive keeps the eventId and drops a retry as the processor does, across
    archiver restarts (the span is rebuilt from the table)."""
    import httpx

    from sensorlib.history.archiver import Archiver
    from sensorlib.history.query import READINGS, open_table

    archived = topics.replace(warehouse_dir=tmp_path / "warehouse")
    body = {"sensorId": "retry-me", "temperature": 21.0, "humidity": 40.0,
            "timestamp": (datetime.now(UTC) - timedelta(seconds=30)).isoformat()}
    key = {"Idempotency-Key": "order-42/1"}
    first = spawn("producer", topics, "--no-simulate")
    assert httpx.post(first.url + "/api/events", json=body, headers=key).status_code == 201
    first.kill()  # SIGKILL: the producer's memory of the key is gone
    second = spawn("producer", topics, "--no-simulate")
    answer = httpx.post(second.url + "/api/events", json=body, headers=key)
    assert answer.status_code == 201 and "Idempotent-Replayed" not in answer.headers

    def rows() -> list:
        table = open_table(archived, READINGS).scan().to_arrow()
        return [r for r in table.to_pylist() if r["sensor_id"] == "retry-me"]

    archiver = Archiver(archived)
    archiver.run(until_caught_up=True)
    (row,) = rows()
    assert row["event_id"] == "order-42/1"
    assert archiver.health()[1]["tables"][topics.topic_readings]["duplicates"] == 1

    # A third copy after the archiver restarted: still one row.
    _send(topics, Reading.model_validate(body), "order-42/1")
    Archiver(archived).run(until_caught_up=True)
    assert len(rows()) == 1
    assert sum(1 for r in open_table(archived, READINGS).scan().to_arrow().to_pylist()
               if r["sensor_id"] == "retry-me") == 1
