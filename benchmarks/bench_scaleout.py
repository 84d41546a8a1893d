"""Processor scale-out: throughput of 1 and 2 processor instances (processes, one group).

    .venv/bin/python benchmarks/bench_scaleout.py [--n 600000] [--bootstrap host:port]

A 6-partition readings topic is preloaded with N readings from a 60-sensor fleet (so
every partition gets a fair share of keys). Then, for 1 and then 2 instances, a fresh
consumer group reads it all: each instance is a real ``sensorlib processor --instance X``
process, as in production. The rate counts the records processed (``/health``) from
the moment every instance owns partitions until all N are done, so start-up and the
first rebalance are left out. On a 2-core machine the broker, the instances and this
script share the cores: two instances may well not be faster.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

sys.path.insert(0, os.path.dirname(__file__))

from common import broker, machine, private_topics

from sensorlib.config import Settings
from sensorlib.ingest.simulate import FaultRates, SensorSpec, Simulator
from sensorlib.kafka.clients import make_producer
from sensorlib.kafka.ports import free_port

PARTITIONS = 6
FLEET = tuple(SensorSpec(f"sensor-{i:02d}", f"Hall {i % 7}", 20.0 + i % 9, 50.0 + i % 11)
              for i in range(1, 61))


def preload(settings: Settings, n: int) -> float:
    """``n`` readings of the 60-sensor fleet, as fast as possible; returns records/s."""
    producer = make_producer(settings, client_id="bench-scaleout-preload", linger_ms=20,
                             batch_size=512 * 1024)
    sim = Simulator(FLEET, seed=5, faults=FaultRates(), interval=1.0,
                    start=datetime.now(UTC) - timedelta(seconds=n // len(FLEET) + 60))
    started = time.perf_counter()
    for reading in sim.stream(count=n):
        producer.send(settings.topic_readings, key=reading.sensor_id, value=reading.to_json())
    producer.flush()
    producer.close()
    return n / (time.perf_counter() - started)


def _health(url: str) -> dict | None:
    try:
        return httpx.get(url, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None


def measure(settings: Settings, instances: int, n: int, timeout: float = 600.0) -> dict[str, float]:
    """Records/s of ``instances`` processor processes in one fresh group over the topic."""
    group = settings.replace(processor_group=f"bench-scaleout-{instances}-{uuid.uuid4().hex[:6]}")
    env = {**os.environ, **group.to_env(), "KAFKA_BOOTSTRAP_SERVERS": group.bootstrap_servers}
    procs, urls = [], []
    for i in range(instances):
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "sensorlib.cli", "processor", "--instance", chr(ord("a") + i),
             "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls.append(f"http://127.0.0.1:{port}/health")
    try:
        deadline = time.monotonic() + timeout
        base_at = base_count = None
        while time.monotonic() < deadline:
            answers = [_health(u) for u in urls]
            if all(answers):
                done = sum(a["processed"] for a in answers)
                if base_at is None and all(a["assignedPartitions"] for a in answers):
                    base_at, base_count = time.perf_counter(), done
                if done >= n:
                    if base_at is None or done == base_count:
                        raise RuntimeError("all records were processed before every instance "
                                           "owned partitions: use a larger --n")
                    elapsed = time.perf_counter() - base_at
                    shares = [a["processed"] for a in answers]
                    return {"rate": (done - base_count) / elapsed, "measured_records": done - base_count,
                            "seconds": elapsed, "processed_per_instance": shares}
            time.sleep(0.1)
        raise RuntimeError(f"{instances} instance(s) did not finish {n:,} records in {timeout:.0f}s")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(bootstrap: str | None = None, n: int = 600_000) -> dict[str, object]:
    """Preload once, then measure 1 and 2 instances; returns the figures."""
    with broker(bootstrap) as base:
        settings = private_topics(base.replace(partitions=PARTITIONS), "scaleout")
        print(f"Preloading {n:,} readings into {PARTITIONS} partitions …", flush=True)
        preload_rate = preload(settings, n)
        results = {}
        for instances in (1, 2):
            results[instances] = measure(settings, instances, n)
            print(f"  {instances} instance(s): {results[instances]['rate']:,.0f} records/s "
                  f"(per instance {results[instances]['processed_per_instance']})", flush=True)
    one, two = results[1]["rate"], results[2]["rate"]
    return {
        "benchmark": "scaleout", "machine": machine(), "n": n, "partitions": PARTITIONS,
        "preload_per_s": round(preload_rate), "one_instance_per_s": round(one),
        "two_instances_per_s": round(two), "speedup": round(two / one, 2),
        "details": {str(k): {kk: (round(v, 2) if isinstance(v, float) else v) for kk, v in r.items()}
                    for k, r in results.items()},
        "load_average": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600_000, help="readings (default 600000)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    args = parser.parse_args(argv)
    result = run(args.bootstrap, args.n)
    print(json.dumps(result, indent=2))
    print(f"\n1 instance: {result['one_instance_per_s']:,} records/s; 2 instances: "
          f"{result['two_instances_per_s']:,} records/s ({result['speedup']}×) on {result['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
