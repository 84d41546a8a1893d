"""How Spark is pointed at the archive's catalog: SQLAlchemy URL → JDBC URL, the catalog's
Spark settings, the printed command line (never a password), the named queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorlib.errors import HistoryError
from sensorlib.history import queries, spark
from sensorlib.history.spark import JdbcCatalog, catalog_conf, jdbc_url


def test_a_sqlite_catalog_becomes_a_jdbc_sqlite_url(tmp_path: Path) -> None:
    url, user, password = jdbc_url(f"sqlite:///{tmp_path}/catalog.db")
    assert url == f"jdbc:sqlite:{tmp_path}/catalog.db"
    assert user is None and password is None


def test_a_postgresql_catalog_keeps_host_port_database_and_splits_the_credentials() -> None:
    url, user, password = jdbc_url(
        "postgresql+psycopg://archiver:s3cret@db.example:5433/sensorlib?sslmode=require")
    assert url == "jdbc:postgresql://db.example:5433/sensorlib?sslmode=require"
    assert (user, password) == ("archiver", "s3cret")


@pytest.mark.parametrize("uri, words", [
    ("postgresql+psycopg://me@/sensorlib?host=/run/pg", "Unix socket"),
    ("sqlite://", "in-memory"),
    ("mysql+pymysql://me@db/cat", "'mysql'"),
])
def test_what_java_cannot_reach_is_a_clear_error(uri: str, words: str) -> None:
    with pytest.raises(HistoryError, match=words):
        jdbc_url(uri)


def test_the_spark_catalog_is_named_like_pyiceberg_s() -> None:
    from sensorlib.history.query import NAMESPACE

    catalog = JdbcCatalog("jdbc:postgresql://h:5432/d", "file:///w", "u", "pw")
    conf = catalog_conf(catalog)
    prefix = f"spark.sql.catalog.{NAMESPACE}"
    assert conf[prefix] == "org.apache.iceberg.spark.SparkCatalog"
    assert conf[f"{prefix}.type"] == "jdbc"
    assert conf[f"{prefix}.uri"] == "jdbc:postgresql://h:5432/d"
    assert conf[f"{prefix}.jdbc.user"] == "u" and conf[f"{prefix}.jdbc.password"] == "pw"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert "pw" not in repr(catalog)


def test_the_printed_command_line_names_the_password_variable_not_the_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sensorlib.config import Settings

    catalog = JdbcCatalog("jdbc:postgresql://h:5432/d", "file:///w", "u", "s3cret")
    monkeypatch.setattr(spark, "jdbc_catalog", lambda settings: catalog)
    words = spark.command_line(Settings())
    line = spark.shell_line(words)
    assert "s3cret" not in line
    assert f'"spark.sql.catalog.sensorlib.jdbc.password=${spark.PASSWORD_VARIABLE}"' in line
    assert spark.POSTGRES_JDBC in line and spark.ICEBERG_RUNTIME in line
    assert spark.SQLITE_JDBC not in line


def test_the_runtime_is_built_for_the_pyspark_line_of_the_extra() -> None:
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert f'"pyspark=={spark.SPARK_LINE}.' in text
    assert f"iceberg-spark-runtime-{spark.SPARK_LINE}_" in spark.ICEBERG_RUNTIME


def test_named_queries_are_looked_up_by_name_and_sql_passes_through() -> None:
    assert queries.named_query("daily-stats") is queries.DAILY_STATS
    assert queries.named_query(" alerts-per-rule ") is queries.ALERTS_PER_RULE
    assert queries.named_query("select 1") == "select 1"


def test_missing_tables_give_empty_views_of_their_columns() -> None:
    from sensorlib.config import Settings

    statements = spark.views_sql(Settings(), {"readings": True})
    assert "FROM sensorlib.sensorlib.sensor_readings" in statements[0]
    assert "WHERE false" in statements[1] and "`alert_id`" in statements[1]
    assert all("AS event_day" in s for s in statements)
