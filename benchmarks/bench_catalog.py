"""Catalog lookups: the archive's Iceberg catalog on PostgreSQL vs the sqlite file.

    .venv/bin/python benchmarks/bench_catalog.py [--commits 60] [--rounds 5]

No Kafka: a private PostgreSQL is started from Debian's programs (sensorlib's own
:class:`~sensorlib.history.postgres.LocalPostgres`, durable as ``sensorlib db start`` runs it,
on a free port; removed after), and the same archive — the readings, alerts and dead-letter
tables, ``commits`` small appends to the readings over 30 event days — is written once into
each catalog. Then, in one process, rounds interleaved, the median of each:

- ``load_table``: :func:`sensorlib.history.query.load_table` of the readings (what every read
  starts with: on sqlite a catalog opened per call, on PostgreSQL a pooled connection);
- ``list tables``: the catalog's ``list_tables`` of the namespace;
- ``plan one day``: ``load_table`` + the scan plan of one event day (the files to read);
- ``sql views``: :func:`sensorlib.history.query.connect` with ``tail=False`` — the three
  views ``sensorlib sql`` opens (three lookups and three plans).

Nothing asserted: PostgreSQL's cost is reported as a ratio to sqlite's (> 1: slower).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

import pandas as pd
import pyarrow as pa
from common import machine

from sensorlib.config import Settings
from sensorlib.history import query as history
from sensorlib.history.postgres import LocalPostgres
from sensorlib.kafka.ports import free_port

ROWS_PER_COMMIT = 2_000
DAYS = 30


def _fill(settings: Settings, commits: int) -> None:
    """The same archive in ``settings``' catalog: ``commits`` appends over :data:`DAYS` days."""
    readings = history.open_table(settings, history.READINGS)
    history.open_table(settings, history.ALERTS)
    history.open_table(settings, history.DEAD_LETTERS)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(commits):
        day = start + timedelta(days=i * DAYS // commits)
        times = [day + timedelta(seconds=2 * j) for j in range(ROWS_PER_COMMIT)]
        rows = pa.table({
            "sensor_id": [f"sensor-{j % 5 + 1:02d}" for j in range(ROWS_PER_COMMIT)],
            "temperature": [20.0 + j % 7 for j in range(ROWS_PER_COMMIT)],
            "humidity": [50.0] * ROWS_PER_COMMIT, "location": ["lab"] * ROWS_PER_COMMIT,
            "event_time": times, "kafka_partition": [i % 3] * ROWS_PER_COMMIT,
            "kafka_offset": list(range(i * ROWS_PER_COMMIT, (i + 1) * ROWS_PER_COMMIT)),
            "record_time": times, "event_id": [None] * ROWS_PER_COMMIT,
        }, schema=history.READINGS.arrow_schema)
        readings.append(rows, snapshot_properties=history.offsets_property(
            settings.topic_readings, {i % 3: (i + 1) * ROWS_PER_COMMIT}))


def _timed(action: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _operations(settings: Settings) -> dict[str, Callable[[], object]]:
    day = datetime(2026, 1, 15, tzinfo=UTC)

    def plan_day() -> int:
        table = history.load_table(settings, history.READINGS)
        assert table is not None
        bounds = history._row_filter(pd.Timestamp(day), pd.Timestamp(day + timedelta(days=1)),
                                     None)
        scan = table.scan(row_filter=bounds)
        return len(list(scan.plan_files()))

    def list_tables() -> int:
        catalog = history.open_catalog(settings)
        assert catalog is not None
        return len(catalog.list_tables(history.NAMESPACE))

    def views() -> None:
        history.connect(settings, tail=False).close()

    return {"load_table": lambda: history.load_table(settings, history.READINGS),
            "list_tables": list_tables, "plan_day": plan_day, "sql_views": views}


def run(bootstrap: str | None = None, commits: int = 60, rounds: int = 5,
        repeat: int = 20) -> dict[str, Any]:
    """Both catalogs filled alike, each lookup timed on both, rounds interleaved."""
    with tempfile.TemporaryDirectory(prefix="sensorlib-bench-catalog-") as tmp:
        db = LocalPostgres(Path(tmp) / "postgres", port=free_port())
        db.start()
        try:
            base = Settings().replace(data_dir=Path(tmp))
            catalogs = {
                "sqlite": base.replace(warehouse_dir=Path(tmp) / "w-sqlite"),
                "postgres": base.replace(warehouse_dir=Path(tmp) / "w-postgres",
                                         catalog_uri=db.create_database("bench")),
            }
            fill: dict[str, float] = {}
            for name, settings in catalogs.items():
                started = time.perf_counter()
                _fill(settings, commits)
                fill[name] = time.perf_counter() - started
            ops = {name: _operations(settings) for name, settings in catalogs.items()}
            for name in catalogs:  # warm: imports, the pool's first connection, the OS cache
                for action in ops[name].values():
                    action()
            samples: dict[str, dict[str, list[float]]] = {
                name: {op: [] for op in ops[name]} for name in catalogs}
            for _ in range(rounds):
                for op in ops["sqlite"]:
                    for name in catalogs:
                        samples[name][op].append(_timed(ops[name][op], repeat))
            median = {name: {op: statistics.median(v) for op, v in by_op.items()}
                      for name, by_op in samples.items()}
            history.close_catalogs()
        finally:
            db.remove()
    return {
        "commits": commits, "rows": commits * ROWS_PER_COMMIT, "rounds": rounds,
        "repeat": repeat, "fill_s": fill,
        "sqlite_ms": {op: s * 1000 for op, s in median["sqlite"].items()},
        "postgres_ms": {op: s * 1000 for op, s in median["postgres"].items()},
        "postgres_vs_sqlite": {op: median["postgres"][op] / median["sqlite"][op]
                               for op in median["sqlite"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = run(commits=args.commits, rounds=args.rounds)
    print(machine())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
