"""The archive in Apache Spark: the same Iceberg tables, read through Iceberg's JDBC catalog.

pyiceberg's SQL catalog (what the archiver writes, :func:`sensorlib.history.query.open_catalog`)
and Iceberg's Java ``JdbcCatalog`` keep their tables in the same two database tables
(``iceberg_tables``, ``iceberg_namespace_properties``), keyed by the catalog's name. A Spark
catalog named like pyiceberg's (``sensorlib``) on the same database therefore sees the
archive's tables as they are, without copying or re-archiving anything — on PostgreSQL (the
catalog of an archive shared by several machines) or on the default sqlite file (through
xerial's sqlite-jdbc driver; for a local Spark only).

- :func:`session` — a local Spark session (``local[2]``) with the views ``readings``,
  ``alerts`` and ``dead_letters`` that ``sensorlib sql`` has (``event_day`` included), so
  the same SQL text answers in both engines (:data:`~sensorlib.history.query.DAILY_STATS`,
  :data:`~sensorlib.history.query.ALERTS_PER_RULE`);
- :func:`sql` — one query in such a session, as an Arrow table (``sensorlib spark-sql``);
- :func:`command_line` — the ``spark-sql`` command (packages and ``--conf``) for a cluster
  (``sensorlib status --spark``).

Spark reads the archive only: Kafka's tail (``sensorlib sql``'s default) is not added, so
compare with ``sensorlib sql --no-tail`` or once the archiver has caught up.

The jars (the Iceberg Spark runtime and both JDBC drivers) come from Maven Central once, by
the machinery that fetches Kafka's (:func:`sensorlib.kafka.jars.maven_jars`), into
``<cache>/spark-iceberg-<version>/lib``. pyspark is the optional extra ``sensorlib[spark]``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sensorlib.config import Settings
from sensorlib.errors import HistoryError
from sensorlib.history.query import EVENT_DAY, KINDS, NAMESPACE, TableKind, open_catalog, table_name
from sensorlib.progress import Progress, quiet

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

__all__ = [
    "ARTIFACTS",
    "CATALOG",
    "ICEBERG_VERSION",
    "SPARK_LINE",
    "JdbcCatalog",
    "catalog_conf",
    "check_pyspark",
    "command_line",
    "jars",
    "jdbc_catalog",
    "session",
    "sql",
    "views_sql",
]

#: The Spark release line the Iceberg runtime is built for (pyspark must be of this line).
SPARK_LINE = "4.1"
SCALA_VERSION = "2.13"
#: The newest Iceberg with a runtime for :data:`SPARK_LINE` (Iceberg 1.12 has none for 4.2+).
ICEBERG_VERSION = "1.12.0"
POSTGRES_JDBC_VERSION = "42.7.14"
SQLITE_JDBC_VERSION = "3.54.1.0"
ICEBERG_RUNTIME = (f"org.apache.iceberg:iceberg-spark-runtime-{SPARK_LINE}_{SCALA_VERSION}:"
                   f"{ICEBERG_VERSION}")
POSTGRES_JDBC = f"org.postgresql:postgresql:{POSTGRES_JDBC_VERSION}"
SQLITE_JDBC = f"org.xerial:sqlite-jdbc:{SQLITE_JDBC_VERSION}"
#: What a local session puts on its classpath (each jar alone: the runtime is shaded, the
#: drivers' own dependencies — slf4j, checker annotations — Spark has or needs not).
ARTIFACTS = (ICEBERG_RUNTIME, POSTGRES_JDBC, SQLITE_JDBC)
#: The Spark catalog's name: pyiceberg's catalog name, which keys the catalog's rows.
CATALOG = NAMESPACE


# -- the catalog, as Java sees it --------------------------------------------------------------


@dataclass(frozen=True)
class JdbcCatalog:
    """Where Iceberg's Java ``JdbcCatalog`` finds the archive's catalog and its files."""

    url: str  # jdbc:postgresql://host:port/db or jdbc:sqlite:/path/catalog.db
    warehouse: str  # the warehouse URI pyiceberg writes under (file:///… or s3://…)
    user: str | None = None
    password: str | None = field(default=None, repr=False)  # never printed

    @property
    def engine(self) -> str:
        """``postgresql`` or ``sqlite``."""
        return self.url.split(":", 2)[1]


def jdbc_url(url: Any) -> tuple[str, str | None, str | None]:
    """(JDBC URL, user, password) of a SQLAlchemy URL of the catalog (string or ``URL``).

    ``sqlite:////abs/catalog.db`` → ``jdbc:sqlite:/abs/catalog.db``;
    ``postgresql+psycopg://user:pw@host:port/db`` → ``jdbc:postgresql://host:port/db`` with
    the user and password apart (Spark takes them as catalog properties). Its ``sslmode``
    is kept. Raises :class:`HistoryError` for what Java cannot reach: another database, an
    in-memory sqlite, PostgreSQL over a Unix socket only.
    """
    from sqlalchemy.engine import make_url

    url = make_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise HistoryError("the catalog is an in-memory sqlite database: Spark cannot "
                               "open it (use the warehouse's catalog.db or PostgreSQL)")
        return f"jdbc:sqlite:{Path(url.database).resolve()}", None, None
    if backend == "postgresql":
        if not url.host:
            raise HistoryError(
                "the PostgreSQL catalog is reached over a Unix socket (no host in the catalog "
                "URI): Java's JDBC driver needs host:port — put them in SENSORLIB_CATALOG_URI")
        port = f":{url.port}" if url.port else ""
        query = {k: v for k, v in url.query.items() if k in ("sslmode",)}
        tail = ("?" + "&".join(f"{k}={v}" for k, v in query.items())) if query else ""
        return (f"jdbc:postgresql://{url.host}{port}/{url.database or ''}{tail}",
                url.username, url.password)
    raise HistoryError(f"Spark reads an Iceberg catalog on PostgreSQL or sqlite, not on "
                       f"{backend!r}")


def jdbc_catalog(settings: Settings) -> JdbcCatalog:
    """The archive's catalog as Java sees it, from the catalog pyiceberg opens.

    Raises:
        HistoryError: there is no archive yet, or its catalog is not one Java can reach.
    """
    catalog = open_catalog(settings)
    if catalog is None:
        raise HistoryError(f"there is no archive in {settings.warehouse} yet (start "
                           "`sensorlib archive`)")
    url, user, password = jdbc_url(catalog.engine.url)
    warehouse = str(catalog.properties.get("warehouse") or settings.warehouse.resolve().as_uri())
    return JdbcCatalog(url=url, warehouse=warehouse, user=user, password=password)


def catalog_conf(catalog: JdbcCatalog, *, password: str | None = None) -> dict[str, str]:
    """The Spark settings of the Iceberg catalog ``sensorlib`` on ``catalog``.

    ``password`` replaces the catalog's own (e.g. a shell variable for a printed command
    line); None: the catalog's password, if any.

    ``jdbc.schema-version=V1``: pyiceberg creates the catalog tables with the column
    ``iceberg_type`` and marks its rows ``TABLE``; Java reads such a catalog in either
    version, and in V1 it marks what it writes the same way.
    """
    prefix = f"spark.sql.catalog.{CATALOG}"
    conf = {
        "spark.sql.extensions":
            "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "jdbc",
        f"{prefix}.uri": catalog.url,
        f"{prefix}.warehouse": catalog.warehouse,
        f"{prefix}.jdbc.schema-version": "V1",
        # The archive's times are UTC: event_day is the UTC day, as in DuckDB.
        "spark.sql.session.timeZone": "UTC",
    }
    if catalog.user:
        conf[f"{prefix}.jdbc.user"] = catalog.user
    secret = password if password is not None else catalog.password
    if secret:
        conf[f"{prefix}.jdbc.password"] = secret
    if catalog.warehouse.startswith(("s3://", "s3a://")):  # not tested here (no S3)
        conf[f"{prefix}.io-impl"] = "org.apache.iceberg.aws.s3.S3FileIO"
    return conf


_SPARK_TYPES = {pa.string(): "STRING", pa.float64(): "DOUBLE", pa.int32(): "INT",
                pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN"}


def _spark_type(dtype: pa.DataType) -> str:
    return "TIMESTAMP" if pa.types.is_timestamp(dtype) else _SPARK_TYPES[dtype]


def _table(settings: Settings, kind: TableKind) -> str:
    return f"{CATALOG}.{NAMESPACE}.{table_name(kind.topic(settings))}"


def views_sql(settings: Settings, present: Mapping[str, bool] | None = None) -> list[str]:
    """The statements making ``sensorlib sql``'s views in Spark: one per table kind, with
    ``event_day`` (the UTC day of ``event_time``, a DATE). ``present``: view -> whether its
    table exists (default: all do); a missing table gives an empty view of its columns."""
    statements = []
    for kind in KINDS:
        if present is None or present.get(kind.name, False):
            source = _table(settings, kind)
        else:
            columns = ", ".join(f"CAST(NULL AS {_spark_type(t)}) AS `{n}`"
                                for n, t, _ in kind.columns)
            source = f"(SELECT {columns} WHERE false)"
        statements.append(f"CREATE OR REPLACE TEMPORARY VIEW {kind.name} AS SELECT *, "
                          f"CAST(event_time AS DATE) AS {EVENT_DAY} FROM {source}")
    return statements


# -- jars and pyspark --------------------------------------------------------------------------


def jars(settings: Settings, progress: Progress = quiet) -> list[Path]:
    """The jars of :data:`ARTIFACTS`, fetched once from Maven Central (Java and Maven needed).

    Raises:
        HistoryError: Java 17+ or Maven is missing, or the fetch failed (Maven's message).
    """
    from sensorlib.kafka.jars import maven_jars

    lib = maven_jars(settings, f"spark-iceberg-{ICEBERG_VERSION}", ARTIFACTS,
                     what=f"Apache Iceberg {ICEBERG_VERSION} for Spark {SPARK_LINE}",
                     must_have="iceberg-spark-runtime-*.jar", transitive=False,
                     progress=progress, error=HistoryError)
    return sorted(lib.glob("*.jar"))


def check_pyspark() -> str:
    """pyspark's version; raises :class:`HistoryError` saying what to install when it is
    missing or of another line than the Iceberg runtime's (:data:`SPARK_LINE`)."""
    try:
        import pyspark
    except ImportError:
        raise HistoryError(
            f"pyspark is not installed: pip install 'sensorlib[spark]' (pyspark {SPARK_LINE}."
            "x, about 450 MB)") from None
    version = pyspark.__version__
    if not version.startswith(SPARK_LINE + "."):
        raise HistoryError(
            f"pyspark {version} is installed, but the Iceberg runtime sensorlib uses "
            f"({ICEBERG_RUNTIME}) is built for Spark {SPARK_LINE}: pip install "
            f"'sensorlib[spark]' (pyspark {SPARK_LINE}.x)")
    return version


_LOG4J2 = """status = error
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
rootLogger.level = ERROR
rootLogger.appenderRef.stderr.ref = STDERR
"""


def session(settings: Settings | None = None, *, master: str = "local[2]",
            progress: Progress = quiet, conf: Mapping[str, str] | None = None
            ) -> SparkSession:
    """A Spark session on the archive: the catalog ``sensorlib`` and the views ``readings``,
    ``alerts`` and ``dead_letters`` (as ``sensorlib sql``'s, archive only). Stop it with
    ``.stop()``.

    ``master``: ``local[2]`` by default (the driver and its UI bound to the loopback
    interface, no UI); ``conf``: more Spark settings. Startup costs 10–15 s (a JVM).

    Raises:
        HistoryError: no archive, pyspark, Java or the jars missing (what to install).
    """
    from sensorlib.kafka.jars import check_java

    settings = Settings.from_env() if settings is None else settings
    check_pyspark()
    check_java(HistoryError, f"Apache Spark {SPARK_LINE}")
    catalog = jdbc_catalog(settings)
    paths = jars(settings, progress)
    log_config = settings.cache_dir / "spark-log4j2.properties"
    if not log_config.exists() or log_config.read_text() != _LOG4J2:
        log_config.parent.mkdir(parents=True, exist_ok=True)
        log_config.write_text(_LOG4J2)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    java_options = f"-Dlog4j2.configurationFile={log_config.as_uri()}"
    builder = (SparkSession.builder.master(master).appName("sensorlib")
               .config("spark.jars", ",".join(str(p) for p in paths))
               .config("spark.driver.extraJavaOptions", java_options)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "8"))
    if master.startswith("local"):
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1"))
    settings_conf = {**catalog_conf(catalog), **dict(conf or {})}
    # The password is set once the JVM runs: pyspark passes the builder's settings to
    # spark-submit as command-line arguments, which every user of the machine can list.
    password = settings_conf.pop(f"spark.sql.catalog.{CATALOG}.jdbc.password", None)
    for key, value in settings_conf.items():
        builder = builder.config(key, value)
    progress(f"Starting Spark ({master}) on the catalog {catalog.url} …")
    spark = builder.getOrCreate()
    try:
        if password:  # before the catalog's first use (Spark loads catalogs lazily)
            spark.conf.set(f"spark.sql.catalog.{CATALOG}.jdbc.password", password)
        present = {row.tableName for row in spark.sql(f"SHOW TABLES IN {CATALOG}.{NAMESPACE}")
                   .collect()} if _has_namespace(spark) else set()
        for statement in views_sql(settings, {kind.name: table_name(kind.topic(settings))
                                              in present for kind in KINDS}):
            spark.sql(statement)
    except Exception:
        spark.stop()
        raise
    return spark


