"""History: the Apache Iceberg archive of both topics, read by event time and queried with SQL.

The archive is Iceberg tables in a SQL catalog with their Parquet data under
``<warehouse>/``. The catalog is a sqlite file (``<warehouse>/catalog.db``, no server) unless
``SENSORLIB_CATALOG_URI`` puts it on PostgreSQL (:func:`catalog_uri`; ``sensorlib db start``
runs a local one, :mod:`sensorlib.history.postgres`): every function here works on both.
:mod:`sensorlib.history.archiver` appends to them; this module creates, describes and reads them:

- :func:`scan` — rows of one table with ``start <= event_time < end`` (partition pruning
  by event day), plus the Kafka offsets the read snapshot covers;
- :func:`sql` — a DuckDB query over the views ``readings`` and ``alerts`` (the tables'
  current data files; no DuckDB extension is downloaded);
- :func:`table_status` — rows and last commit of each table (``sensorlib status``).

>>> sql("select sensor_id, count(*) as n from readings group by 1 order by 1")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute

from sensorlib.config import Settings
from sensorlib.errors import HistoryError
from sensorlib.history.catalogs import (
    catalog_path,
    catalog_sqlite,
    catalog_uri,
    describe_catalog,
)
from sensorlib.history.queries import ALERTS_PER_RULE, DAILY_STATS, NAMED_QUERIES, named_query

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table

__all__ = [
    "ALERTS",
    "ALERTS_PER_RULE",
    "CLUSTER_PROPERTY",
    "DAILY_STATS",
    "DEAD_LETTERS",
    "FAULTS",
    "NAMED_QUERIES",
    "OFFSETS_PROPERTY",
    "READINGS",
    "HistoryError",
    "Scanned",
    "TableKind",
    "catalog_exists",
    "catalog_path",
    "catalog_uri",
    "check_cluster",
    "check_tail_cluster",
    "connect",
    "describe_catalog",
    "event_range",
    "load_table",
    "named_query",
    "open_catalog",
    "open_table",
    "scan",
    "snapshot_offsets",
    "sql",
    "table_name",
    "table_status",
]

log = logging.getLogger("sensorlib.history.query")

#: The Iceberg namespace of the archive's tables.
NAMESPACE = "sensorlib"
#: Snapshot summary property holding the Kafka offsets a commit covers (JSON:
#: ``{"topic": ..., "offsets": {"<partition>": <next offset>}}``).
OFFSETS_PROPERTY = "sensorlib.kafka-offsets"
#: Table property naming the topic a table archives.
TOPIC_PROPERTY = "sensorlib.topic"
#: Table property naming the Kafka cluster (its id) whose topic the table archives: set by
#: the first archiver, checked by every archiver and by the reads that add Kafka's tail.
CLUSTER_PROPERTY = "sensorlib.kafka-cluster-id"

_TABLE_PROPERTIES = {
    # Old metadata.json files are deleted as new ones are written.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    # One manifest per 30-second append would make every scan plan slower and slower.
    "commit.manifest-merge.enabled": "true",
    "write.parquet.compression-codec": "zstd",
    # No commit is retried by pyiceberg on its own (it would rebase an append onto another
    # writer's snapshot without the offset check): the archiver and compaction retry
    # themselves, checking the table's Kafka offsets again (writer.commit_batch).
    "commit.retry.num-retries": "0",
}


@dataclass(frozen=True)
class TableKind:
    """One archived topic: its table's columns (and their replay-frame names)."""

    name: str  # "readings" / "alerts": the SQL view
    #: table column -> (arrow type, replay frame column or None)
    columns: tuple[tuple[str, pa.DataType, str | None], ...]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(name, kind) for name, kind, _ in self.columns])

    @property
    def to_frame(self) -> dict[str, str]:
        """Table column -> replay frame column."""
        return {name: frame for name, _, frame in self.columns if frame is not None}

    def topic(self, settings: Settings) -> str:
        """The topic this table archives."""
        return {"readings": settings.topic_readings, "alerts": settings.topic_alerts,
                "dead_letters": settings.topic_dlq, "faults": settings.topic_faults}[self.name]


_TS = pa.timestamp("us", tz="UTC")
_KAFKA = (("kafka_partition", pa.int32(), "partition"), ("kafka_offset", pa.int64(), "offset"),
          ("record_time", _TS, None))

