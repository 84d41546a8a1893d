"""Producer throughput: sensorlib's ReadingProducer against a plain kafka-python producer.

    .venv/bin/python benchmarks/bench_producer.py [--n 300000] [--bootstrap host:port]

Both publish the same N simulated readings, keyed by sensorId, with the same durable
client options (acks=all, idempotent, ``make_producer``'s batching), each into a fresh
topic, timed from the first send to the end of ``flush()`` (every record acknowledged):

- plain: ``producer.send(topic, key, value)`` of records encoded to JSON *before* the
  clock starts — the ceiling of a kafka-python producer;
- sensorlib: :class:`sensorlib.ingest.produce.ReadingProducer` ``send(reading)`` of the Reading
  objects — it encodes each reading itself and tracks every failure, as the producer
  service and the simulator do.

Each is measured twice, interleaved, and the better run kept (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from common import broker, machine, plain_send_rate, private_topics

from sensorlib.config import Settings
from sensorlib.ingest.produce import ReadingProducer
from sensorlib.ingest.simulate import Simulator
from sensorlib.model.events import Reading


def readings(n: int, seed: int = 1) -> list[Reading]:
    """``n`` simulated readings (the fleet at 10 readings/s of event time)."""
    return list(Simulator(seed=seed, interval=0.1).stream(count=n))


def reading_producer_rate(settings: Settings, items: list[Reading]) -> float:
    """Readings/s of :class:`ReadingProducer` (encoding included)."""
    producer = ReadingProducer(settings)
    try:
        started = time.perf_counter()
        for reading in items:
            producer.send(reading)
        producer.flush()
        return len(items) / (time.perf_counter() - started)
    finally:
        producer.close()


def run(bootstrap: str | None = None, n: int = 300_000) -> dict[str, object]:
    """Measure both producers on the same readings; returns the figures."""
    items = readings(n)
    encoded = [(r.sensor_id, r.to_json()) for r in items]
    plain, ours = [], []
    with broker(bootstrap) as base:
        for _ in range(2):
            plain.append(plain_send_rate(private_topics(base, "producer-plain"), encoded))
            ours.append(reading_producer_rate(private_topics(base, "producer-ours"), items))
    best_plain, best_ours = max(plain), max(ours)
    return {
        "benchmark": "producer", "machine": machine(), "n": n,
        "plain_per_s": round(best_plain), "reading_producer_per_s": round(best_ours),
        "ratio": round(best_ours / best_plain, 3),
        "runs_plain": [round(x) for x in plain], "runs_reading_producer": [round(x) for x in ours],
        "load_average": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000, help="readings (default 300000)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    args = parser.parse_args(argv)
    result = run(args.bootstrap, args.n)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
