"""Replay throughput: read_readings (consume + bulk decode + validate) against a bare consume loop.

    .venv/bin/python benchmarks/bench_replay.py [--n 1000000] [--bootstrap host:port]

Without ``--bootstrap`` a fresh local Kafka is started on free ports in a temporary folder
(and stopped after). N readings are preloaded into a fresh topic (values encoded up front,
big batches, no compression), then, in the same run and on the same records:

- bare: kafka-python with the same consumer settings, assign + seek to the beginning, poll
  until the end offsets, count the records — nothing decoded (the ceiling); timed from
  building the consumer to closing it, like a read_readings call;
- replay: :func:`sensorlib.replay.reader.read_readings` — the same consumption plus decoding,
  validation, typing, ordering and de-duplication into a DataFrame.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from common import broker, machine, private_topics
from kafka import TopicPartition

from sensorlib.config import Settings
from sensorlib.kafka.clients import make_consumer, make_producer
from sensorlib.replay.reader import CONSUMER_OPTIONS, read_readings

#: The consumer options read_readings uses, so the bare loop is a fair ceiling.
FETCH = dict(CONSUMER_OPTIONS)


def preload(settings: Settings, n: int) -> float:
    """Publish ``n`` simulated readings, values encoded before the clock starts; returns rec/s."""
    from datetime import UTC, datetime, timedelta

    from sensorlib.ingest.simulate import Simulator

    interval = 0.1
    # Event times end now, so they are never ahead of Kafka's record times.
    start = datetime.now(UTC) - timedelta(seconds=n / 5 * interval)
    records = [(r.sensor_id, r.to_json())
               for r in Simulator(seed=1, interval=interval, start=start).stream(count=n)]
    producer = make_producer(settings, client_id="bench-replay-preload", linger_ms=50,
                             batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
    topic = settings.topic_readings
    started = time.perf_counter()
    for i, (key, value) in enumerate(records):
        producer.send(topic, key=key, value=value)
        if i and i % 250_000 == 0:
            print(f"  preloaded {i:,} / {n:,}", flush=True)
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return n / elapsed


def bare_rate(settings: Settings) -> tuple[float, int]:
    """Records/s of a plain kafka-python loop that only consumes and counts."""
    # Timed like a read_readings call: from building the consumer to closing it.
    started = time.perf_counter()
    consumer = make_consumer(settings, client_id="bench-replay-bare", **FETCH)
    topic = settings.topic_readings
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    ends = consumer.end_offsets(parts)
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    remaining = {tp: end for tp, end in ends.items() if end > 0}
    seen = 0
    while remaining:
        for records in consumer.poll(timeout_ms=500).values():
            seen += len(records)
        for tp in list(remaining):
            if consumer.position(tp) >= remaining[tp]:
                del remaining[tp]
    consumer.close()
    elapsed = time.perf_counter() - started
    return seen / elapsed, seen


def replay_rate(settings: Settings) -> tuple[float, int]:
    """Records/s of read_readings over the whole topic (no progress bar)."""
    started = time.perf_counter()
    frame = read_readings(settings, progress=False)
    elapsed = time.perf_counter() - started
    return len(frame) / elapsed, len(frame)


def run(bootstrap: str | None, n: int) -> dict:
    """Preload ``n`` readings and measure both readers; returns the figures."""
    with broker(bootstrap) as base:
        settings = private_topics(base, "replay")
        produce = preload(settings, n)
        bare, bare_n = bare_rate(settings)
        replay, replay_n = replay_rate(settings)
        # Once more each, interleaved, to smooth out a busy machine; keep the best.
        bare2, _ = bare_rate(settings)
        replay2, _ = replay_rate(settings)
    bare, replay = max(bare, bare2), max(replay, replay2)
    return {
        "benchmark": "replay", "n": n, "machine": machine(),
        "preload_rate": round(produce), "bare_rate": round(bare), "replay_rate": round(replay),
        "ratio": round(replay / bare, 3), "bare_records": bare_n, "replay_records": replay_n,
        "load_average": os.getloadavg()[0], "check_crcs": FETCH["check_crcs"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="readings to preload")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args.bootstrap, args.n)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"machine: {result['machine']} (load average {result['load_average']:.1f})")
    print(f"CRC checks: {'on' if result['check_crcs'] else 'off (no C crc32c installed)'}, "
          "same consumer options for both readers")
    print(f"preload:       {result['preload_rate']:>10,} readings/s")
    print(f"bare consume:  {result['bare_rate']:>10,} records/s  ({result['bare_records']:,})")
    print(f"read_readings: {result['replay_rate']:>10,} rows/s     ({result['replay_records']:,})")
    print(f"ratio:         {result['ratio']:>10.2f}× (target ≥ 0.8×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