#: ``sensor-readings``: one row per valid reading.
READINGS = TableKind("readings", (
    ("sensor_id", pa.string(), "sensorId"),
    ("temperature", pa.float64(), "temperature"),
    ("humidity", pa.float64(), "humidity"),
    ("location", pa.string(), "location"),
    ("event_time", _TS, "timestamp"),
    *_KAFKA,
    # The record's eventId header (retries of one POST share it; the archiver keeps the
    # first copy, as the processor does). Added to older tables on open.
    ("event_id", pa.string(), None),
))
#: ``sensor-alerts``: one row per committed, valid alert (``event_time`` is the reading's).
ALERTS = TableKind("alerts", (
    ("alert_id", pa.string(), "alertId"),
    ("sensor_id", pa.string(), "sensorId"),
    ("location", pa.string(), "location"),
    ("temperature", pa.float64(), "temperature"),
    ("humidity", pa.float64(), "humidity"),
    ("event_time", _TS, "timestamp"),
    ("detected_at", _TS, "detectedAt"),
    ("rule", pa.string(), "rule"),
    ("severity", pa.string(), "severity"),
    ("reason", pa.string(), "reason"),
    *_KAFKA,
))
#: ``sensor-readings-dlq``: one row per dead letter (``event_time`` is when it was rejected),
#: so invalid-record counts and reasons survive Kafka's retention like the readings do.
DEAD_LETTERS = TableKind("dead_letters", (
    ("event_time", _TS, "rejectedAt"),
    ("reason", pa.string(), "reason"),
    ("fields", pa.string(), "fields"),
    ("errors", pa.string(), "errors"),
    ("source_topic", pa.string(), "sourceTopic"),
    ("source_partition", pa.int64(), "sourcePartition"),
    ("source_offset", pa.int64(), "sourceOffset"),
    ("source_record_time", _TS, "recordTime"),
    ("key", pa.string(), "key"),
    ("value", pa.string(), "value"),
    ("binary", pa.bool_(), "binary"),
    *_KAFKA,
))
#: ``sensor-faults``: one row per fault the simulator injected (:mod:`sensorlib.history.faults`;
#: ``event_time`` is the fault's start, ``end_time`` its end, ``detail`` its size).
FAULTS = TableKind("faults", (
    ("kind", pa.string(), "kind"),
    ("sensor_id", pa.string(), "sensorId"),
    ("event_time", _TS, "start"),
    ("end_time", _TS, "end"),
    ("detail", pa.float64(), "detail"),
    *_KAFKA,
))
KINDS = (READINGS, ALERTS, DEAD_LETTERS, FAULTS)
#: Each table kind by name.
BY_NAME = {kind.name: kind for kind in KINDS}


# -- catalog and tables ------------------------------------------------------------------------


def catalog_exists(settings: Settings) -> bool:
    """Whether the catalog may hold tables: its sqlite file exists, or (on a server) the
    setting is there: the server is asked when a table is read."""
    path = catalog_sqlite(settings)
    return path.exists() if path is not None else True


#: Catalogs on a database server, per (URL, warehouse, process): one SQLAlchemy engine (a
#: pool of connections) each, not a new connection and table check per lookup.
_SERVER_CATALOGS: dict[tuple[str, str, int], SqlCatalog] = {}


def _forget_catalogs_in_child() -> None:
    """After a fork (the archiver's writer process): the child opens its own connections,
    and never closes the parent's (that would end the parent's sessions)."""
    for catalog in _SERVER_CATALOGS.values():
        catalog.engine.dispose(close=False)
    _SERVER_CATALOGS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_catalogs_in_child)


def close_catalogs() -> None:
    """Close the connections of every catalog on a server this process opened (tests drop
    their databases; a long-running process never needs to)."""
    while _SERVER_CATALOGS:
        _, catalog = _SERVER_CATALOGS.popitem()
        catalog.engine.dispose()


def _catalog_error(settings: Settings, exc: Exception) -> HistoryError:
    """A catalog failure in words, without the URL's password."""
    from sensorlib.config import mask_uri

    where = describe_catalog(settings)
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = mask_uri(detail[0]) if detail else type(exc).__name__
    uri = settings.catalog_uri or ""
    password = uri.partition("://")[2].rpartition("@")[0].partition(":")[2]
    if password and len(password) > 2:
        text = text.replace(password, "***")
    hint = ("; the local one starts with `sensorlib db start`"
            if "127.0.0.1" in where or "localhost" in where else "")
    return HistoryError(f"the archive's catalog ({where}, SENSORLIB_CATALOG_URI) does not "
                        f"answer: {text}{hint}")


