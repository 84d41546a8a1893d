"""The archiver: both topics into Apache Iceberg tables, exactly once, partitioned by event day.

``sensorlib archive`` reads ``sensor-readings`` and ``sensor-alerts`` (``read_committed``)
and appends their valid records to the tables of :mod:`sensorlib.history` in batches
(``batch_rows`` records or ``batch_seconds``, whichever comes first). Exactly once: each
Iceberg commit carries, in its snapshot summary, the Kafka offsets it covers; on start
the archiver seeks to the offsets of the tables' last snapshots, whatever its consumer
group says (the group ``archiver-group`` is committed after each table commit, for lag
display only). Invalid records never reach a table (the processor has already sent bad
readings to the dead-letter topic); they are counted in ``/health``.

One archiver per warehouse and topic pair: a second one exits with a clear error (a
lock file in the warehouse, released by the kernel even on SIGKILL).

>>> Archiver(Settings.from_env()).run(until_caught_up=True)   # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from sensorlib.config import Settings
from sensorlib.errors import KafkaUnavailable, SensorlibError
from sensorlib.history import (
    KINDS,
    NAMESPACE,
    READINGS,
    TableKind,
    offsets_property,
    open_table,
    snapshot_offsets,
    table_name,
)

__all__ = [
    "ArchiveError",
    "Archiver",
    "compact",
    "serve_health",
]

log = logging.getLogger("sensorlib.archive")

DEFAULT_BATCH_ROWS = 50_000
DEFAULT_BATCH_SECONDS = 30.0

_CONSUMER = {
    "isolation_level": "read_committed",
    "max_poll_records": 10_000,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    "key_deserializer": None,
    "fetch_max_wait_ms": 200,
}


class ArchiveError(SensorlibError):
    """The archiver cannot run (another one holds the warehouse, a topic is missing)."""


# -- one topic's pending batch -----------------------------------------------------------------


@dataclass
class _Batch:
    values: list[bytes | None] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class _Topic:
    kind: TableKind
    topic: str
    table: Any
    covered: dict[int, int]  # partition -> next offset the table covers
    batch: _Batch = field(default_factory=_Batch)
    archived: int = 0
    invalid: int = 0
    commits: int = 0
    last_commit: datetime | None = None


def _decode(kind: TableKind, batch: _Batch) -> tuple[pa.Table, int]:
    """The valid records of a batch as an Arrow table of the kind's schema, and how many not."""
    from sensorlib.replay import decode_alerts, decode_readings

    frame = (decode_readings if kind is READINGS else decode_alerts)(batch.values)
    valid = frame["_reason"].isna().to_numpy()
    everything = bool(valid.all())
    if not everything:
        frame = frame.loc[valid]
    columns: dict[str, Any] = {}
    for name, dtype, frame_name in kind.columns:
        if name == "kafka_partition":
            column = np.asarray(batch.partitions, dtype=np.int32)
        elif name == "kafka_offset":
            column = np.asarray(batch.offsets, dtype=np.int64)
        elif name == "record_time":
            column = np.asarray(batch.times, dtype=np.int64) * 1000  # ms -> µs
        else:
            assert frame_name is not None
            columns[name] = pa.Array.from_pandas(frame[frame_name]).cast(dtype)
            continue
        columns[name] = pa.array(column if everything else column[valid]).cast(dtype)
    table = pa.table(columns, schema=kind.arrow_schema)
    # Sorted by event time, each file's row-group statistics prune hour reads well.
    table = table.take(pc.sort_indices(table, sort_keys=[("event_time", "ascending")]))
    return table, int((~valid).sum())


# -- the service -----------------------------------------------------------------------------


