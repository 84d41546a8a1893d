"""Several archivers on a real broker: exactly once through SIGKILL and rebalances with 1M
readings, and the archive's cluster identity against a second, private broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from kafka import TopicPartition

from sensorlib.config import Settings
from sensorlib.errors import ClusterMismatch
from sensorlib.history import query as history
from sensorlib.history.archiver import Archiver
from sensorlib.kafka.admin import cluster_id, ensure_topics
from sensorlib.kafka.broker import LocalKafka
from sensorlib.kafka.clients import make_consumer, make_producer
from sensorlib.kafka.ports import free_port
from sensorlib.replay.reader import read_readings
from tests.conftest import private_settings

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
SENSORS = [f"sensor-{i:02d}" for i in range(1, 13)]


def produce(settings: Settings, n: int, chunk: int = 50_000, pause: float = 0.0) -> None:
    """``n`` valid readings, values formatted from a template (about 3× quicker than the
    model's to_json): event times end now, one per 10 ms."""
    producer = make_producer(settings, client_id="test-archivers", linger_ms=20,
                             batch_size=512 * 1024)
    start = datetime.now(UTC) - timedelta(seconds=n / 100)
    topic = settings.topic_readings
    try:
        for first in range(0, n, chunk):
            for i in range(first, min(n, first + chunk)):
                sensor = SENSORS[i % len(SENSORS)]
                at = (start + timedelta(milliseconds=10 * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                value = (f'{{"SensorId":"{sensor}","Temperature":{20 + i % 700 / 100},'
                         f'"Humidity":{40 + i % 300 / 10},"Location":"Hall",'
                         f'"Timestamp":"{at}"}}').encode()
                producer.send(topic, key=sensor, value=value)
            producer.flush(timeout=120)
            time.sleep(pause)
    finally:
        producer.close(timeout=10)


def end_offsets(settings: Settings) -> dict[int, int]:
    consumer = make_consumer(settings, client_id="test-archivers-ends")
    try:
        topic = settings.topic_readings
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: end for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def archiver(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings.to_env()}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sensorlib.cli", "archive", "--port", str(port),
             "--batch-rows", "50000", "--batch-seconds", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def health(port: int) -> dict:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=3.0).json()
    except (httpx.HTTPError, ValueError):
        return {}


def archived_rows(body: dict, topic: str) -> int:
    return (body.get("tables") or {}).get(topic, {}).get("archived") or 0


def table_offsets(settings: Settings) -> dict[int, int]:
    table = history.load_table(settings, history.READINGS)
    return {} if table is None else history.snapshot_offsets(table)


@pytest.mark.slow
@pytest.mark.parametrize("catalog", ["postgres"])  # sqlite: the one-archiver SIGKILL test
def test_two_archivers_sigkilled_and_rebalanced_archive_1m_readings_exactly_once(
        topics: Settings, tmp_path: Path, catalog: str, request: pytest.FixtureRequest) -> None:
    settings = topics.replace(warehouse_dir=tmp_path / "warehouse",
                              archiver_group=f"archiver-{os.urandom(4).hex()}")
    if catalog == "postgres":
        settings = settings.replace(catalog_uri=request.getfixturevalue("pg_catalog_uri"))
    # The million on PostgreSQL (the shared catalog); the same code path on sqlite
    # with fewer readings, to keep the suite's time (~3.5 min per million here).
    n = 1_000_000 if catalog == "postgres" else 200_000
    topic = settings.topic_readings
    # The stream must outlast both kills and the restart (~70 s): 20 chunks, paced.
    feeder = threading.Thread(target=produce, args=(settings, n),
                              kwargs={"chunk": n // 20, "pause": 0.5 if n >= 1_000_000 else 3.0},
                              daemon=True)
    feeder.start()
    log = tmp_path / "archivers.log"
    ports = [free_port(), free_port()]
    procs = [archiver(settings, port, log) for port in ports]
    killed: list[subprocess.Popen[bytes]] = []
    try:
        def wait(check, timeout: float = 240.0) -> None:
            deadline = time.monotonic() + timeout
            while not check():
                for proc in procs:
                    assert proc in killed or proc.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, log.read_text()[-4000:]
                time.sleep(0.1)

        # Both archive their share of the stream...
        wait(lambda: all(archived_rows(health(p), topic) > 0 for p in ports))
        # ...then one is SIGKILLed mid-stream (its writer dies with it): the other takes its
        # partitions over after the session timeout, from the table's offsets.
        writers = psutil.Process(procs[0].pid).children()
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=30)
        killed.append(procs[0])
        _, alive = psutil.wait_procs(writers, timeout=15)
        assert not alive, "the writer outlived the SIGKILLed archiver"
        wait(lambda: len(health(ports[1]).get("assignedPartitions", {}).get(topic, [])) == 3)
        # Restarted, it joins again: a second rebalance while the stream goes on.
        ports[0] = free_port()
        procs[0] = archiver(settings, ports[0], log)
        wait(lambda: archived_rows(health(ports[0]), topic) > 0)
        # The other one is SIGKILLed in the middle of its batches too.
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(timeout=30)
        killed.append(procs[1])
        feeder.join(timeout=600)
        assert not feeder.is_alive()
        ends = end_offsets(settings)
        assert sum(ends.values()) == n
        wait(lambda: table_offsets(settings) == ends, timeout=400)
        body = health(ports[0])
        assert body["rebalances"] >= 2
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert len(killed) == 2
    table = history.load_table(settings, history.READINGS)
    assert table is not None
    got = table.scan(selected_fields=("kafka_partition", "kafka_offset")).to_arrow()
    assert got.num_rows == n, f"{got.num_rows - n:+,} rows: a reading archived twice or lost"
    parts = got["kafka_partition"].to_numpy()
    offsets = got["kafka_offset"].to_numpy()
    for partition, end in ends.items():  # a plain producer: offsets 0..end-1, each once
        mine = np.sort(offsets[parts == partition])
        assert np.array_equal(mine, np.arange(end)), f"partition {partition} differs"


def test_an_archive_refuses_another_clusters_topic_of_the_same_name(
        topics: Settings, tmp_path: Path, lone_kafka: LocalKafka, base_settings: Settings
        ) -> None:
    """Two brokers, two cluster ids, one topic name: the archiver, the replay and SQL refuse
    to merge the second cluster's topic into the first one's archive, naming both."""
    settings = topics.replace(warehouse_dir=tmp_path / "warehouse")
    produce(settings, 1000)
    assert Archiver(settings).run(until_caught_up=True)[settings.topic_readings] == 1000
    first = cluster_id(settings)
    table = history.load_table(settings, history.READINGS)
    assert table is not None and table.properties[history.CLUSTER_PROPERTY] == first
    other = private_settings(base_settings, lone_kafka.bootstrap_servers).replace(
        topic_readings=settings.topic_readings, topic_alerts=settings.topic_alerts,
        topic_dlq=settings.topic_dlq, warehouse_dir=settings.warehouse)
    ensure_topics(other)
    produce(other, 10)
    second = cluster_id(other)
    assert second and second != first
    for attempt in (lambda: Archiver(other).run(until_caught_up=True),
                    lambda: Archiver(other).run(threading.Event()),  # the service: no retry
                    lambda: read_readings(settings=other),
                    lambda: history.sql("select count(*) from readings", settings=other)):
        with pytest.raises(ClusterMismatch) as caught:
            attempt()
        message = str(caught.value)
        assert first in message and second in message and settings.topic_readings in message
    # The first cluster still reads its archive with its tail.
    assert len(read_readings(settings=settings)) == 1000
    assert history.snapshot_offsets(history.load_table(other, history.READINGS)) == \
        end_offsets(settings)