def open_catalog(settings: Settings, *, create: bool = False) -> SqlCatalog | None:
    """The archive's catalog (the one place that reads ``SENSORLIB_CATALOG_URI``), or None
    when it is a sqlite file that does not exist yet (and ``create`` is False).

    Raises:
        HistoryError: a catalog on a server that does not answer (password masked).
    """
    path = catalog_sqlite(settings)
    if path is not None and not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
    from pyiceberg.catalog.sql import SqlCatalog

    uri = catalog_uri(settings)
    warehouse = settings.warehouse.resolve().as_uri()
    if path is not None:
        return SqlCatalog(NAMESPACE, uri=uri, warehouse=warehouse)
    key = (uri, warehouse, os.getpid())
    catalog = _SERVER_CATALOGS.get(key)
    if catalog is not None:
        return catalog
    if uri.startswith("postgresql+psycopg"):
        from sensorlib.history.postgres import DRIVER_HINT

        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise HistoryError(f"the archive's catalog ({describe_catalog(settings)}, "
                               f"SENSORLIB_CATALOG_URI) is on PostgreSQL: {DRIVER_HINT}") from None
    if "connect_timeout=" not in uri:  # an unreachable host fails in seconds, not minutes
        uri += ("&" if "?" in uri else "?") + "connect_timeout=10"
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    for attempt in range(3):
        try:
            catalog = SqlCatalog(NAMESPACE, uri=uri, warehouse=warehouse, pool_pre_ping="true")
            break
        except SQLAlchemyError as exc:
            # Two processes creating the catalog's tables at once: one wins, the other
            # finds them on its next try. A server that does not answer is reported.
            if attempt == 2 or isinstance(exc, OperationalError):
                raise _catalog_error(settings, exc) from None
    assert catalog is not None
    _SERVER_CATALOGS[key] = catalog
    return catalog


def table_name(topic: str) -> str:
    """The table of a topic: ``sensor-readings`` -> ``sensor_readings``."""
    return re.sub(r"[^0-9A-Za-z_]", "_", topic)


def _iceberg_schema(kind: TableKind) -> Any:
    from pyiceberg.io.pyarrow import pyarrow_to_schema

    fields = [pa.field(name, dtype, nullable=True,
                       metadata={b"PARQUET:field_id": str(i).encode()})
              for i, (name, dtype, _) in enumerate(kind.columns, start=1)]
    return pyarrow_to_schema(pa.schema(fields))


def open_table(settings: Settings, kind: TableKind) -> Table:
    """The table of ``kind``'s topic, created (partitioned by event day) if missing."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform

    catalog = open_catalog(settings, create=True)
    assert catalog is not None
    catalog.create_namespace_if_not_exists(NAMESPACE)
    schema = _iceberg_schema(kind)
    event_time = schema.find_field("event_time").field_id
    spec = PartitionSpec(PartitionField(source_id=event_time, field_id=1000,
                                        transform=DayTransform(), name="event_day"))
    topic = kind.topic(settings)
    table = catalog.create_table_if_not_exists(
        (NAMESPACE, table_name(topic)), schema=schema, partition_spec=spec,
        properties={**_TABLE_PROPERTIES, TOPIC_PROPERTY: topic},
    )
    missing = [name for name, _, _ in kind.columns if name not in table.schema().column_names]
    if missing:  # a table of an older sensorlib: its new columns are added (null in old rows)
        with table.update_schema() as update:
            for name in missing:
                update.add_column(name, schema.find_field(name).field_type)
        table = table.refresh()
    stale = {k: v for k, v in _TABLE_PROPERTIES.items() if table.properties.get(k) != v}
    if stale:  # a table of an older sensorlib: today's properties
        from pyiceberg.exceptions import CommitFailedException

        for _ in range(10):
            try:
                with table.transaction() as tx:
                    tx.set_properties(stale)
                break
            except CommitFailedException:
                table = table.refresh()
        table = table.refresh()
    return table


def _listed(path: Path, name: str) -> bool | None:
    """Whether the sqlite catalog lists table ``name`` (None: cannot tell, ask pyiceberg).

    Answers without importing pyiceberg (about half a second on first use), so reading a
    topic that was never archived costs nothing extra.
    """
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro",
                                                uri=True)) as db:
            row = db.execute("SELECT 1 FROM iceberg_tables WHERE table_namespace = ? "
                             "AND table_name = ?", (NAMESPACE, name)).fetchone()
    except sqlite3.Error:
        return None
    return row is not None


def load_table(settings: Settings, kind: TableKind) -> Table | None:
    """The table of ``kind``'s topic if the archive has it (never creates anything)."""
    path = catalog_sqlite(settings)
    if path is not None and (not path.exists()
                             or _listed(path, table_name(kind.topic(settings))) is False):
        return None
    catalog = open_catalog(settings)
    if catalog is None:
        return None
    from pyiceberg.exceptions import NoSuchTableError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return catalog.load_table((NAMESPACE, table_name(kind.topic(settings))))
    except NoSuchTableError:
        return None
    except SQLAlchemyError as exc:
        raise _catalog_error(settings, exc) from None


