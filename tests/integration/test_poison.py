"""One odd record never stops a reader: each is dead-lettered (or read) and the next reading
is processed — against the real broker, with the real processor and archiver processes.

The records are the ones that crash-looped the processor or the archiver before the one
gate (issue 23): a tombstone, JSON nested 3,000 deep, a 400-digit number, a value whose
dead letter would exceed a Kafka record (600 KB of quotes, 400 KB of ``é``), invalid UTF-8
inside a string, a null ``traceparent`` header, and batches compressed with every codec —
by kafka-python and by Kafka's own Java console producer.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from kafka import KafkaProducer

from sensorlib.config import Settings
from sensorlib.history.query import READINGS, open_table
from sensorlib.kafka.jars import check_java, resolve_libs
from tests.support import eventually, read_topic, running_processor

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CODECS = ("gzip", "snappy", "lz4", "zstd")


def reading(sensor: str, temperature: float = 21.0, when: datetime | None = None) -> bytes:
    when = when or datetime.now(UTC) - timedelta(seconds=5)
    return json.dumps({"SensorId": sensor, "Temperature": temperature, "Humidity": 50.0,
                       "Location": "Dock", "Timestamp": when.isoformat()}).encode()


POISON = {
    "tombstone": None,
    "deep": b'{"SensorId":' + b"[" * 3000 + b"]" * 3000 + b"}",
    "huge number": reading("sensor-p").replace(b"21.0", b"9" * 400),
    "quotes": b'"' * 600_000,
    "e-acute": "é".encode() * 200_000,
    "invalid UTF-8": reading("sensor-p").replace(b"Dock", b"Do\xc3\x28k"),
}


def _produce(settings: Settings, codec: str | None = None) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=settings.bootstrap_servers, compression_type=codec,
                         max_request_size=4 * 1024 * 1024, linger_ms=5)


def test_poison_records_are_dead_lettered_and_the_next_reading_is_processed(
        spawn, topics: Settings) -> None:
    processor = spawn("processor", topics)
    archiver = spawn("archive", topics)
    producer = _produce(topics)
    for name, value in POISON.items():
        producer.send(topics.topic_readings, key=name.encode(), value=value)
    producer.flush()
    # A valid reading with null headers (Java clients can send them; kafka-python cannot)
    # that alerts: written by Kafka's own console producer.
    console_produce(topics, b"traceparent:NULL,eventId:NULL\tsensor-h\t"
                    + reading("sensor-h", 45.0) + b"\n",
                    "--property", "parse.headers=true", "--property", "parse.key=true",
                    "--property", "null.marker=NULL")
    for codec in CODECS:  # every codec, one batch each
        with _produce(topics, codec) as compressed:
            for i in range(3):
                compressed.send(topics.topic_readings, key=f"sensor-{codec}".encode(),
                                value=reading(f"sensor-{codec}", 20.0 + i))
    producer.send(topics.topic_readings, key=b"sensor-after", value=reading("sensor-after"))
    producer.flush()
    producer.close()

    def letters() -> list | None:
        records = read_topic(topics, topics.topic_dlq, committed_only=True)
        return records if len(records) >= len(POISON) else None

    records = eventually(letters, timeout=90)
    assert len(records) == len(POISON)
    by_key = {(r.key.decode() if isinstance(r.key, bytes) else r.key) or None:
              json.loads(r.value) for r in records}
    assert set(by_key) == set(POISON)
    for letter in by_key.values():
        assert letter["errors"] and letter["source"]["topic"] == topics.topic_readings
    assert by_key["quotes"]["truncated"] and by_key["quotes"]["valueBytes"] == 600_000
    assert len(records[0].value) < 200_000 and all(len(r.value) < 200_000 for r in records)
    assert "nested too deeply" in by_key["deep"]["errors"][0]["reason"]
    assert by_key["invalid UTF-8"]["valueBase64"]

    def processed() -> dict | None:
        rows = httpx.get(processor.url + "/api/aggregates").json()
        wanted = {"sensor-after", "sensor-h", *(f"sensor-{c}" for c in CODECS)}
        return rows if wanted <= set(rows) else None

    rows = eventually(processed, timeout=60)
    assert rows["sensor-gzip"]["readingCount"] == 3 and rows["sensor-lz4"]["readingCount"] == 3
    alerts = httpx.get(processor.url + "/api/alerts", params={"sensorId": "sensor-h"}).json()
    assert any(a["rule"] == "threshold" for a in alerts)
    health = httpx.get(processor.url + "/health")
    assert health.status_code == 200, health.text

    # The archiver read the same records (every codec, invalid UTF-8 among them) and kept
    # exactly the readings the processor took: same verdicts.
    def archived() -> set | None:
        table = open_table(topics, READINGS).scan().to_arrow()
        ids = set(table["sensor_id"].to_pylist())
        return ids if "sensor-after" in ids else None

    ids = eventually(archived, timeout=90)
    assert ids == {"sensor-h", "sensor-after", *(f"sensor-{c}" for c in CODECS)}
    assert httpx.get(archiver.url + "/health").status_code == 200


def console_produce(settings: Settings, lines: bytes, *options: str) -> None:
    """Write ``lines`` with Kafka's own Java ConsoleProducer (from the fetched jars)."""
    subprocess.run(
        [check_java(), "-Xmx256m", "-cp", f"{resolve_libs(settings)}/*",
         "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server",
         settings.bootstrap_servers, "--topic", settings.topic_readings, *options],
        input=lines, check=True, capture_output=True, timeout=120)