def _has_namespace(spark: SparkSession) -> bool:
    rows = spark.sql(f"SHOW NAMESPACES IN {CATALOG}").collect()
    return any(row[0] == NAMESPACE for row in rows)


def sql(query: str, settings: Settings | None = None, *, spark: SparkSession | None = None,
        master: str = "local[2]", progress: Progress = quiet) -> pa.Table:
    """The result of one Spark SQL query over the archive's views, as an Arrow table.

    ``spark``: a session from :func:`session` (kept open); otherwise one is started and
    stopped around the query.

    Raises:
        HistoryError: empty or invalid SQL (Spark's message), or what :func:`session` raises.
    """
    if not query or not query.strip():
        raise HistoryError("the SQL query is empty")
    own = spark is None
    if spark is None:
        spark = session(settings, master=master, progress=progress)
    try:
        from pyspark.errors import PySparkException

        try:
            return spark.sql(query.strip().rstrip(";")).toArrow()
        except PySparkException as exc:
            text = str(exc).strip().splitlines()
            raise HistoryError(f"Spark: {text[0] if text else type(exc).__name__}") from None
    finally:
        if own:
            spark.stop()


# -- for a cluster -----------------------------------------------------------------------------


PASSWORD_VARIABLE = "SENSORLIB_CATALOG_PASSWORD"