def snapshot_offsets(table: Table, snapshot_id: int | None = None) -> dict[int, int]:
    """Partition -> next Kafka offset covered by the table at a snapshot (default: current).

    The newest committed offset of each partition across the snapshot and its ancestors
    (several archivers each commit their own partitions, so the last snapshot may be
    another writer's; a snapshot written by another tool, or an old compaction, carries
    none). Offsets only rise: each commit checks the table's offsets first
    (:func:`sensorlib.history.writer.commit_batch`).
    """
    snapshot = (table.current_snapshot() if snapshot_id is None
                else table.snapshot_by_id(snapshot_id))
    by_id = {s.snapshot_id: s for s in table.metadata.snapshots}
    out: dict[int, int] = {}
    seen: set[int] = set()
    while snapshot is not None and snapshot.snapshot_id not in seen:
        seen.add(snapshot.snapshot_id)
        raw = snapshot.summary.additional_properties.get(OFFSETS_PROPERTY) \
            if snapshot.summary is not None else None
        if raw:
            for p, o in json.loads(raw)["offsets"].items():
                if int(o) > out.get(int(p), -1):
                    out[int(p)] = int(o)
        snapshot = by_id.get(snapshot.parent_snapshot_id)  # type: ignore[arg-type]
    return out


def check_cluster(table: Table, topic: str, cluster: str | None, bootstrap: str) -> None:
    """Refuse to merge ``topic`` of Kafka cluster ``cluster`` (at ``bootstrap``) into a table
    that archives another cluster's topic, or another topic of the same table name.

    Raises:
        ClusterMismatch: naming both clusters (or both topics) and the warehouse.
    """
    from sensorlib.errors import ClusterMismatch

    props = table.properties
    name = ".".join(table.name())
    where = _local_path(table.location())
    recorded_topic = props.get(TOPIC_PROPERTY)
    if recorded_topic and recorded_topic != topic:
        raise ClusterMismatch(
            f"table {name} ({where}) archives topic {recorded_topic!r}, not {topic!r} (both "
            "names map to the same table): refusing to merge them; use another warehouse "
            "(SENSORLIB_WAREHOUSE)")
    recorded = props.get(CLUSTER_PROPERTY)
    if recorded and cluster and recorded != cluster:
        raise ClusterMismatch(
            f"table {name} ({where}) archives topic {topic!r} of Kafka cluster {recorded}, "
            f"but {bootstrap} is Kafka cluster {cluster}: refusing to merge another cluster's "
            f"{topic!r} into it (its offsets name other records); use another warehouse "
            "(SENSORLIB_WAREHOUSE) for this cluster")


def check_tail_cluster(settings: Settings, kind: TableKind) -> None:
    """Before Kafka's tail is added to ``kind``'s archive: refuse when the archive holds
    another Kafka cluster's topic (:func:`check_cluster`; asks Kafka for its cluster id only
    when the table records one).

    Raises:
        ClusterMismatch: the archive and ``settings.bootstrap_servers`` are two clusters.
    """
    table = load_table(settings, kind)
    if table is None:
        return
    live = None
    if table.properties.get(CLUSTER_PROPERTY):
        from sensorlib.kafka.admin import cluster_id

        live = cluster_id(settings)
    check_cluster(table, kind.topic(settings), live, settings.bootstrap_servers)


def offsets_property(topic: str, offsets: dict[int, int]) -> dict[str, str]:
    """The snapshot summary properties recording ``offsets`` of ``topic``."""
    body = {"topic": topic, "offsets": {str(p): int(o) for p, o in sorted(offsets.items())}}
    return {OFFSETS_PROPERTY: json.dumps(body, separators=(",", ":"))}