@pytest.mark.parametrize("codec", ["snappy", "lz4", "zstd", "gzip"])
def test_batches_of_kafkas_own_console_producer_are_read(spawn, topics: Settings,
                                                        codec: str) -> None:
    """Kafka's Java ConsoleProducer writes each codec as the Java and .NET clients do."""
    lines = b"".join(reading(f"java-{codec}", 20.0 + i) + b"\n" for i in range(5))
    console_produce(topics, lines, "--compression-codec", codec)
    processor = spawn("processor", topics)

    def counted() -> int | None:
        rows = httpx.get(processor.url + "/api/aggregates").json()
        row = rows.get(f"java-{codec}")
        return row["readingCount"] if row and row["readingCount"] == 5 else None

    assert eventually(counted, timeout=60) == 5
    assert read_topic(topics, topics.topic_dlq, committed_only=True) == []


def test_sensors_beyond_the_cap_are_dead_lettered_with_the_reason(
        base_settings: Settings, kafka_cluster: str) -> None:
    """SENSORLIB_MAX_SENSORS: a reading of one sensor more is refused, not kept."""
    from sensorlib.kafka.admin import ensure_topics
    from tests.conftest import private_settings

    settings = private_settings(base_settings, kafka_cluster, partitions=1, max_sensors=3)
    ensure_topics(settings)
    producer = _produce(settings)
    for i in range(6):
        producer.send(settings.topic_readings, key=f"cap-{i}".encode(), value=reading(f"cap-{i}"))
    producer.send(settings.topic_readings, key=b"cap-0", value=reading("cap-0", 22.0))
    producer.flush()
    producer.close()
    with running_processor(settings) as processor:
        eventually(lambda: processor.stats.processed + processor.stats.invalid >= 7, 60)
    assert sorted(a["sensorId"] for a in processor.aggregates()) == ["cap-0", "cap-1", "cap-2"]
    assert processor.stats.processed == 4 and processor.stats.invalid == 3
    letters = [json.loads(r.value) for r in read_topic(settings, settings.topic_dlq)]
    assert [letter["errors"][0] for letter in letters] == [
        {"field": "sensorId", "reason": "more than 3 distinct sensors (SENSORLIB_MAX_SENSORS)"}] * 3


def test_a_record_that_breaks_processing_is_isolated_by_halves(
        topics: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever fails on one record's data (here a fault injected into the windows for
    sensor "boom") costs that record a dead letter, never the stream: the poll is retried
    in halves from committed state until the record is found."""
    from sensorlib.engine.pipeline import Pipeline

    real = Pipeline.process_batch_us

    def fragile(self: Pipeline, batch: list) -> list:
        if any(reading.sensor_id == "boom" for reading, _ in batch):
            raise ValueError("boom reading (fault injected by the test)")
        return real(self, batch)

    monkeypatch.setattr(Pipeline, "process_batch_us", fragile)
    producer = _produce(topics)
    for i in range(300):
        sensor = "boom" if i == 150 else f"ok-{i % 7}"
        producer.send(topics.topic_readings, key=b"same-partition", value=reading(sensor))
    producer.flush()
    producer.close()
    with running_processor(topics) as processor:
        eventually(lambda: processor.stats.processed + processor.stats.invalid >= 300, 120)
        assert processor.problems() == []
    assert processor.stats.processed == 299 and processor.stats.invalid == 1
    assert processor.stats.isolations >= 1
    (letter,) = [json.loads(r.value) for r in read_topic(topics, topics.topic_dlq)]
    assert letter["errors"][0]["reason"].startswith("processing failed: ValueError: boom")
    assert letter["source"]["offset"] == 150
