"""Apache Spark reads the archive's Iceberg tables through Iceberg's JDBC catalog and answers
the named queries (daily stats, alerts per rule) with the same numbers as ``sensorlib sql``.

Two simulated days of the fleet with faults — readings and the live rules' alerts — are
appended to real Iceberg tables (pyiceberg, the archiver's table code, in several commits)
in a temporary warehouse, once with the catalog on a real PostgreSQL (the issue's case:
Spark's JDBC catalog on the same database) and once on the default sqlite file; then ``sensorlib sql NAME --no-tail`` (DuckDB) and ``sensorlib
spark-sql NAME`` (a local Spark, a JVM of its own) write their results to Parquet and the two
are compared: the same rows, counts, minima and maxima; means equal to 1e-12 (the engines
add in different orders). Slow: each Spark run starts a JVM (10–30 s), so alerts per
rule is compared on PostgreSQL only.

Skipped, with the reason, where pyspark (``sensorlib[spark]``), Java 17+ or the jars (Maven,
or the cache) are missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy.engine import make_url

from sensorlib.config import Settings
from sensorlib.errors import HistoryError
from sensorlib.history import query as history
from sensorlib.history import spark
from sensorlib.ingest.simulate import FaultRates, Simulator
from sensorlib.notebook.analysis import replay_rules
from tests.support import service_env

pytestmark = pytest.mark.slow

START = datetime(2026, 11, 2, tzinfo=UTC)


def _spark_or_skip(settings: Settings) -> None:
    """Skip (saying what is missing) unless pyspark, Java and the jars are there."""
    try:
        spark.check_pyspark()
    except HistoryError as exc:
        pytest.skip(str(exc))
    if shutil.which("java") is None:
        pytest.skip("Java 17+ is not installed (Spark needs it)")
    lib = settings.cache_dir / f"spark-iceberg-{spark.ICEBERG_VERSION}" / "lib"
    if not (lib / ".complete").exists() and shutil.which("mvn") is None:
        pytest.skip(f"the Iceberg/JDBC jars are not in {lib} and Maven is not installed to "
                    "fetch them")
    spark.jars(settings)  # fetched once here (a failure is a failure, not a skip)


def _append(settings: Settings, kind: history.TableKind, frame: pd.DataFrame, parts: int) -> None:
    table = history.open_table(settings, kind)
    for chunk in range(parts):
        part = frame.iloc[chunk::parts]
        data = {name: (pa.Array.from_pandas(part[frame_name]).cast(dtype)
                       if frame_name in part else pa.nulls(len(part), dtype))
                for name, dtype, frame_name in kind.columns}
        table.append(pa.table(data, schema=kind.arrow_schema))


def _archive(request: pytest.FixtureRequest, folder: Path, catalog: str) -> Iterator[Settings]:
    """Settings of an archive of two days with its catalog on ``catalog`` (postgres/sqlite)."""
    settings = Settings.from_env().replace(warehouse_dir=folder)
    _spark_or_skip(settings)
    name = None
    if catalog == "postgres":
        postgres = request.getfixturevalue("postgres")
        name = f"spark_{uuid.uuid4().hex[:10]}"
        settings = settings.replace(catalog_uri=postgres.create_database(name))
    sim = Simulator(seed=29, interval=30.0, start=START,
                    faults=FaultRates(spike=0.01, stuck=0.002, silent=0.002))
    readings = pd.DataFrame([{"sensorId": r.sensor_id, "location": r.location,
                              "temperature": r.temperature, "humidity": r.humidity,
                              "timestamp": r.timestamp} for r in sim.stream(duration=2 * 86_400)])
    readings["timestamp"] = pd.to_datetime(readings["timestamp"], utc=True)
    readings["partition"] = 0
    readings["offset"] = range(len(readings))
    alerts = replay_rules(readings)
    assert len(alerts) > 100 and alerts["rule"].nunique() > 1, alerts["rule"].value_counts()
    _append(settings, history.READINGS, readings, parts=3)
    _append(settings, history.ALERTS, alerts, parts=2)
    yield settings
    if name is not None:
        history.close_catalogs()
        request.getfixturevalue("postgres").drop_database(name)


@pytest.fixture(scope="module")
def pg_archive(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Settings]:
    """The archive with its catalog on a real PostgreSQL (the issue's case)."""
    yield from _archive(request, tmp_path_factory.mktemp("warehouse"), "postgres")


@pytest.fixture(scope="module")
def sqlite_archive(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Settings]:
    """The archive with its default catalog, the sqlite file (xerial's JDBC driver)."""
    yield from _archive(request, tmp_path_factory.mktemp("warehouse"), "sqlite")


@pytest.fixture(params=["pg_archive", "sqlite_archive"])
def archived(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue(request.param)


def _env(settings: Settings) -> dict[str, str]:
    extra = {"SENSORLIB_CATALOG_URI": settings.catalog_uri} if settings.catalog_uri else {}
    return service_env(settings, **extra)


def _run(settings: Settings, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "sensorlib.cli", *args],
                          env=_env(settings), capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _both(settings: Settings, name: str, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``sensorlib sql NAME`` and ``sensorlib spark-sql NAME``, as read from their Parquet."""
    duck, spk = folder / f"{name}-duckdb.parquet", folder / f"{name}-spark.parquet"
    _run(settings, "sql", name, "--no-tail", "--out", str(duck))
    _run(settings, "spark-sql", name, "--out", str(spk))
    return pq.read_table(duck).to_pandas(), pq.read_table(spk).to_pandas()


def _same(duck: pd.DataFrame, spk: pd.DataFrame, exact: list[str], close: list[str]) -> None:
    assert list(spk.columns) == list(duck.columns)
    assert len(spk) == len(duck) > 0
    for column in exact:
        left, right = duck[column], spk[column]
        if pd.api.types.is_datetime64_any_dtype(left):
            left, right = pd.to_datetime(left, utc=True), pd.to_datetime(right, utc=True)
        assert left.astype(str).tolist() == right.astype(str).tolist(), column
    for column in close:
        pd.testing.assert_series_equal(spk[column].astype(float), duck[column].astype(float),
                                       rtol=1e-12, atol=0, check_names=False)


def test_spark_daily_stats_equal_sensorlib_sql(archived: Settings, tmp_path: Path) -> None:
    duck, spk = _both(archived, "daily-stats", tmp_path)
    assert duck["day"].nunique() >= 2 and duck["sensor_id"].nunique() >= 5
    assert int(duck["n"].sum()) == int(
        history.table_status(archived)[0]["rows"])  # every archived reading counted
    _same(duck, spk, exact=["sensor_id", "day", "n", "t_min", "t_max", "h_min", "h_max"],
          close=["t_mean", "h_mean"])


def test_spark_alerts_per_rule_equal_sensorlib_sql(pg_archive: Settings, tmp_path: Path) -> None:
    duck, spk = _both(pg_archive, "alerts-per-rule", tmp_path)
    assert duck["rule"].nunique() > 1
    _same(duck, spk, exact=["rule", "severity", "alerts", "sensors", "first_alert",
                            "last_alert"], close=[])


def test_status_spark_prints_a_command_line_that_names_the_catalog(archived: Settings) -> None:
    proc = subprocess.run([sys.executable, "-m", "sensorlib.cli", "status", "--spark"],
                          env=_env(archived), capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert spark.ICEBERG_RUNTIME in out
    if archived.catalog_uri:  # jdbc:postgresql://127.0.0.1:PORT/DATABASE, no password
        url = make_url(archived.catalog_uri)
        want = f"jdbc:postgresql://{url.host}:{url.port}/{url.database}"
    else:
        want = f"jdbc:sqlite:{history.catalog_path(archived)}"
    assert f"spark.sql.catalog.sensorlib.uri={want}" in out
    assert "CREATE OR REPLACE TEMPORARY VIEW readings" in out
