"""The daily-stats query over a big archive: DuckDB (``sensorlib sql``) vs Spark ``local[2]``.

    .venv/bin/python benchmarks/bench_spark.py [--big 10000000] [--repeat 3]

BIG readings over 30 days are written straight into an Iceberg table (the archive
benchmark's :func:`bench_archive.write_big`: 30 daily commits through pyiceberg, no Kafka),
then :data:`sensorlib.history.queries.DAILY_STATS` — one text for both engines — runs:

- in DuckDB: ``sensorlib.history.query.sql(…, tail=False)`` (opens the catalog, lists the
  files, queries; best of ``--repeat``);
- in Spark: a local session with two cores (:func:`sensorlib.history.spark.session`: the
  Iceberg runtime, the JDBC catalog on the same sqlite file), its start-up timed apart,
  then the query cold (the first) and warm (best of ``--repeat`` more).

Both answers are checked equal (sensor-days and counts). Needs pyspark
(``sensorlib[spark]``), Java 17+ and the jars (fetched once with Maven). No target: a
report of what a distributed engine costs on one small machine, where DuckDB is the tool.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from bench_archive import timed, write_big
from common import machine

from sensorlib.config import Settings
from sensorlib.history import query as history
from sensorlib.history import spark as spark_history
from sensorlib.history.queries import DAILY_STATS


def run(big: int, repeat: int = 3, master: str = "local[2]") -> dict:
    """Write ``big`` readings, time the daily stats in DuckDB and in Spark; the figures."""
    spark_history.check_pyspark()
    with tempfile.TemporaryDirectory(prefix="sensorlib-spark-") as folder:
        settings = Settings.from_env().replace(warehouse_dir=Path(folder) / "wh",
                                               catalog_uri=None)
        write_s = write_big(settings, big)
        rows = history.table_status(settings)[0]["rows"]
        duck_s, duck = timed(lambda: history.sql(DAILY_STATS, settings=settings, tail=False),
                             repeat)
        spark_history.jars(settings, progress=print)
        started = time.perf_counter()
        session = spark_history.session(settings, master=master)
        session_s = time.perf_counter() - started
        try:
            started = time.perf_counter()
            first = spark_history.sql(DAILY_STATS, spark=session)
            cold_s = time.perf_counter() - started
            warm_s, warm = timed(lambda: spark_history.sql(DAILY_STATS, spark=session), repeat)
        finally:
            session.stop()
        answer = warm.to_pandas()
        assert answer["n"].tolist() == duck["n"].tolist(), "Spark and DuckDB disagree"
        assert first.num_rows == len(duck)
    return {
        "benchmark": "spark", "machine": machine(), "load_average": os.getloadavg()[0],
        "rows": rows, "big_write_s": round(write_s, 1), "sensor_days": len(duck),
        "duckdb_s": round(duck_s, 3), "spark_master": master,
        "spark_session_s": round(session_s, 1), "spark_cold_s": round(cold_s, 3),
        "spark_warm_s": round(warm_s, 3), "spark_vs_duckdb": round(warm_s / duck_s, 1),
        "pyspark": spark_history.check_pyspark(), "iceberg": spark_history.ICEBERG_VERSION,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=10_000_000, help="readings in the table")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (best)")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    r = run(args.big, args.repeat, args.master)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"machine: {r['machine']} (load average {r['load_average']:.1f})")
    print(f"table:   {r['rows']:,} readings written in {r['big_write_s']} s "
          f"({r['sensor_days']} sensor-days)")
    print(f"DuckDB:  {r['duckdb_s'] * 1000:.0f} ms (sensorlib sql, best of {args.repeat})")
    print(f"Spark:   {r['spark_warm_s'] * 1000:.0f} ms warm, {r['spark_cold_s'] * 1000:.0f} ms "
          f"first query, {r['spark_session_s']} s to start the session ({r['spark_master']}, "
          f"pyspark {r['pyspark']}, Iceberg {r['iceberg']}) = {r['spark_vs_duckdb']}× DuckDB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