class Archiver:
    """Consume both topics and append them to the archive (see the module docstring)."""

    def __init__(self, settings: Settings, *, batch_rows: int = DEFAULT_BATCH_ROWS,
                 batch_seconds: float = DEFAULT_BATCH_SECONDS, group: str | None = None,
                 kinds: tuple[TableKind, ...] = KINDS) -> None:
        if batch_rows < 1 or batch_seconds <= 0:
            raise ArchiveError("batch_rows must be at least 1 and batch_seconds positive")
        self.settings = settings
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.group = group or settings.archiver_group
        self.kinds = kinds
        self.state = "starting"
        self.error: str | None = None
        self.last_poll = 0.0
        self.lag: dict[str, int] = {}
        self.topics: dict[str, _Topic] = {}
        self._lock_file: IO[str] | None = None

    # -- health --------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the JSON of ``/health``)."""
        fresh = time.monotonic() - self.last_poll < 60
        healthy = self.state in ("running", "caught up") and fresh
        body = {
            "status": "ok" if healthy else self.state,
            "error": self.error,
            "group": self.group,
            "warehouse": str(self.settings.warehouse),
            "tables": {t.topic: {"table": f"{NAMESPACE}.{table_name(t.topic)}",
                                 "archived": t.archived, "invalid": t.invalid,
                                 "commits": t.commits, "pending": len(t.batch),
                                 "lag": self.lag.get(t.topic),
                                 "lastCommit": t.last_commit.isoformat() if t.last_commit else None}
                       for t in self.topics.values()},
        }
        return healthy, body

    # -- running -------------------------------------------------------------------------

    def _acquire(self) -> None:
        folder = self.settings.warehouse
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f".archiver-{table_name(self.settings.topic_readings)}.lock"
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held while running
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ArchiveError(f"another archiver is writing {folder} (lock {path.name}); "
                               "stop it first — one archiver per warehouse") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def _release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def run(self, stop: threading.Event | None = None, *, until_caught_up: bool = False,
            timeout: float = 120.0) -> dict[str, int]:
        """Archive until ``stop`` is set (or, with ``until_caught_up``, until the end
        offsets of the moment it started are in the tables). Returns rows archived per topic.
        """
        from sensorlib.kafka_io import make_consumer

        stop = stop or threading.Event()
        self._acquire()
        consumer = None
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sensorlib-archive")
        pending: list[tuple[_Topic, dict[int, int], Future[int]]] = []
        try:
            consumer = make_consumer(self.settings, group_id=self.group,
                                     client_id="sensorlib-archiver", **_CONSUMER)
            parts = self._assign(consumer)
            targets = consumer.end_offsets(parts) if until_caught_up else {}
            self.state = "running"
            self.last_poll = time.monotonic()
            idle_since = time.monotonic()
            while not stop.is_set():
                got = self._poll(consumer)
                now = time.monotonic()
                self.last_poll = now
                if got:
                    idle_since = now
                for state in self.topics.values():
                    while len(state.batch) >= self.batch_rows or (
                            len(state.batch) and now - state.batch.started >= self.batch_seconds):
                        self._submit(state, pool, pending)
                        # Back-pressure: at most one commit waits behind the one running.
                        while len(pending) > 2:
                            self._settle(consumer, pending, wait=True, limit=1)
                self._settle(consumer, pending, wait=False)
                if until_caught_up and all(consumer.position(tp) >= end
                                           for tp, end in targets.items()):
                    break
                if until_caught_up and now - idle_since > timeout:
                    raise KafkaUnavailable(self.settings.bootstrap_servers,
                                           f"no records for {timeout:.0f}s before catching up")
            for state in self.topics.values():  # a clean stop archives what was read
                while len(state.batch):
                    self._submit(state, pool, pending)
            self._settle(consumer, pending, wait=True)
            self.state = "caught up" if until_caught_up else "stopped"
            return {t.topic: t.archived for t in self.topics.values()}
        except KafkaError as exc:
            self.state, self.error = "error", f"{type(exc).__name__}: {exc}"
            raise KafkaUnavailable(self.settings.bootstrap_servers, self.error) from exc
        except BaseException as exc:
            self.state, self.error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if consumer is not None:
                consumer.close(autocommit=False)
            self._release()

    def _assign(self, consumer: Any) -> list[TopicPartition]:
        """Open the tables, assign every partition, seek to the offsets the tables cover."""
        parts: list[TopicPartition] = []
        seeks: dict[TopicPartition, int] = {}
        for kind in self.kinds:
            topic = kind.topic(self.settings)
            numbers = consumer.partitions_for_topic(topic)
            if not numbers:
                raise ArchiveError(f"topic {topic!r} does not exist at "
                                   f"{self.settings.bootstrap_servers}; create the topics with "
                                   "`sensorlib topics`")
            table = open_table(self.settings, kind)
            covered = snapshot_offsets(table)
            state = _Topic(kind, topic, table, dict(covered))
            self.topics[topic] = state
            tps = [TopicPartition(topic, p) for p in sorted(numbers)]
            firsts = consumer.beginning_offsets(tps)
            for tp in tps:
                start = covered.get(tp.partition, firsts[tp])
                if start < firsts[tp]:
                    log.warning("%s partition %d: offsets %d..%d were deleted by retention "
                                "before they were archived", topic, tp.partition, start,
                                firsts[tp] - 1)
                    start = firsts[tp]
                seeks[tp] = start
                state.covered.setdefault(tp.partition, start)
            parts += tps
            log.info("archiving %s into %s.%s from offsets %s", topic, NAMESPACE,
                     table_name(topic), {tp.partition: seeks[tp] for tp in tps})
        consumer.assign(parts)
        for tp, offset in seeks.items():
            consumer.seek(tp, offset)
        return parts

    def _poll(self, consumer: Any) -> int:
        got = 0
        for tp, records in consumer.poll(timeout_ms=500).items():
            state = self.topics[tp.topic]
            batch = state.batch
            if not batch.values:
                batch.started = time.monotonic()
            batch.values.extend([r.value for r in records])
            batch.offsets.extend([r.offset for r in records])
            batch.times.extend([r.timestamp for r in records])
            batch.partitions.extend([tp.partition] * len(records))
            got += len(records)
        if got:
            self._update_lag(consumer)
        return got

    def _update_lag(self, consumer: Any) -> None:
        lag: dict[str, int] = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - consumer.position(tp))
        self.lag = lag

    def _submit(self, state: _Topic, pool: ThreadPoolExecutor,
                pending: list[tuple[_Topic, dict[int, int], Future[int]]]) -> None:
        """Hand (at most ``batch_rows`` of) the batch to the writer thread, in order."""
        batch, n = state.batch, self.batch_rows
        if len(batch) > n:  # one poll may bring more than a batch: split it
            state.batch = _Batch(batch.values[n:], batch.partitions[n:], batch.offsets[n:],
                                 batch.times[n:], batch.started)
            batch = _Batch(batch.values[:n], batch.partitions[:n], batch.offsets[:n],
                           batch.times[:n], batch.started)
        else:
            state.batch = _Batch()
        covered = dict(state.covered)
        for partition, offset in zip(batch.partitions, batch.offsets, strict=True):
            if offset >= covered.get(partition, 0):
                covered[partition] = offset + 1
        state.covered = covered
        pending.append((state, covered, pool.submit(self._write, state, batch, covered)))

    def _write(self, state: _Topic, batch: _Batch, covered: dict[int, int]) -> int:
        from pyiceberg.exceptions import CommitFailedException

        table, invalid = _decode(state.kind, batch)
        props = offsets_property(state.topic, covered)
        for attempt in range(5):
            try:
                state.table.append(table, snapshot_properties=props)
                break
            except CommitFailedException:
                # Someone else (a compaction) committed first: reload and try again.
                state.table = state.table.refresh()
                if attempt == 4:
                    raise
        state.archived += table.num_rows
        state.invalid += invalid
        state.commits += 1
        state.last_commit = datetime.now(UTC)
        if invalid:
            log.warning("%d invalid record(s) of %s were not archived", invalid, state.topic)
        return table.num_rows

    def _settle(self, consumer: Any, pending: list[tuple[_Topic, dict[int, int], Future[int]]],
                *, wait: bool, limit: int | None = None) -> None:
        """Commit the group offsets of finished table commits (lag display only)."""
        done = 0
        while pending and (wait or pending[0][2].done()) and (limit is None or done < limit):
            done += 1
            state, covered, future = pending.pop(0)
            future.result()  # a failed table commit stops the archiver
            offsets = {TopicPartition(state.topic, p): OffsetAndMetadata(o, "", -1)
                       for p, o in covered.items()}
            try:
                consumer.commit(offsets)
            except KafkaError as exc:  # harmless: the tables hold the real position
                log.info("group offsets not committed (%s); the tables are up to date", exc)