def command_line(settings: Settings, tool: str = "spark-sql") -> list[str]:
    """The ``spark-sql`` (or ``pyspark``, ``spark-submit``) command opening the archive:
    ``--packages`` (Spark fetches them from Maven Central) and one ``--conf`` per catalog
    setting. A password is never shown: it is ``$SENSORLIB_CATALOG_PASSWORD`` in the line.

    Raises:
        HistoryError: there is no archive yet, or its catalog is not one Java can reach.
    """
    catalog = jdbc_catalog(settings)
    packages = [ICEBERG_RUNTIME]
    packages.append(POSTGRES_JDBC if catalog.engine == "postgresql" else SQLITE_JDBC)
    if catalog.warehouse.startswith(("s3://", "s3a://")):
        packages.append(f"org.apache.iceberg:iceberg-aws-bundle:{ICEBERG_VERSION}")
    conf = catalog_conf(catalog, password=f"${PASSWORD_VARIABLE}" if catalog.password else None)
    conf["spark.sql.defaultCatalog"] = CATALOG
    words = [tool, "--packages", ",".join(packages)]
    for key, value in conf.items():
        words += ["--conf", f"{key}={value}"]
    return words


def shell_line(words: list[str]) -> str:
    """``words`` as one shell command over several lines (``$VARIABLE`` left to the shell)."""
    def quote(word: str) -> str:
        if f"${PASSWORD_VARIABLE}" in word:
            return '"' + word + '"'
        return shlex.quote(word)

    parts = [quote(words[0])]
    i = 1
    while i < len(words):
        if words[i].startswith("--") and i + 1 < len(words):
            parts.append(f"{words[i]} {quote(words[i + 1])}")
            i += 2
        else:
            parts.append(quote(words[i]))
            i += 1
    return " \\\n  ".join(parts)
