"""The processor against the reference's consumer and kafka-python's own fetch, as processes.

    .venv/bin/python benchmarks/bench_peers.py [--n 1000000] [--bootstrap host:port]

One topic of N PascalCase readings (3 partitions, 30 sensors) is raced by separate processes, each in a
consumer group of its own, timed from process start until the group's committed offsets
reach the end of the topic (as the issue that asked for it measured):

- ``reference``: the reference sample's python-consumer as a confluent-kafka loop
  (``contenders/reference_consumer.py``: json.loads, deque(150) averages, threshold, alerts);
- ``fetch``: kafka-python's fetch with no decoding at all (``contenders/kafka_python_fetch.py``),
  the wall below which no consumer of kafka-python's own records can go;
- ``fetch_fast``: the same loop with the records unpacked by ``sensorlib.kafka.records`` (as the
  processor's are): the wall for the processor, shown so that its own work can be read off;
- ``processor``: ``sensorlib processor`` (exactly-once transactions, event-time windows,
  five rules, dead letters, dedup), one worker and then ``--workers 2``.

Each contender's CPU time (user + system, its whole process tree, sampled when the group
reaches the end) gives the rate **per CPU-second**, i.e. per core: confluent-kafka fetches in
librdkafka's C threads, so its wall-clock rate uses more than one core. On a 2-core machine
the broker shares the cores with the contender, so wall-clock rates are bounded by it too.
confluent-kafka is a benchmark-only dependency (``pip install -e '.[bench]'``); without it the
reference row is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

sys.path.insert(0, os.path.dirname(__file__))

from common import broker, machine, preload, private_topics

from sensorlib.config import Settings
from sensorlib.ingest.simulate import SensorSpec
from sensorlib.kafka.ports import free_port

#: 30 sensors, so that every partition gets a share of the keys (the reference's five
#: land on two of three partitions, which would leave a second worker idle).
FLEET = tuple(SensorSpec(f"sensor-{i:02d}", f"Hall {i % 7}", 20.0 + i % 9, 50.0 + i % 11)
              for i in range(1, 31))

HERE = Path(__file__).resolve().parent
TIMEOUT = 600.0


@dataclass
class Race:
    """One contender's run: wall time from process start, CPU seconds of its process tree."""

    name: str
    records: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.records / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.records / self.cpu_s


def _cpu(proc: psutil.Process) -> float:
    total = 0.0
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:  # ended: its last sample stands (taken at most 20 ms before)
        return 0.0
    for p in tree:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def _ends(settings: Settings) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    try:
        parts = [TopicPartition(settings.topic_readings, p)
                 for p in consumer.partitions_for_topic(settings.topic_readings)]
        return consumer.end_offsets(parts)
    finally:
        consumer.close()


def race(name: str, command: list[str], settings: Settings, group: str, n: int,
         env: dict[str, str] | None = None) -> Race:
    """Run ``command`` until ``group`` has committed the end of the topic; its figures."""
    ends = _ends(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                             client_id="bench-peers-watch")
    started = time.perf_counter()
    proc = subprocess.Popen(command, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watched = psutil.Process(proc.pid)
    cpu = 0.0
    try:
        while True:
            cpu = max(cpu, _cpu(watched))
            try:
                committed = admin.list_group_offsets({group: list(ends)}).get(group, {})
            except KafkaError:  # the group may not exist yet
                committed = {}
            if all(tp in committed and committed[tp] is not None and committed[tp].offset >= end
                   for tp, end in ends.items() if end > 0):
                break
            if time.perf_counter() - started > TIMEOUT:
                raise TimeoutError(f"{name} did not finish within {TIMEOUT:.0f}s")
            if proc.poll() is not None and proc.returncode != 0:
                raise RuntimeError(f"{name} exited with {proc.returncode}")
            time.sleep(0.02)
        wall = time.perf_counter() - started
        cpu = max(cpu, _cpu(watched))
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        admin.close()
    result = Race(name, n, wall, cpu)
    print(f"  {name:<22} {result.per_s:>10,.0f}/s wall  {result.per_cpu_s:>10,.0f}/CPU-s  "
          f"({wall:.1f} s, {cpu:.1f} CPU-s)", flush=True)
    return result


def _group() -> str:
    return f"bench-peers-{uuid.uuid4().hex[:8]}"


def run(bootstrap: str | None = None, n: int = 1_000_000) -> dict[str, object]:
    """Race every contender on one preloaded topic; returns the figures (also printed)."""
    python = sys.executable
    with broker(bootstrap) as base:
        settings = private_topics(base, "peers")
        print(f"Preloading {n:,} readings …", flush=True)
        preload(settings, n, fleet=FLEET)
        common = ["--bootstrap", settings.bootstrap_servers, "--topic", settings.topic_readings,
                  "--n", str(n)]
        races: dict[str, Race] = {}
        try:
            import confluent_kafka  # noqa: F401
        except ImportError:
            print("  reference: skipped (pip install -e '.[bench]' for confluent-kafka)")
        else:
            group = _group()
            races["reference"] = race(
                "reference (confluent)", [python, str(HERE / "contenders" / "reference_consumer.py"),
                                          *common, "--alerts", settings.topic_alerts,
                                          "--group", group], settings, group, n)
        group = _group()
        races["fetch"] = race("kafka-python fetch", [
            python, str(HERE / "contenders" / "kafka_python_fetch.py"), *common,
            "--group", group], settings, group, n)
        group = _group()
        races["fetch_fast"] = race("fetch, sensorlib unpack", [
            python, str(HERE / "contenders" / "kafka_python_fetch.py"), *common,
            "--group", group, "--fast"], settings, group, n)
        for workers in (1, 2):
            group = _group()
            env = {**settings.replace(processor_group=group).to_env(),
                   "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                   "SENSORLIB_PROCESSOR_PORT": str(free_port())}
            races[f"processor_{workers}"] = race(
                f"sensorlib processor ×{workers}",
                [python, "-m", "sensorlib.cli", "processor", "--workers", str(workers)],
                settings, group, n, env=env)
    one, two, fetch = races["processor_1"], races["processor_2"], races["fetch"]
    result: dict[str, object] = {
        "machine": machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "records": n,
        "partitions": base.partitions,
        "races": {k: {**asdict(v), "per_s": round(v.per_s), "per_cpu_s": round(v.per_cpu_s)}
                  for k, v in races.items()},
        "processor_vs_fetch": round(one.per_s / fetch.per_s, 3),
        "processor_vs_fetch_per_cpu": round(one.per_cpu_s / fetch.per_cpu_s, 3),
        "fetch_fast_vs_fetch": round(races["fetch_fast"].per_s / fetch.per_s, 3),
        "processor_vs_fetch_fast": round(one.per_s / races["fetch_fast"].per_s, 3),
        "workers_2_vs_1": round(two.per_s / one.per_s, 3),
    }
    if "reference" in races:
        ref = races["reference"]
        result["processor_vs_reference"] = round(one.per_s / ref.per_s, 3)
        result["processor_vs_reference_per_cpu"] = round(one.per_cpu_s / ref.per_cpu_s, 3)
        result["workers_2_vs_reference"] = round(two.per_s / ref.per_s, 3)
        result["fetch_vs_reference_per_cpu"] = round(fetch.per_cpu_s / ref.per_cpu_s, 3)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    run(args.bootstrap, args.n)