# -- /health ---------------------------------------------------------------------------------


def _host_name(header: str) -> str:
    """The host part of a Host header (``[::1]:8083`` -> ``[::1]``)."""
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0]


def serve_health(archiver: Archiver, host: str, port: int) -> ThreadingHTTPServer:
    """A tiny HTTP server answering ``GET /health`` (JSON; 200 healthy, 503 not) in a thread."""
    allowed = set(archiver.settings.hosts())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = _host_name(self.headers.get("Host") or "")
            if name not in allowed:
                self._send(400, {"error": f"unknown Host header {name!r}"})
            elif self.path.split("?")[0] != "/health":
                self._send(404, {"error": "not found; try /health"})
            else:
                healthy, body = archiver.health()
                self._send(200 if healthy else 503, body)

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sensorlib-archive-health",
                     daemon=True).start()
    return server


# -- compaction ------------------------------------------------------------------------------


def compact(settings: Settings, *, min_files: int = 4, keep_snapshots: timedelta = timedelta(hours=1),
            orphan_age: timedelta = timedelta(hours=1), progress: Any = None) -> dict[str, Any]:
    """Rewrite each event day with ``min_files`` or more data files into one sorted file.

    The rewrite is an Iceberg overwrite of that day, committed with the same Kafka
    offsets as the snapshot it replaces (so the archiver's place is kept; a commit race
    with a running archiver is retried). Then snapshots older than ``keep_snapshots``
    are expired and data files no snapshot references any more (older than
    ``orphan_age``, so an in-flight append is never touched) are deleted.
    """
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    say = progress or (lambda message: None)
    report: dict[str, Any] = {}
    for kind in KINDS:
        table = open_table(settings, kind)
        topic = kind.topic(settings)
        days: dict[Any, int] = {}
        for task in table.scan().plan_files():
            day = task.file.partition[0]
            days[day] = days.get(day, 0) + 1
        rewritten = 0
        for day, files in sorted(days.items()):
            if files < min_files:
                continue
            start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=int(day))
            where = And(GreaterThanOrEqual("event_time", start.isoformat()),
                        LessThan("event_time", (start + timedelta(days=1)).isoformat()))
            for attempt in range(5):
                table = table.refresh()
                rows = table.scan(row_filter=where).to_arrow()
                rows = rows.take(pc.sort_indices(rows, sort_keys=[("event_time", "ascending")]))
                props = offsets_property(topic, snapshot_offsets(table))
                try:
                    table.overwrite(rows, overwrite_filter=where, snapshot_properties=props)
                    break
                except CommitFailedException:
                    if attempt == 4:
                        raise
            rewritten += 1
            say(f"{topic}: {start:%Y-%m-%d} {files} files -> 1 ({rows.num_rows:,} rows)")
        table = table.refresh()
        expired = _expire(table, keep_snapshots)
        deleted = _delete_orphans(table, orphan_age)
        report[topic] = {"days_rewritten": rewritten, "snapshots_expired": expired,
                         "files_deleted": deleted}
    return report