# -- reading by event time ---------------------------------------------------------------------


@dataclass
class Scanned:
    """What :func:`scan` read: rows in replay-frame columns and the offsets they cover."""

    frame: pd.DataFrame
    offsets: dict[int, int]
    snapshot_id: int | None


def _row_filter(start: pd.Timestamp | None, end: pd.Timestamp | None,
                sensors: Sequence[str] | None) -> Any:
    from pyiceberg.expressions import (
        AlwaysTrue,
        And,
        GreaterThanOrEqual,
        In,
        LessThan,
    )

    expr: Any = AlwaysTrue()
    if start is not None:
        expr = And(expr, GreaterThanOrEqual("event_time", start.isoformat()))
    if end is not None:
        expr = And(expr, LessThan("event_time", end.isoformat()))
    if sensors is not None:
        expr = And(expr, In("sensor_id", set(sensors)) if sensors else
                   LessThan("event_time", "1970-01-01T00:00:00+00:00"))
    return expr


def to_frame(table: pa.Table, kind: TableKind, dtypes: dict[str, str]) -> pd.DataFrame:
    """An archive Arrow table as a replay frame (camelCase columns, replay dtypes).

    One conversion, without copies where Arrow allows (``self_destruct``: each column is
    released as it is converted, so ``table`` must not be used afterwards). A ``category``
    column comes from a dictionary column as it is (or is encoded here), with its
    categories sorted; a missing location is ``""``."""
    from sensorlib.replay.frames import as_categories

    names = kind.to_frame
    table = table.select(list(names)).rename_columns([names[c] for c in names])
    categories = [c for c, t in dtypes.items() if t == "category" and c in table.column_names]
    for name in categories:
        i = table.column_names.index(name)
        column = table.column(i)
        if name == "location":  # before encoding: a category "" only when there are nulls
            column = pa.compute.fill_null(column.cast(pa.string()) if pa.types.is_dictionary(
                column.type) else column, "") if column.null_count else column
        if not pa.types.is_dictionary(column.type):
            column = pa.compute.dictionary_encode(column)
        table = table.set_column(i, name, column)
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    other = {c: t for c, t in dtypes.items() if t != "category" and str(frame[c].dtype) != t}
    if other:
        frame = frame.astype(other)
    if "location" in frame and "location" not in categories:
        frame["location"] = frame["location"].fillna("")
    return as_categories(frame, categories)[list(dtypes)]


def _arrow_rows(table: Table, snapshot_id: int, kind: TableKind, start: pd.Timestamp | None,
                end: pd.Timestamp | None, sensors: Sequence[str] | None,
                dictionary: set[str]) -> pa.Table:
    """The frame's columns of the rows in the period, read straight from the snapshot's
    Parquet files (``dictionary``: string columns read as Arrow dictionaries, as Parquet
    stores them, never as millions of strings). pyiceberg plans the files (partition and
    statistics pruning); pyarrow reads them on all cores. A table with row-level deletes
    (not written by sensorlib) is read by pyiceberg, which merges them."""
    import pyarrow.dataset as ds

    wanted = list(kind.to_frame)
    scan = table.scan(row_filter=_row_filter(start, end, sensors), selected_fields=tuple(wanted),
                      snapshot_id=snapshot_id)
    tasks = list(scan.plan_files())
    names = set(table.schema().column_names)
    if any(task.delete_files for task in tasks) or not set(wanted) <= names:
        return scan.to_arrow()
    schema = pa.schema([(name, pa.dictionary(pa.int32(), dtype) if name in dictionary else dtype)
                        for name, dtype, _ in kind.columns if name in wanted])
    if not tasks:
        return schema.empty_table()
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(
        dictionary_columns=dictionary))
    dataset = ds.dataset([_local_path(task.file.file_path) for task in tasks], format=fmt,
                         schema=schema)
    where = None
    if start is not None:
        where = ds.field("event_time") >= pa.scalar(start.to_pydatetime(), _TS)
    if end is not None:
        bound = ds.field("event_time") < pa.scalar(end.to_pydatetime(), _TS)
        where = bound if where is None else where & bound
    if sensors is not None:
        known = ds.field("sensor_id").isin(pa.array(sorted(set(sensors)), pa.string()))
        where = known if where is None else where & known
    return dataset.to_table(columns=wanted, filter=where)


