"""Processor throughput against a bare consume+decode loop, and POST-to-alert latency.

    .venv/bin/python benchmarks/bench_processor.py [--n 1000000] [--bootstrap host:port]

Both throughput figures are measured in the same run on the same preloaded topic:
the bare loop is kafka-python consuming and ``json.loads``-ing every record (the ceiling
for any Python consumer); the processor does consume → validate → windows → rules →
alerts → transactional commit. Latency is from sending ``POST /api/events`` to the alert
arriving at a ``read_committed`` consumer, with the simulator running at the reference rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import httpx
from kafka import TopicPartition

sys.path.insert(0, os.path.dirname(__file__))

from common import broker, machine, preload, private_topics

from sensorlib.config import Settings
from sensorlib.kafka.clients import make_consumer
from sensorlib.kafka.ports import free_port
from sensorlib.processor.loop import FETCH_BYTES, MAX_RECORDS, Processor

PROCESSOR_FETCH_BYTES = FETCH_BYTES
WARMUP = 5  # POST -> alert probes sent before measuring


def bare_loop(settings: Settings, n: int) -> float:
    """Records/s of consume + json.loads only (no group, from the beginning).

    Timed from the first record to the last, like the processor, so neither pays for
    connecting or joining a group.
    """
    consumer = make_consumer(settings, client_id="bench-bare", max_poll_records=MAX_RECORDS,
                             max_partition_fetch_bytes=PROCESSOR_FETCH_BYTES)
    parts = [TopicPartition(settings.topic_readings, p)
             for p in sorted(consumer.partitions_for_topic(settings.topic_readings))]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    seen = 0
    started = None
    while seen < n:
        batch = consumer.poll(timeout_ms=500)
        if started is None and batch:
            started = time.perf_counter()
        for records in batch.values():
            for record in records:
                json.loads(record.value)
            seen += len(records)
    elapsed = time.perf_counter() - started
    consumer.close()
    return n / elapsed


def processor_rate(settings: Settings, n: int) -> tuple[float, int, float]:
    """Records/s through the real Processor, from its first committed batch to all ``n``.

    Also returns the start-up time (connect, join the group, rebuild state) separately.
    """
    processor = Processor(settings)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    launched = time.perf_counter()
    thread.start()
    first_at, first_count = None, 0
    while processor.stats.processed < n:
        if not thread.is_alive():
            raise RuntimeError(processor.stats.last_error)
        if first_at is None and processor.stats.processed:
            first_at, first_count = time.perf_counter(), processor.stats.processed
        time.sleep(0.01)
    done = time.perf_counter()
    if first_at is None:
        first_at, first_count = launched, 0
    elapsed = done - first_at
    stop.set()
    thread.join(timeout=30)
    return (n - first_count) / elapsed, processor.stats.alerts, first_at - launched


def post_to_alert_latency(settings: Settings, probes: int = 100) -> dict[str, float]:
    """Milliseconds from POST /api/events to the alert at a read_committed consumer."""
    settings = private_topics(settings, "latency")
    ports = {"SENSORLIB_PRODUCER_PORT": str(free_port()), "SENSORLIB_PROCESSOR_PORT": str(free_port())}
    env = {**os.environ, **settings.to_env(), **ports, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    cli = [sys.executable, "-m", "sensorlib.cli"]
    procs = [subprocess.Popen([*cli, "producer"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([*cli, "processor"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    producer_url = f"http://127.0.0.1:{ports['SENSORLIB_PRODUCER_PORT']}"
    processor_url = f"http://127.0.0.1:{ports['SENSORLIB_PROCESSOR_PORT']}"
    try:
        for url in (producer_url, processor_url):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        # Like the processor, the reader bounds its fetch wait: with kafka-python's default
        # 500 ms an idle read_committed fetch is sometimes not woken by the commit marker.
        consumer = make_consumer(settings, client_id="bench-latency", isolation_level="read_committed",
                                 fetch_max_wait_ms=25)
        parts = [TopicPartition(settings.topic_alerts, p)
                 for p in sorted(consumer.partitions_for_topic(settings.topic_alerts))]
        consumer.assign(parts)
        consumer.seek_to_end(*parts)
        for tp in parts:
            consumer.position(tp)
        latencies = []
        with httpx.Client(timeout=10) as client:
            # The first probes pay for connections, metadata and the first transaction
            # on each partition; WARMUP of them are sent but not counted.
            for i in range(-WARMUP, probes):
                sensor = f"probe-{i:04d}" if i >= 0 else f"warmup-{-i}"
                body = {"sensorId": sensor, "temperature": 42.5, "humidity": 95, "location": "Bench",
                        "timestamp": datetime.now(UTC).isoformat()}
                sent = time.perf_counter()
                assert client.post(producer_url + "/api/events", json=body).status_code == 201
                got = None
                while got is None and time.perf_counter() - sent < 10:
                    for records in consumer.poll(timeout_ms=5).values():
                        for record in records:
                            if record.key == sensor:
                                got = time.perf_counter()
                if got is not None and i >= 0:
                    latencies.append((got - sent) * 1000)
                time.sleep(0.2)
        consumer.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    latencies.sort()
    return {
        "probes": probes,
        "received": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max_ms": latencies[-1],
    }


def run(bootstrap: str | None = None, n: int = 1_000_000, probes: int = 100) -> dict[str, object]:
    """Measure everything; returns the figures (also printed)."""
    with broker(bootstrap) as base:
        settings = private_topics(base, "processor")
        print(f"Preloading {n:,} readings …", flush=True)
        produce_rate = preload(settings, n)
        print(f"  preload rate {produce_rate:,.0f} records/s", flush=True)
        bare = bare_loop(settings, n)
        print(f"  bare consume+decode {bare:,.0f} records/s", flush=True)
        proc, alerts, startup = processor_rate(settings, n)
        print(f"  processor {proc:,.0f} records/s ({alerts:,} alerts; start-up {startup:.1f}s)",
              flush=True)
        latency = post_to_alert_latency(base, probes)
    result = {
        "machine": machine(),
        "records": n,
        "bare_consume_decode_per_s": round(bare),
        "processor_per_s": round(proc),
        "processor_vs_bare": round(proc / bare, 3),
        "alerts": alerts,
        "processor_startup_s": round(startup, 2),
        "post_to_alert_ms": {k: round(v, 1) for k, v in latency.items()},
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    run(args.bootstrap, args.n, args.probes)
