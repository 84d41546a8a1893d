"""The archive: archiver throughput, hour reads and SQL over a big history, size on disk.

    .venv/bin/python benchmarks/bench_archive.py [--n 1000000] [--big 10000000]
        [--repeat 3] [--writer process|thread] [--kills 5] [--bootstrap h:p]

Without ``--bootstrap`` a fresh local Kafka is started on free ports in a temporary folder.
In one run:

1. N simulated readings (event times ending now, 0.1 s apart per sensor: about 5.5 hours
   for 1M) are preloaded into a fresh topic, then, ``--repeat`` times interleaved: a bare
   kafka-python loop (assign, poll to the end, count — the ceiling) and the archiver
   (:class:`sensorlib.history.archiver.Archiver` until caught up into a fresh warehouse: decode,
   validate, Parquet, Iceberg commits with offsets). Both timed from building the consumer
   to closing it. Printed: each round's ratio, best/best and the median, and the CPU
   seconds each used (the archiver's include its writer process). Target ≥ 0.8×.
2. The size of that archive on disk per million readings, against the topic's log
   segments on the broker (only when this run started the broker).
3. A 1-hour ``read_readings`` inside that period: from the archive (plus the Kafka tail)
   vs from Kafka alone (which must scan the topic: a back-fill's record times are all
   "now"). Target ≥ 20×.
4. BIG readings back-filled over 30 days are written **straight into an Iceberg table**
   (synthetic values, through the same table code, in 30 daily commits — producing 10M
   records through Kafka and archiving them would take this 2-core machine ~10 minutes
   and measures nothing the step 1 does not), then: a 1-hour ``read_readings``
   (``source='archive'``, target ≤ 0.5 s) and a SQL daily-stats query over all of them
   (``sensorlib.history.query.sql`` grouped by the partition column ``event_day``, target ≤ 2 s;
   also printed: the same grouped by ``date_trunc('day', event_time)``).
5. With ``--kills K``: a real ``sensorlib archive`` process is SIGKILLed K times at random
   points (2–6 s after its start) while it archives the N readings into a fresh warehouse,
   a last one catches up, and the table's (partition, offset) pairs are compared with
   the topic's: none missing, none twice.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
import pandas as pd
import pyarrow as pa
from bench_replay import bare_rate, preload
from common import broker, machine, private_topics

from sensorlib.config import Settings
from sensorlib.history import query as history
from sensorlib.history.archiver import Archiver
from sensorlib.history.writer import can_fork_writer
from sensorlib.replay.reader import read_readings

#: Daily stats per sensor by the partition column ``event_day`` (the way to ask it; the
#: text ``sensorlib sql daily-stats`` and ``sensorlib spark-sql daily-stats`` run).
DAILY_STATS = history.DAILY_STATS
#: The same with a per-row ``date_trunc`` on the TIMESTAMPTZ (ICU time zone arithmetic).
DAILY_STATS_TRUNC = DAILY_STATS.replace("event_day as day", "date_trunc('day', event_time) as day")


def topic_log_bytes(topic: str) -> int | None:
    """Bytes of the topic's log segments, if the broker's folder is local (this run's)."""
    dirs = glob.glob(os.path.join(tempfile.gettempdir(), "sensorlib-bench-*", "**",
                                  f"{topic}-[0-9]*"), recursive=True)
    if not dirs:
        return None
    return sum(os.path.getsize(f) for d in dirs for f in glob.glob(os.path.join(d, "*.log")))


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (the archive writer)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def archiver_rate(settings: Settings, writer: str | None = None, *, keep: bool = False
                  ) -> tuple[float, int, float]:
    """(rows/s, rows, CPU s) of the archiver catching up on the topic into a fresh warehouse
    (``keep``: into ``settings``' own, still empty, warehouse)."""
    fresh = settings if keep else settings.replace(
        warehouse_dir=settings.warehouse.parent / uuid.uuid4().hex[:8],
        archiver_group=f"bench-archiver-{uuid.uuid4().hex[:6]}")
    cpu, started = _cpu(), time.perf_counter()
    # What the `sensorlib archive` service runs: a writer process where it can fork.
    writer = writer or ("process" if can_fork_writer() else "thread")
    done = Archiver(fresh, writer=writer).run(until_caught_up=True)
    elapsed = time.perf_counter() - started
    rows = done[settings.topic_readings]
    return rows / elapsed, rows, _cpu() - cpu


def bare_cpu(settings: Settings) -> tuple[float, int, float]:
    """(records/s, records, CPU s) of the bare kafka-python loop (the ceiling)."""
    cpu = _cpu()
    rate, seen = bare_rate(settings)
    return rate, seen, _cpu() - cpu


def throughput(settings: Settings, repeat: int, writer: str | None = None) -> dict:
    """Bare consume and the archiver, interleaved ``repeat`` times on the same topic."""
    pairs = []
    for i in range(repeat):
        bare, bare_n, bare_s = bare_cpu(settings)
        rate, rows, cpu_s = archiver_rate(settings, writer, keep=i == repeat - 1)
        pairs.append((bare, rate, bare_s, cpu_s))
        print(f"  round {i + 1}: bare {bare:,.0f}/s ({bare_s:.1f} CPU s), archiver "
              f"{rate:,.0f}/s ({cpu_s:.1f} CPU s) = {rate / bare:.2f}× "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    ratios = sorted(rate / bare for bare, rate, _, _ in pairs)
    return {
        "bare_rate": round(max(p[0] for p in pairs)), "archiver_rate": round(max(p[1] for p in
                                                                                 pairs)),
        "archiver_vs_bare": round(max(p[1] for p in pairs) / max(p[0] for p in pairs), 3),
        "ratio_median": round(ratios[len(ratios) // 2], 3),
        "ratio_min": round(ratios[0], 3), "ratio_max": round(ratios[-1], 3),
        "bare_records": bare_n, "archived_rows": rows,
        "bare_cpu_s": round(min(p[2] for p in pairs), 2),
        "archiver_cpu_s": round(min(p[3] for p in pairs), 2),
    }


def kill_check(settings: Settings, n: int, kills: int, seed: int = 20261129) -> dict:
    """SIGKILL a real ``sensorlib archive`` process ``kills`` times at random points while it
    archives the ``n``-reading topic, let a last one catch up, then compare the table's
    (partition, offset) pairs with the topic's: every record exactly once."""
    import random
    import signal
    import subprocess

    from kafka import TopicPartition

    from sensorlib.kafka.clients import make_consumer

    rng = random.Random(seed)
    fresh = settings.replace(warehouse_dir=settings.warehouse.parent / "killed",
                             archiver_group=f"bench-killed-{uuid.uuid4().hex[:6]}")
    env = dict(os.environ)
    env.update(fresh.to_env())
    env["KAFKA_BOOTSTRAP_SERVERS"] = fresh.bootstrap_servers
    command = [sys.executable, "-m", "sensorlib.cli", "archive", "--port", "0",
               "--batch-rows", "50000"]
    started = time.perf_counter()
    killed_at = []
    for _ in range(kills):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        delay = rng.uniform(2.0, 6.0)  # start-up ≈ 1.5 s, then mid-fetch / mid-commit
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        table = history.load_table(fresh, history.READINGS)
        rows = 0 if table is None or table.current_snapshot() is None else int(
            table.current_snapshot().summary.additional_properties["total-records"])
        killed_at.append(rows)
        print(f"  killed after {delay:.1f} s: {rows:,} rows in the table", flush=True)
    proc = subprocess.run(command + ["--until-caught-up"], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    elapsed = time.perf_counter() - started
    table = history.load_table(fresh, history.READINGS)
    coords = table.scan(selected_fields=("kafka_partition", "kafka_offset")).to_arrow()
    got = pd.DataFrame({"p": coords["kafka_partition"].to_numpy(),
                        "o": coords["kafka_offset"].to_numpy()})
    consumer = make_consumer(fresh, client_id="bench-kill-check")
    topic = fresh.topic_readings
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    firsts, ends = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
    consumer.close()
    # The preloaded topic holds only valid readings, one per offset (no transactions).
    want = pd.DataFrame({"p": np.concatenate([np.full(ends[tp] - firsts[tp], tp.partition)
                                              for tp in tps]),
                         "o": np.concatenate([np.arange(firsts[tp], ends[tp]) for tp in tps])})
    duplicates = int(got.duplicated().sum())
    merged = want.merge(got.drop_duplicates(), how="outer", indicator=True)
    missing = int((merged["_merge"] == "left_only").sum())
    extra = int((merged["_merge"] == "right_only").sum())
    snapshots = len(list(table.snapshots()))
    return {"kill_rows": len(got), "kill_expected": len(want), "kill_duplicates": duplicates,
            "kill_missing": missing, "kill_extra": extra, "kills": kills,
            "killed_at_rows": killed_at, "kill_snapshots": snapshots,
            "kill_exactly_once": duplicates == missing == extra == 0 and len(got) == len(want),
            "kill_s": round(elapsed, 1)}


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def write_big(settings: Settings, n: int, days: int = 30) -> float:
    """``n`` synthetic readings over ``days`` days ending now, straight into the table."""
    table = history.open_table(settings, history.READINGS)
    end = pd.Timestamp.now(tz="UTC").floor("s")
    start = end - pd.Timedelta(days=days)
    per_day = n // days
    rng = np.random.default_rng(1)
    sensors = np.array([f"sensor-{i:02d}" for i in range(1, 6)], dtype=object)
    locations = np.array(["Warehouse A", "Warehouse B", "Cold Storage", "Server Room",
                          "Production Floor"], dtype=object)
    base_t = np.array([22.0, 24.0, 5.0, 20.0, 28.0])
    base_h = np.array([55.0, 60.0, 70.0, 45.0, 65.0])
    step_us = int(days * 86400e6 / n)
    started = time.perf_counter()
    offset = 0
    for day in range(days):
        count = per_day if day < days - 1 else n - per_day * (days - 1)
        idx = np.arange(offset, offset + count)
        which = idx % 5
        micros = start.value // 1000 + idx * step_us
        arrays = {
            "sensor_id": pa.array(sensors[which], pa.string()),
            "temperature": pa.array(np.round(base_t[which] + rng.normal(0, 1.5, count), 2)),
            "humidity": pa.array(np.round(np.clip(base_h[which] + rng.normal(0, 3, count),
                                                  0, 100), 2)),
            "location": pa.array(locations[which], pa.string()),
            "event_time": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "kafka_partition": pa.array((which % 3).astype(np.int32)),
            "kafka_offset": pa.array(idx),
            "record_time": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "event_id": pa.nulls(count, pa.string()),  # (the header column added later)
        }
        batch = pa.table(arrays, schema=history.READINGS.arrow_schema)
        table.append(batch, snapshot_properties=history.offsets_property(
            settings.topic_readings, {0: 0, 1: 0, 2: 0}))
        offset += count
    return time.perf_counter() - started


def run(bootstrap: str | None, n: int, big: int, *, repeat: int = 3, writer: str | None = None,
        kills: int = 0) -> dict:
    """All the measurements; returns the figures."""
    with broker(bootstrap) as base, tempfile.TemporaryDirectory(prefix="sensorlib-wh-") as wh:
        settings = private_topics(base, "archive").replace(warehouse_dir=Path(wh) / "one")
        preload_rate = preload(settings, n)
        rates = throughput(settings, repeat, writer)  # the last round fills `settings`' table
        archived_n = rates["archived_rows"]
        status = history.table_status(settings)[0]
        log_bytes = topic_log_bytes(settings.topic_readings)

        everything = read_readings(settings=settings, source="archive")
        first = everything["timestamp"].min()
        hour = (first + pd.Timedelta(hours=1), first + pd.Timedelta(hours=2))
        archive_s, from_archive = timed(lambda: read_readings(*hour, settings=settings))
        kafka_s, from_kafka = timed(lambda: read_readings(*hour, settings=settings,
                                                          source="kafka"), repeat=1)
        assert len(from_archive) == len(from_kafka), (len(from_archive), len(from_kafka))

        big_settings = private_topics(base, "archive-big").replace(
            warehouse_dir=Path(wh) / "big")
        write_s = write_big(big_settings, big)
        big_status = history.table_status(big_settings)[0]
        end = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(days=10)
        big_hour_s, big_hour = timed(lambda: read_readings(
            end, end + pd.Timedelta(hours=1), settings=big_settings, source="archive"))
        big_auto_s, _ = timed(lambda: read_readings(
            end, end + pd.Timedelta(hours=1), settings=big_settings))
        sql_s, stats = timed(lambda: history.sql(DAILY_STATS, settings=big_settings))
        trunc_s, trunc = timed(lambda: history.sql(DAILY_STATS_TRUNC, settings=big_settings))
        assert stats["n"].tolist() == trunc["n"].tolist()  # the same days, the same counts
        killed = kill_check(settings, n, kills) if kills else {}
    return {**rates, **killed,
        "benchmark": "archive", "n": n, "big": big, "machine": machine(),
        "load_average": os.getloadavg()[0], "preload_rate": round(preload_rate),
        "writer": writer or "default", "repeat": repeat,
        "archive_bytes": status["bytes"], "archive_files": status["files"],
        "archive_mb_per_million": round(status["bytes"] / archived_n * 1e6 / 1e6, 2),
        "topic_log_bytes": log_bytes,
        "topic_mb_per_million": None if log_bytes is None else
        round(log_bytes / n * 1e6 / 1e6, 2),
        "hour_rows": len(from_archive), "hour_archive_s": round(archive_s, 4),
        "hour_kafka_s": round(kafka_s, 3), "hour_speedup": round(kafka_s / archive_s, 1),
        "big_rows": big_status["rows"], "big_files": big_status["files"],
        "big_mb": round(big_status["bytes"] / 1e6, 1), "big_write_s": round(write_s, 1),
        "big_hour_rows": len(big_hour), "big_hour_archive_s": round(big_hour_s, 4),
        "big_hour_auto_s": round(big_auto_s, 4),
        "big_sql_daily_stats_s": round(sql_s, 3), "big_sql_rows": len(stats),
        "big_sql_date_trunc_s": round(trunc_s, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="readings through Kafka")
    parser.add_argument("--big", type=int, default=10_000_000,
                        help="readings written straight into the big table")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--repeat", type=int, default=3,
                        help="bare / archiver rounds, interleaved (ratios per round)")
    parser.add_argument("--writer", choices=("process", "thread"),
                        help="the archiver's writer (default: process on Linux)")
    parser.add_argument("--kills", type=int, default=0,
                        help="then SIGKILL `sensorlib archive` this many times while it "
                             "archives the N readings and check every one is there once")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    r = run(args.bootstrap, args.n, args.big, repeat=args.repeat, writer=args.writer,
            kills=args.kills)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"machine: {r['machine']} (load average {r['load_average']:.1f})")
    print(f"bare consume:     {r['bare_rate']:>10,} records/s ({r['bare_records']:,})")
    print(f"archiver:         {r['archiver_rate']:>10,} rows/s    ({r['archived_rows']:,}) "
          f"= {r['archiver_vs_bare']:.2f}× best/best (target ≥ 0.8×); per round median "
          f"{r['ratio_median']:.2f}× ({r['ratio_min']:.2f}–{r['ratio_max']:.2f}×, "
          f"{r['repeat']} rounds, writer {r['writer']})")
    print(f"CPU per run:      bare {r['bare_cpu_s']} s, archiver {r['archiver_cpu_s']} s "
          "(incl. the writer process)")
    topic = "n/a" if r["topic_mb_per_million"] is None else f"{r['topic_mb_per_million']} MB"
    print(f"size per 1M:      archive {r['archive_mb_per_million']} MB "
          f"({r['archive_files']} files) vs topic log {topic}")
    print(f"1-hour read:      archive+tail {r['hour_archive_s'] * 1000:.0f} ms vs Kafka alone "
          f"{r['hour_kafka_s']:.2f} s = {r['hour_speedup']}× ({r['hour_rows']:,} rows; "
          "target ≥ 20×)")
    print(f"big table:        {r['big_rows']:,} rows, {r['big_files']} files, {r['big_mb']} MB, "
          f"written in {r['big_write_s']} s")
    print(f"  1-hour read:    {r['big_hour_archive_s'] * 1000:.0f} ms archive only, "
          f"{r['big_hour_auto_s'] * 1000:.0f} ms with the Kafka tail check "
          f"({r['big_hour_rows']:,} rows; target ≤ 500 ms)")
    print(f"  SQL daily stats:{r['big_sql_daily_stats_s'] * 1000:>6.0f} ms over all rows "
          f"({r['big_sql_rows']} sensor-days, group by event_day; target ≤ 2000 ms); "
          f"{r['big_sql_date_trunc_s'] * 1000:.0f} ms with date_trunc('day', event_time)")
    if r.get("kills"):
        verdict = "exactly once" if r["kill_exactly_once"] else "NOT exactly once"
        print(f"SIGKILL ×{r['kills']}:       {r['kill_rows']:,} rows for {r['kill_expected']:,} "
              f"records: {r['kill_missing']} missing, {r['kill_duplicates']} duplicated, "
              f"{r['kill_extra']} foreign → {verdict} ({r['kill_snapshots']} snapshots, "
              f"{r['kill_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