def scan(settings: Settings, kind: TableKind, start: pd.Timestamp | None,
         end: pd.Timestamp | None, sensors: Sequence[str] | None, dtypes: dict[str, str]
         ) -> Scanned | None:
    """The archived rows of ``kind`` with ``start <= event_time < end`` (None: no table yet).

    Reads one snapshot (the current one) and reports the Kafka offsets it covers, so a
    caller can read the rest from Kafka without a gap or an overlap. Only the frame's
    columns are read; ``dtypes``' ``category`` columns come as categoricals.
    """
    import numpy as np

    table = load_table(settings, kind)
    if table is None:
        return None
    snapshot = table.current_snapshot()
    if snapshot is None:
        return Scanned(to_frame(kind.arrow_schema.empty_table(), kind, dtypes), {}, None)
    offsets = snapshot_offsets(table, snapshot.snapshot_id)
    frame_names = kind.to_frame
    dictionary = {name for name, frame in frame_names.items() if dtypes.get(frame) == "category"}
    arrow = _arrow_rows(table, snapshot.snapshot_id, kind, start, end, sensors, dictionary)
    # In replay order (event time, then where each record was stored): numpy's lexsort of
    # the three keys (several times quicker than Arrow's sort), applied after the one
    # conversion to pandas (a take per column, no Arrow copy of the whole table).
    keys = [arrow[c].to_numpy() for c in ("kafka_offset", "kafka_partition")
            if c in arrow.column_names]
    keys.append(arrow["event_time"].cast(pa.int64()).to_numpy())
    order = np.lexsort(keys)
    del keys
    frame = to_frame(arrow, kind, dtypes)
    del arrow
    if len(order) and not (order[1:] > order[:-1]).all():
        # Column by column, each old column released as its sorted copy is made: the peak
        # holds one column twice, not the whole frame.
        columns = {name: frame.pop(name).take(order).reset_index(drop=True)
                   for name in list(frame.columns)}
        frame = pd.DataFrame(columns, copy=False)
    return Scanned(frame.reset_index(drop=True), offsets, snapshot.snapshot_id)


def event_range(settings: Settings, kind: TableKind
                ) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last event time the table holds (from its files' statistics, no
    data read), or None when it holds nothing."""
    table = load_table(settings, kind)
    if table is None or table.current_snapshot() is None:
        return None
    field = table.schema().find_field("event_time").field_id
    low = high = None
    for task in table.scan().plan_files():
        lower, upper = task.file.lower_bounds or {}, task.file.upper_bounds or {}
        if field in lower and field in upper:
            first = int.from_bytes(lower[field], "little", signed=True)
            last = int.from_bytes(upper[field], "little", signed=True)
            low = first if low is None else min(low, first)
            high = last if high is None else max(high, last)
    if low is None or high is None:
        return None
    return pd.Timestamp(low, unit="us", tz="UTC"), pd.Timestamp(high, unit="us", tz="UTC")


def known_sensors(settings: Settings) -> set[str]:
    """Every sensor id in the readings archive (used to name them in a warning)."""
    table = load_table(settings, READINGS)
    if table is None or table.current_snapshot() is None:
        return set()
    column = table.scan(selected_fields=("sensor_id",)).to_arrow()["sensor_id"]
    return {v for v in pa.compute.unique(column).to_pylist() if v is not None}


# -- SQL -------------------------------------------------------------------------------------


def _local_path(location: str) -> str:
    return location.removeprefix("file://")


#: The partition column the views add: the event day (UTC) of each row, a DATE.
EVENT_DAY = "event_day"



def connect(settings: Settings | None = None, *, kinds: Iterable[TableKind] = KINDS,
            tail: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views ``readings`` and ``alerts`` (see
    :func:`_connect`; with ``tail``, the table ``sensorlib_tail(view, rows, note)`` says
    what each view got from Kafka)."""
    return _connect(settings, kinds, tail)[0]