def _expire(table: Any, keep: timedelta) -> int:
    current = table.current_snapshot()
    if current is None:
        return 0
    cutoff = datetime.now(UTC) - keep
    old = [s.snapshot_id for s in table.snapshots()
           if s.snapshot_id != current.snapshot_id and s.timestamp_ms < cutoff.timestamp() * 1000]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()
    return len(old)


def _delete_orphans(table: Any, min_age: timedelta) -> int:
    """Delete data files of this table that no remaining snapshot references."""
    from pyiceberg.manifest import ManifestContent

    table = table.refresh()
    referenced: set[str] = set()
    for snapshot in table.snapshots():
        for manifest in snapshot.manifests(table.io):
            if manifest.content != ManifestContent.DATA:
                continue
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                referenced.add(entry.data_file.file_path.removeprefix("file://"))
    root = Path(table.location().removeprefix("file://")) / "data"
    cutoff = time.time() - min_age.total_seconds()
    deleted = 0
    for path in root.rglob("*.parquet") if root.exists() else ():
        if str(path) not in referenced and path.stat().st_mtime < cutoff:
            path.unlink()
            deleted += 1
    return deleted


# -- command line ----------------------------------------------------------------------------


def cmd_archive(args: Any, settings: Settings) -> int:
    """``sensorlib archive``: run the archiver (``run``, the default) or ``compact``."""
    import signal
    import sys

    if args.action == "compact":
        report = compact(settings, min_files=args.min_files,
                         progress=lambda m: print(m, file=sys.stderr, flush=True))
        for topic, figures in report.items():
            print(f"{topic}: {figures['days_rewritten']} day(s) rewritten, "
                  f"{figures['snapshots_expired']} snapshot(s) expired, "
                  f"{figures['files_deleted']} unreferenced file(s) deleted")
        return 0
    from sensorlib.kafka_io import ensure_topics, wait_for_kafka

    wait_for_kafka(settings, timeout=60)
    ensure_topics(settings)
    archiver = Archiver(settings, batch_rows=args.batch_rows, batch_seconds=args.batch_seconds)
    server = None
    if not args.until_caught_up:
        host = args.host or settings.host
        port = settings.archiver_port if args.port is None else args.port
        server = serve_health(archiver, host, port)
        print(f"archiver health on http://{host}:{server.server_address[1]}/health",
              file=sys.stderr, flush=True)
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    print(f"archiving {settings.topic_readings} and {settings.topic_alerts} into "
          f"{settings.warehouse} (batches of {args.batch_rows:,} records or "
          f"{args.batch_seconds:g}s)", file=sys.stderr, flush=True)
    try:
        done = archiver.run(stop, until_caught_up=args.until_caught_up)
    finally:
        if server is not None:
            server.shutdown()
    print("archived " + ", ".join(f"{n:,} from {t}" for t, n in done.items()),
          file=sys.stderr, flush=True)
    return 0
