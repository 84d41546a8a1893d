"""Shared benchmark plumbing: a broker to measure against, fast preloading, the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

from sensorlib.config import Settings
from sensorlib.ingest.simulate import REFERENCE_FLEET, SensorSpec, Simulator
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.broker import LocalKafka
from sensorlib.kafka.clients import make_producer
from sensorlib.kafka.ports import free_port


def machine() -> str:
    """One line naming the machine the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


@contextlib.contextmanager
def broker(bootstrap: str | None = None) -> Iterator[Settings]:
    """Settings for a broker: ``bootstrap`` if given, else a fresh local one (stopped after)."""
    base = Settings.from_env()
    if bootstrap:
        yield base.replace(bootstrap_servers=bootstrap, external=True)
        return
    with tempfile.TemporaryDirectory(prefix="sensorlib-bench-") as tmp:
        kafka = LocalKafka(Path(tmp), ports=[free_port()], controller_ports=[free_port()],
                           settings=base, heap="1g")
        kafka.start(timeout=180)
        try:
            yield base.replace(bootstrap_servers=kafka.bootstrap_servers, external=True)
        finally:
            kafka.stop()


def private_topics(settings: Settings, name: str) -> Settings:
    """Fresh topics and group for one benchmark (created)."""
    suffix = f"{name}-{uuid.uuid4().hex[:6]}"
    fresh = settings.replace(
        topic_readings=f"bench-readings-{suffix}", topic_alerts=f"bench-alerts-{suffix}",
        topic_dlq=f"bench-dlq-{suffix}", topic_rules=f"bench-rules-{suffix}",
        topic_faults=f"bench-faults-{suffix}",
        processor_group=f"bench-group-{suffix}",
    )
    ensure_topics(fresh)
    return fresh


def preload(settings: Settings, n: int, *, seed: int = 1, interval: float = 0.1,
            fleet: tuple[SensorSpec, ...] = REFERENCE_FLEET) -> float:
    """Publish ``n`` simulated readings as fast as possible; returns the rate (records/s)."""

    producer = make_producer(settings, client_id="bench-preload", linger_ms=20,
                             batch_size=512 * 1024, max_in_flight_requests_per_connection=5)
    # Event times end at the start of the preload: never ahead of the record times, which
    # the processor would dead-letter beyond SENSORLIB_MAX_FUTURE. (Silent sensors skip
    # readings, so the stream needs more than n / 5 ticks: ticks_for counts them.)
    ticks = Simulator(fleet, seed=seed, interval=interval).ticks_for(n)
    start = datetime.now(UTC) - timedelta(seconds=ticks * interval)
    sim = Simulator(fleet, seed=seed, interval=interval, start=start)
    topic = settings.topic_readings
    started = time.perf_counter()
    for i, reading in enumerate(sim.stream(count=n)):
        producer.send(topic, key=reading.sensor_id, value=reading.to_json())
        if i and i % 200_000 == 0:
            print(f"  preloaded {i:,} / {n:,}", flush=True)
    producer.flush()
    producer.close()
    return n / (time.perf_counter() - started)


def plain_send_rate(settings: Settings, records: list[tuple[str, bytes]],
                    client_id: str = "bench-plain-producer") -> float:
    """Records/s of a plain kafka-python producer sending pre-encoded ``(key, value)`` records.

    The topic's metadata is fetched before the clock starts; timed up to ``flush()``.
    """
    producer = make_producer(settings, client_id=client_id)
    topic = settings.topic_readings
    try:
        producer.partitions_for(topic)
        started = time.perf_counter()
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush()
        return len(records) / (time.perf_counter() - started)
    finally:
        producer.close()