def _connect(settings: Settings | None, kinds: Iterable[TableKind], tail: bool
             ) -> tuple[duckdb.DuckDBPyConnection, dict[str, int], list[str]]:
    """An in-memory DuckDB connection with the views ``readings`` and ``alerts``.

    Each view reads the table's current Parquet data files (or is empty, with the
    table's columns, when nothing is archived yet), plus ``event_day``: the UTC day of
    ``event_time`` as a DATE, taken from the files' partition folders — ``group by
    event_day`` costs nothing per row, where ``date_trunc('day', event_time)`` (a time
    zone calculation) costs most of a daily query, and ``where event_day …`` skips whole
    files. Time zone UTC; DuckDB may not install or load extensions from the network.

    With ``tail``, each view also holds the valid records Kafka has beyond the offsets the
    archive covers (the archiver may be minutes behind), as :func:`read_readings
    <sensorlib.replay.reader.read_readings>` does: the seam is exact (the tail starts at the
    snapshot's offsets), and ``record_time``/``event_id`` are null in tail rows. Returns
    the connection, the rows each view got from Kafka and notes on what could not be read.
    """
    import duckdb

    settings = Settings.from_env() if settings is None else settings
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")
    tails: dict[str, int] = {}
    notes: list[str] = []
    for kind in kinds:
        table = load_table(settings, kind)
        files: list[str] = []
        needs_arrow = False
        if table is not None and table.current_snapshot() is not None:
            for task in table.scan().plan_files():
                files.append(_local_path(task.file.file_path))
                needs_arrow |= bool(task.delete_files)
        # DuckDB turns every key=value folder of a path into a column: only when the
        # partition folder is the one such folder is event_day taken from the paths.
        by_folder = bool(files) and all(f"/{EVENT_DAY}=" in f and f.count("=") == 1
                                        for f in files)
        day = f"CAST(event_time AS DATE) AS {EVENT_DAY}"
        if needs_arrow:  # row-level deletes (not written by sensorlib): let pyiceberg merge
            assert table is not None
            con.register(f"_{kind.name}_arrow", table.scan().to_arrow())
            con.execute(f"CREATE VIEW {kind.name} AS SELECT *, {day} FROM _{kind.name}_arrow")
        elif files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            if by_folder:  # pyiceberg's layout: <table>/data/event_day=YYYY-MM-DD/…
                con.execute(f"CREATE VIEW {kind.name} AS SELECT * FROM read_parquet([{listed}], "
                            f"hive_partitioning = true, hive_types = {{'{EVENT_DAY}': DATE}}, "
                            "union_by_name = true)")
            else:  # written by another tool with another layout
                con.execute(f"CREATE VIEW {kind.name} AS SELECT *, {day} "
                            f"FROM read_parquet([{listed}], union_by_name = true)")
        else:
            con.register(f"_{kind.name}_empty", kind.arrow_schema.empty_table())
            con.execute(f"CREATE VIEW {kind.name} AS SELECT *, {day} FROM _{kind.name}_empty")
        if tail and table is not None:
            rows, note = _add_tail(con, settings, kind, table, day)
            tails[kind.name] = rows
            if note:
                notes.append(note)
    _add_incidents_view(con)
    if tail:
        con.register("sensorlib_tail", pd.DataFrame(
            {"view": list(tails), "rows": list(tails.values()),
             "note": ["; ".join(notes) or None] * len(tails)}))
    return con, tails, notes


def _add_incidents_view(con: Any) -> None:
    """The view ``incidents`` over ``alerts`` (:func:`sensorlib.notebook.incidents.incidents` in SQL)."""
    from sensorlib.notebook.incidents import add_incidents_view

    views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    if "alerts" in views:  # connect(kinds=...) without ALERTS: no incidents either
        add_incidents_view(con)


def _add_tail(con: Any, settings: Settings, kind: TableKind, table: Any, day: str
              ) -> tuple[int, str | None]:
    """Put Kafka's records beyond the archive into ``kind``'s view; (rows, a note or None)."""
    from sensorlib.kafka.admin import kafka_reachable
    from sensorlib.kafka.fetch import fetch
    from sensorlib.replay.decode import ALERT_RECORDS, READING_RECORDS

    topic = kind.topic(settings)
    if kind is FAULTS:  # a few labels an hour, published after their spells: the archive
        return 0, None
    if not kafka_reachable(settings, timeout=2.0):
        return 0, (f"Kafka at {settings.bootstrap_servers} is not reachable: {kind.name} holds "
                   "the archive only")
    records = READING_RECORDS if kind is READINGS else ALERT_RECORDS
    check_tail_cluster(settings, kind)
    try:
        frames = fetch(settings, topic, None, records, progress=False, slack=timedelta(0),
                       timeout=10.0, offsets=snapshot_offsets(table))
    except Exception as exc:  # noqa: BLE001 - the archive still answers
        return 0, f"the Kafka tail of {topic} could not be read ({exc}): {kind.name} is the archive only"
    frames = [f[f["_reason"].isna()] for f in frames]
    rows = sum(map(len, frames))
    if not rows:
        return 0, None
    frame = pd.concat(frames, ignore_index=True)
    data = {}
    for name, dtype, frame_name in kind.columns:
        data[name] = (pa.Array.from_pandas(frame[frame_name]).cast(dtype) if frame_name
                      else pa.nulls(len(frame), dtype))
    con.register(f"_{kind.name}_tail", pa.table(data, schema=kind.arrow_schema))
    con.execute(f"ALTER VIEW {kind.name} RENAME TO _{kind.name}_archive")
    con.execute(f"CREATE VIEW {kind.name} AS SELECT * FROM _{kind.name}_archive "
                f"UNION ALL BY NAME SELECT *, {day} FROM _{kind.name}_tail")
    return rows, None


def sql(query: str, *, settings: Settings | None = None,
        params: Sequence[Any] | dict[str, Any] | None = None, tail: bool = True
        ) -> pd.DataFrame:
    """Run a DuckDB SQL query over the archive's ``readings`` and ``alerts``; a DataFrame.

    Columns of ``readings``: ``sensor_id, temperature, humidity, location, event_time,
    kafka_partition, kafka_offset, record_time, event_day``; of ``alerts``: ``alert_id,
    sensor_id, location, temperature, humidity, event_time, detected_at, rule, severity,
    reason``, the same Kafka columns and ``event_day``; of ``faults`` (the simulator's fault
    labels, archive only): ``kind, sensor_id, event_time`` (the fault's start), ``end_time,
    detail``, the Kafka columns and ``event_day``; ``incidents`` groups the alerts
    per sensor and rule (:func:`sensorlib.notebook.incidents.incidents`, 10-minute gap). Times are ``TIMESTAMPTZ`` in UTC;
    ``event_day`` is the UTC day of ``event_time`` (a DATE from the partition folders: group
    or filter daily by it, it is much cheaper than ``date_trunc('day', event_time)``).

    >>> sql("select sensor_id, event_day, max(temperature) as t from readings "
    ...     "group by all order by 1, 2")  # doctest: +SKIP

    With ``tail`` (the default) the views also hold what Kafka has beyond the archive, so
    a query sees the last minutes the archiver has not written yet (``attrs["tail_rows"]``
    says how many rows each view got from Kafka; with Kafka down a
    :class:`~sensorlib.replay.frames.ReplayWarning`
    says the views are the archive only). ``tail=False``: the archive alone, no Kafka.

    Raises:
        HistoryError: the query is not valid SQL or names something that does not exist.
    """
    import duckdb

    if not query or not query.strip():
        raise HistoryError("the SQL query is empty")
    settings = Settings.from_env() if settings is None else settings
    con, tails, notes = _connect(settings, KINDS, tail)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            result = con.execute(query, params) if params is not None else con.execute(query)
            frame = result.df()
    except duckdb.Error as exc:
        raise HistoryError(f"{type(exc).__name__}: {exc}".strip()) from None
    finally:
        con.close()
    frame.attrs.update(tail_rows=tails)
    if notes:
        note = "; ".join(notes)
        frame.attrs["warnings"] = [note]
        from sensorlib.replay.frames import ReplayWarning

        warnings.warn(note, ReplayWarning, stacklevel=2)
    return frame


# -- status ----------------------------------------------------------------------------------


def table_status(settings: Settings) -> list[dict[str, Any]]:
    """Per table: name, rows, data files and bytes, last snapshot time, covered offsets."""
    out = []
    for kind in KINDS:
        topic = kind.topic(settings)
        table = load_table(settings, kind)
        row: dict[str, Any] = {"table": f"{NAMESPACE}.{table_name(topic)}", "topic": topic,
                               "exists": table is not None, "rows": 0, "files": 0, "bytes": 0,
                               "last_snapshot": None, "offsets": {}}
        snapshot = table.current_snapshot() if table is not None else None
        if table is not None and snapshot is not None:
            summary = snapshot.summary.additional_properties if snapshot.summary else {}
            row["rows"] = int(summary.get("total-records", 0))
            row["files"] = int(summary.get("total-data-files", 0))
            row["bytes"] = int(summary.get("total-files-size", 0))
            row["last_snapshot"] = datetime.fromtimestamp(snapshot.timestamp_ms / 1000, tz=UTC)
            row["offsets"] = snapshot_offsets(table)
        out.append(row)
    return out


# -- command line ----------------------------------------------------------------------------
