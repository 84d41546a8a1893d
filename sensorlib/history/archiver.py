"""The archiver: both topics into Apache Iceberg tables, exactly once, partitioned by event day.

``sensorlib archive`` reads ``sensor-readings`` and ``sensor-alerts`` (``read_committed``)
and appends their valid records to the tables of :mod:`sensorlib.history.query` in batches
(``batch_rows`` records or ``batch_seconds``, whichever comes first). Exactly once: each
Iceberg commit carries, in its snapshot summary, the Kafka offsets it covers; on start
the archiver seeks to the offsets of the tables' last snapshots, whatever its consumer
group says (the group ``archiver-group`` is committed after each table commit, for lag
display only). Invalid records never reach a table (the processor has already sent bad
readings to the dead-letter topic); they are counted in ``/health``.

Decoding, Parquet writing and the Iceberg commits run in a writer process forked at start
(``sensorlib archive`` on Linux; a thread in library use, ``writer="thread"``), so the consumer loop — kafka-python
parses every record in Python — never waits for them or shares a GIL with them. The
writer commits batches strictly in order and stops at its first failure; the kernel kills
it with the archiver (``PR_SET_PDEATHSIG``).

One archiver per warehouse and topic pair: a second one exits with a clear error (a
lock file in the warehouse, released by the kernel even on SIGKILL — once the writer
process, which shares it, is gone too: a successor waits up to 10 s for that).

>>> Archiver(Settings.from_env()).run(until_caught_up=True)   # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import multiprocessing
import operator
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.record.util import crc32c_c as _crc32c_c
from kafka.structs import OffsetAndMetadata
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sensorlib.config import Settings
from sensorlib.engine.dedup import SeenEvents, event_id_of
from sensorlib.errors import ArchiveError, KafkaUnavailable
from sensorlib.history.query import (
    BY_NAME,
    DEAD_LETTERS,
    KINDS,
    NAMESPACE,
    READINGS,
    TableKind,
    offsets_property,
    open_table,
    snapshot_offsets,
    table_name,
)
from sensorlib.kafka.fetch import accept_of
from sensorlib.model.events import EventTimeWindow
from sensorlib.observe.telemetry import ArchiverMetrics

__all__ = [
    "ArchiveError",
    "Archiver",
    "can_fork_writer",
    "compact",
    "serve_health",
]

log = logging.getLogger("sensorlib.history.archiver")

DEFAULT_BATCH_ROWS = 100_000
DEFAULT_BATCH_SECONDS = 30.0
#: Batches handed to the writer and not yet committed (one being written, one queued):
#: bounds memory while the consumer runs ahead.
MAX_IN_FLIGHT = 2
#: How long a new archiver waits for the writer of a SIGKILLed one to die (it is killed
#: by the kernel with its parent, but holds the lock until then).
LOCK_WAIT_SECONDS = 10.0
#: ``/health`` (the processor's shape): a problem counts once it has lasted this long —
#: group offset commits failing (a coordinator move or a broker restart is normal for
#: a few seconds).
HEALTH_GRACE = 30.0
#: Kafka not answering the archiver's end-offset probe for this long (a frozen or
#: partitioned broker: TCP still connects) makes it unhealthy.
SILENT_AFTER = 10.0
#: Records waiting with none read for this long (lag with no progress) make it unhealthy.
STALL_AFTER = 60.0
#: The probe (end offsets, for lag and liveness): how often, and how long it may take.
PROBE_EVERY = 5.0
PROBE_TIMEOUT_MS = 2000
#: After a failure (the broker, a full disk, a failed commit) the service restarts the
#: writer and the consumer from the tables' snapshot offsets after this back-off
#: (doubling up to ``RETRY_MAX``; back to ``RETRY_FIRST`` after ``RETRY_RESET`` s of work).
RETRY_FIRST = 1.0
RETRY_MAX = 30.0
RETRY_RESET = 60.0

_CONSUMER = {
    "isolation_level": "read_committed",
    "max_poll_records": 10_000,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    "key_deserializer": None,
    "fetch_max_wait_ms": 200,
    # As in replay: CRCs are checked when the C crc32c is installed (cheap), else the
    # pure-Python CRC would cost as much as the rest of the archiver together.
    "check_crcs": _crc32c_c is not None,
}


# -- one topic's pending batch -----------------------------------------------------------------


@dataclass
class _Chunk:
    """One poll's records of one partition, packed at once so that no per-record object
    outlives the poll: the values newline-joined (a tombstone is empty, length -1)."""

    partition: int
    values: bytes
    sizes: np.ndarray  # int32 per record; -1: no value
    offsets: np.ndarray  # int64
    times: np.ndarray  # int64, ms
    #: each record's ``eventId`` header (None: none); None when no record has one
    event_ids: list[str | None] | None = None

    @classmethod
    def pack(cls, partition: int, records: list[Any]) -> _Chunk:
        n = len(records)
        values = list(map(_VALUE, records))
        try:
            sizes = np.fromiter(map(len, values), dtype=np.int32, count=n)
            joined = b"\n".join(values)
        except TypeError:  # a tombstone among them
            sizes = np.array([-1 if v is None else len(v) for v in values], dtype=np.int32)
            joined = b"\n".join([v or b"" for v in values])
        ids: list[str | None] | None = None
        if any(map(_HEADERS, records)):
            ids = [event_id_of(r.headers) for r in records]
            if not any(ids):
                ids = None
        return cls(partition, joined, sizes,
                   np.fromiter(map(_OFFSET, records), dtype=np.int64, count=n),
                   np.fromiter(map(_TIMESTAMP, records), dtype=np.int64, count=n), ids)

    def __len__(self) -> int:
        return len(self.sizes)

    def split(self, k: int) -> tuple[_Chunk, _Chunk]:
        """The first ``k`` records and the rest."""
        cut = int(np.maximum(self.sizes[:k], 0).sum()) + k  # just past the k-th separator
        ids = self.event_ids
        return (_Chunk(self.partition, self.values[:cut - 1], self.sizes[:k], self.offsets[:k],
                       self.times[:k], None if ids is None else ids[:k]),
                _Chunk(self.partition, self.values[cut:], self.sizes[k:], self.offsets[k:],
                       self.times[k:], None if ids is None else ids[k:]))

    def unpack(self) -> list[bytes | None]:
        """The record values again."""
        if len(self) == 0:
            return []
        if self.values.count(b"\n") == len(self) - 1 and self.sizes.min() >= 0:
            return self.values.split(b"\n")  # the usual case: no newline inside a value
        out: list[bytes | None] = []
        at = 0
        for size in self.sizes.tolist():
            out.append(None if size < 0 else self.values[at:at + size])
            at += max(size, 0) + 1
        return out


@dataclass
class _Batch:
    """Records of one topic waiting for the writer, as the polls brought them."""

    chunks: list[_Chunk] = field(default_factory=list)
    rows: int = 0
    started: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return self.rows

    def add(self, chunk: _Chunk) -> None:
        if not self.rows:
            self.started = time.monotonic()
        self.chunks.append(chunk)
        self.rows += len(chunk)

    def take(self, n: int) -> _Batch:
        """Remove and return the first ``n`` records (all of them if fewer)."""
        if n >= self.rows:
            head, self.chunks, self.rows = _Batch(self.chunks, self.rows, self.started), [], 0
            return head
        head = _Batch(started=self.started)
        while head.rows < n:
            chunk = self.chunks.pop(0)
            if head.rows + len(chunk) > n:
                chunk, rest = chunk.split(n - head.rows)
                self.chunks.insert(0, rest)
            head.chunks.append(chunk)
            head.rows += len(chunk)
        self.rows -= head.rows
        return head

    @property
    def partitions(self) -> np.ndarray:
        return np.concatenate([np.full(len(c), c.partition, dtype=np.int32)
                               for c in self.chunks] or [np.empty(0, np.int32)])

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([c.offsets for c in self.chunks] or [np.empty(0, np.int64)])

    @property
    def times(self) -> np.ndarray:
        return np.concatenate([c.times for c in self.chunks] or [np.empty(0, np.int64)])

    @property
    def event_ids(self) -> list[str | None] | None:
        """Each record's ``eventId`` header, or None when no record has one."""
        if all(c.event_ids is None for c in self.chunks):
            return None
        out: list[str | None] = []
        for chunk in self.chunks:
            out += chunk.event_ids if chunk.event_ids is not None else [None] * len(chunk)
        return out

    @property
    def values(self) -> list[bytes | None]:
        out: list[bytes | None] = []
        for chunk in self.chunks:
            out += chunk.unpack()
        return out


@dataclass
class _Topic:
    kind: TableKind
    topic: str
    covered: dict[int, int]  # partition -> next offset the table covers (once committed)
    batch: _Batch = field(default_factory=_Batch)
    archived: int = 0
    invalid: int = 0
    duplicates: int = 0  # retried copies (same sensorId and eventId) not archived again
    commits: int = 0
    last_commit: datetime | None = None


class _Retries:
    """The (sensorId, eventId) pairs archived in the last span of record time, per
    partition: the processor's de-duplication of retried POSTs (:mod:`sensorlib.engine.dedup`,
    the same span: the window + 2 minutes), so a retry is one row in the archive too.
    Rebuilt from the table when the writer starts (:meth:`from_table`)."""

    def __init__(self, span_ms: int) -> None:
        self.span_ms = span_ms
        self._pairs: dict[int, SeenEvents] = {}

    def first(self, partition: int, sensor_id: str, event_id: str, at_ms: int) -> bool:
        """Whether this copy is the first within the span (it is remembered)."""
        pairs = self._pairs.get(partition)
        if pairs is None:
            pairs = self._pairs[partition] = SeenEvents(self.span_ms)
        return pairs.first(sensor_id, event_id, at_ms)

    @classmethod
    def from_table(cls, table: Any, span_ms: int) -> _Retries:
        """The pairs of the table's newest ``span_ms`` of record time (a restart forgets
        nothing the running writer would have remembered)."""
        from pyiceberg.expressions import And, GreaterThanOrEqual, NotNull

        out = cls(span_ms)
        if table.current_snapshot() is None or "event_id" not in table.schema().column_names:
            return out
        field = table.schema().find_field("record_time").field_id
        newest = max((int.from_bytes(task.file.upper_bounds[field], "little", signed=True)
                      for task in table.scan().plan_files()
                      if task.file.upper_bounds and field in task.file.upper_bounds),
                     default=None)
        if newest is None:
            return out
        since = datetime.fromtimestamp((newest // 1000 - span_ms) / 1000, UTC)
        rows = table.scan(row_filter=And(NotNull("event_id"),
                                         GreaterThanOrEqual("record_time", since.isoformat())),
                          selected_fields=("kafka_partition", "kafka_offset", "sensor_id",
                                           "event_id", "record_time")).to_arrow()
        rows = rows.sort_by([("kafka_partition", "ascending"), ("kafka_offset", "ascending")])
        for partition, sensor, event_id, at in zip(
                rows["kafka_partition"].to_pylist(), rows["sensor_id"].to_pylist(),
                rows["event_id"].to_pylist(), rows["record_time"].cast(pa.int64()).to_pylist(),
                strict=True):
            out.first(partition, sensor, event_id, at // 1000)
        return out


def retry_span_ms(settings: Settings) -> int:
    """How long (record time) a retried reading is recognised: the processor's span."""
    from sensorlib.processor.loop import WARM_EXTRA

    return int((settings.window_seconds + WARM_EXTRA.total_seconds()) * 1000)


def _decode(kind: TableKind, batch: _Batch, accept: EventTimeWindow | None = None,
            seen: _Retries | None = None) -> tuple[pa.Table, int, int]:
    """The valid records of a batch as an Arrow table of the kind's schema, how many were
    invalid, and how many were retried copies (dropped as the processor drops them:
    a (sensorId, eventId) pair already in ``seen``, per partition, by record time)."""
    from sensorlib.kafka.deadletters import letters_frame
    from sensorlib.replay.reader import decode_alerts, decode_readings

    partitions, offsets, times = batch.partitions, batch.offsets, batch.times
    event_ids = batch.event_ids if kind is READINGS else None
    if kind is READINGS:  # the gate's verdicts: the processor's window around record time
        frame = decode_readings(batch.values, record_ms=times, accept=accept)
    elif kind is DEAD_LETTERS:
        frame = letters_frame(batch.values, partitions, offsets)
        # A letter not written by sensorlib has no rejectedAt: its record's own time.
        missing = frame["rejectedAt"].isna().to_numpy()
        if missing.any():
            frame.loc[missing, "rejectedAt"] = pd.to_datetime(times[missing], unit="ms", utc=True)
        frame["_reason"] = None
    else:
        frame = decode_alerts(batch.values)
    valid = frame["_reason"].isna().to_numpy()
    invalid = int((~valid).sum())
    keep = valid.copy()
    if event_ids is not None and seen is not None:
        sensors = frame["sensorId"].tolist()
        for i, event_id in enumerate(event_ids):
            if event_id is not None and valid[i]:
                keep[i] = seen.first(int(partitions[i]), sensors[i], event_id, int(times[i]))
    everything = bool(keep.all())
    if not everything:
        frame = frame.loc[keep]
    columns: dict[str, Any] = {}
    for name, dtype, frame_name in kind.columns:
        if name == "kafka_partition":
            column = partitions
        elif name == "kafka_offset":
            column = offsets
        elif name == "record_time":
            column = times * 1000  # ms -> µs
        elif name == "event_id":
            ids = event_ids if event_ids is not None else [None] * len(keep)
            column = np.array(ids, dtype=object)
        else:
            assert frame_name is not None
            columns[name] = pa.Array.from_pandas(frame[frame_name]).cast(dtype)
            continue
        columns[name] = pa.array(column if everything else column[keep]).cast(dtype)
    table = pa.table(columns, schema=kind.arrow_schema)
    # Sorted by event time, each file's row-group statistics prune hour reads well.
    table = table.take(pc.sort_indices(table, sort_keys=[("event_time", "ascending")]))
    return table, invalid, int((valid & ~keep).sum())


# -- the writer: decode + Parquet + Iceberg commit, strictly in order --------------------------
#
# The consumer loop is pure Python (kafka-python parses every record) and so are large parts
# of a table commit (pyiceberg writes manifests and metadata in Python). In one process they
# share one GIL; the writer therefore runs in a forked child process where the platform can
# tie the child's life to its parent (Linux: PR_SET_PDEATHSIG), else in a thread.
#
# Exactly once: batches go to the writer in offset order and are committed one after
# another, each with the offsets its own rows end at, so a snapshot's offsets are always
# exactly those whose rows the table holds. After a failed commit the writer commits
# nothing more (a later batch's offsets would cover the failed batch's rows: a gap).
# A SIGKILLed archiver takes its writer with it (the kernel kills the child); the writer
# holds the archiver's lock file too (inherited), so no successor starts before it is gone.
# PR_SET_PDEATHSIG follows the forking *thread*: run() forks and joins the writer itself.

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); True if it will."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died before prctl: nothing may be committed
        os._exit(1)
    return True


def _can_fork() -> bool:
    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def _writer_loop(requests: Any, replies: Any, settings: Settings, parent: int | None,
                 others: tuple[Any, ...] = ()) -> None:
    """The writer. ``("open", kind names)`` opens the tables and answers ``("opened",
    {topic: offsets covered})``; then ``(topic, kind, covered, batch)`` messages are appended, each to its table with its offsets, answering ``("done",
    rows, invalid, time)``. After an error it answers ``("error", message)`` and stops.
    ``None`` (or a closed pipe) ends the loop.
    """
    if parent is not None:  # a child process: dies with the archiver, ignores ^C/TERM
        for end in others:  # the archiver's ends (inherited): EOF when it closes its own
            end.close()
        if not _die_with_parent(parent):
            replies.send(("error", "cannot tie the writer process to the archiver"))
            return
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tables: dict[str, Any] = {}
    retries = _Retries(retry_span_ms(settings))
    while True:
        try:
            message = requests.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        try:
            if message[0] == "open":  # open (create) the tables, answer their offsets
                kinds = [BY_NAME[name] for name in message[1]]
                for kind in kinds:
                    tables[kind.topic(settings)] = open_table(settings, kind)
                    if kind is READINGS:
                        retries = _Retries.from_table(tables[kind.topic(settings)],
                                                      retry_span_ms(settings))
                replies.send(("opened", {t: snapshot_offsets(table) for t, table in tables.items()}))
                continue
            from pyiceberg.exceptions import CommitFailedException

            topic, kind_name, covered, batch = message
            kind = BY_NAME[kind_name]
            table, invalid, duplicates = _decode(kind, batch, accept_of(settings), retries)
            props = offsets_property(topic, covered)
            target = tables[topic]
            for attempt in range(5):
                try:
                    target.append(table, snapshot_properties=props)
                    break
                except CommitFailedException:
                    # Someone else (a compaction) committed first: reload and try again.
                    target = target.refresh()
                    if attempt == 4:
                        raise
            tables[topic] = target
            replies.send(("done", table.num_rows, invalid, datetime.now(UTC), duplicates))
        except BaseException as exc:  # noqa: BLE001 - reported to the archiver, then stop
            try:
                replies.send(("error", f"{type(exc).__name__}: {exc}"))
            except (OSError, ValueError):
                pass
            return


class _Writer:
    """The writer (process or thread) and the batches handed to it, oldest first.

    Batches are sent by a thread of their own: a pipe holds 64 KiB, so a send blocks
    until the writer reads it — after its previous commit — and the consumer must not.
    """

    def __init__(self, settings: Settings, *, process: bool) -> None:
        their_in, self._requests = multiprocessing.Pipe(duplex=False)
        self._replies, their_out = multiprocessing.Pipe(duplex=False)
        self.pending: list[tuple[_Topic, dict[int, int]]] = []
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        if process:
            context = multiprocessing.get_context("fork")
            self.worker: Any = context.Process(
                target=_writer_loop,
                args=(their_in, their_out, settings, os.getpid(),
                      (self._requests, self._replies)),
                name="sensorlib-archive-writer", daemon=True)
        else:
            self.worker = threading.Thread(target=_writer_loop,
                                           args=(their_in, their_out, settings, None),
                                           name="sensorlib-archive-writer", daemon=True)
        self.worker.start()
        self._theirs = (their_in, their_out)
        if process:  # the child has its own copies; EOF reaches us if it dies
            their_in.close()
            their_out.close()
        self._sender = threading.Thread(target=self._send_loop, name="sensorlib-archive-send",
                                        daemon=True)
        self._sender.start()

    def _send_loop(self) -> None:
        while True:
            message = self._outbox.get()
            try:
                self._requests.send(message)
            except (OSError, ValueError, TypeError):  # the writer is gone: answer() says so
                return
            if message is None:
                return

    def send(self, message: Any) -> None:
        """Queue a message for the writer (in order; never blocks)."""
        self._outbox.put(message)

    def opened(self) -> dict[str, dict[int, int]]:
        """The answer to ``("open", …)``: topic -> the offsets the tables' snapshots cover."""
        try:
            reply = self._replies.recv()
        except (EOFError, OSError):
            raise ArchiveError("the archive writer died while opening the tables") from None
        if reply[0] == "error":
            raise ArchiveError(f"opening the archive failed: {reply[1]}")
        return reply[1]

    def submit(self, state: _Topic, batch: _Batch, covered: dict[int, int]) -> None:
        self.send((state.topic, state.kind.name, covered, batch))
        self.pending.append((state, covered))

    def answer(self, timeout: float | None) -> tuple[_Topic, dict[int, int]] | None:
        """The oldest batch once committed (its stats updated), None if not yet; raises
        :class:`ArchiveError` if the writer failed or died."""
        if not self.pending or not self._replies.poll(timeout):
            return None
        try:
            reply = self._replies.recv()
        except (EOFError, OSError):
            raise ArchiveError("the archive writer died; the tables hold everything "
                               "committed so far (a restart resumes from there)") from None
        if reply[0] == "error":
            raise ArchiveError(f"writing the archive failed: {reply[1]}")
        state, covered = self.pending.pop(0)
        _, rows, invalid, when, duplicates = reply
        state.archived += rows
        state.invalid += invalid
        state.duplicates += duplicates
        state.commits += 1
        state.last_commit = when
        if invalid:
            log.warning("%d invalid record(s) of %s were not archived", invalid, state.topic)
        return state, covered

    def close(self, timeout: float = 120.0) -> None:
        """Let the writer finish what it has (or stop at its first error) and end."""
        self.send(None)
        self.worker.join(timeout)
        if isinstance(self.worker, threading.Thread):
            # A writer that stopped at an error reads no more: closing its ends makes a
            # send still blocked on the pipe fail (EPIPE) instead of hanging.
            for end in self._theirs:
                end.close()
        elif self.worker.is_alive():  # pragma: no cover - a hung commit
            self.worker.kill()
            self.worker.join(10)
        self._sender.join(timeout)
        self._requests.close()
        self._replies.close()


# -- the service -----------------------------------------------------------------------------


class Archiver:
    """Consume both topics and append them to the archive (see the module docstring).

    ``writer`` is ``"thread"`` (the default) or ``"process"``: a child forked at the start
    of :meth:`run` (Linux only), what ``sensorlib archive`` uses — about 1.3× the throughput,
    as the consumer loop then shares no GIL with the writer. Fork only from a process that
    has not used Arrow yet: a child forked after Arrow's thread pool ran can deadlock inside
    Arrow (seen in a test process, the writer hung in ``pyarrow.json.read_json``).
    """

    def __init__(self, settings: Settings, *, batch_rows: int = DEFAULT_BATCH_ROWS,
                 batch_seconds: float = DEFAULT_BATCH_SECONDS, group: str | None = None,
                 kinds: tuple[TableKind, ...] = KINDS, writer: str | None = None) -> None:
        if batch_rows < 1 or batch_seconds <= 0:
            raise ArchiveError("batch_rows must be at least 1 and batch_seconds positive")
        if writer not in (None, "process", "thread"):
            raise ArchiveError(f"writer must be 'process' or 'thread', not {writer!r}")
        if writer == "process" and not _can_fork():
            raise ArchiveError("a writer process needs Linux (fork and PR_SET_PDEATHSIG)")
        self.settings = settings
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.group = group or settings.archiver_group
        self.kinds = kinds
        self.writer = writer or "thread"
        self.state = "starting"
        self.error: str | None = None
        self.last_poll = 0.0
        self.lag: dict[str, int] = {}
        #: (topic, partition) -> high watermark minus position, for ``/metrics``.
        self.partition_lag: dict[tuple[str, int], int] = {}
        self.topics: dict[str, _Topic] = {}
        #: Health signals (time.monotonic()): the probe's last answer and error, group
        #: commits failing since, the last progress (records read, or nothing waiting).
        self.answered: float | None = None
        self.probe_error: str | None = None
        self.commit_failed_since: float | None = None
        self.commit_error: str | None = None
        self.progress_at = time.monotonic()
        #: Restarts after failures, and when the next one is due (state "retrying").
        self.restarts = 0
        self.retry_at: float | None = None
        self._next_probe = 0.0
        self._lock_file: IO[str] | None = None
        #: ``GET /metrics`` (rows appended, commits, lag): read at scrape time.
        self.metrics = ArchiverMetrics(self)

    # -- health --------------------------------------------------------------------------

    def problems(self, now: float | None = None) -> list[str]:
        """Why the archiver is not doing its job, one sentence each (empty when healthy).

        ``now`` is :func:`time.monotonic` (for tests). Kafka's TCP reachability is checked
        by :meth:`health`; group commit failures count after :data:`HEALTH_GRACE`, Kafka not
        answering after :data:`SILENT_AFTER`, lag without progress after :data:`STALL_AFTER`.
        """
        now = time.monotonic() if now is None else now
        out: list[str] = []
        if self.state == "retrying":
            wait = max(0.0, (self.retry_at or now) - now)
            out.append(f"archiving stopped and restarts from the tables' snapshots in "
                       f"{wait:.0f}s (restart {self.restarts}): {self.error}")
            return out
        if self.state not in ("running", "caught up"):
            return [f"not archiving ({self.state})" + (f": {self.error}" if self.error else "")]
        if now - self.last_poll >= 60:
            out.append(f"the consumer loop has not polled Kafka for {now - self.last_poll:.0f}s")
        if self.state != "running":
            return out
        if self.probe_error is not None and self.answered is not None \
                and now - self.answered > SILENT_AFTER:
            out.append(f"Kafka at {self.settings.bootstrap_servers} has not answered for "
                       f"{now - self.answered:.0f}s ({self.probe_error})")
        if self.commit_failed_since is not None and now - self.commit_failed_since > HEALTH_GRACE:
            out.append(f"group offsets not committed for {now - self.commit_failed_since:.0f}s: "
                       f"{self.commit_error}")
        waiting = sum(self.lag.values())
        if waiting and now - self.progress_at > STALL_AFTER:
            out.append(f"{waiting} record(s) wait and none was read for "
                       f"{now - self.progress_at:.0f}s")
        return out

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the JSON of ``/health``): healthy while archiving with no problem."""
        from sensorlib.kafka.clients import kafka_reachable

        problems = self.problems()
        reachable = kafka_reachable(self.settings)
        if not reachable:
            problems.insert(0, f"Kafka is not reachable at {self.settings.bootstrap_servers}")
        healthy = not problems
        body = {
            "status": "ok" if healthy else (
                "unhealthy" if self.state in ("running", "caught up") else self.state),
            "problems": problems,
            "kafka": "reachable" if reachable else "unreachable",
            "restarts": self.restarts,
            "error": self.error,
            "group": self.group,
            "warehouse": str(self.settings.warehouse),
            "tables": {t.topic: {"table": f"{NAMESPACE}.{table_name(t.topic)}",
                                 "archived": t.archived, "invalid": t.invalid,
                                 "duplicates": t.duplicates,
                                 "commits": t.commits, "pending": len(t.batch),
                                 "lag": self.lag.get(t.topic),
                                 "lastCommit": t.last_commit.isoformat() if t.last_commit else None}
                       for t in list(self.topics.values())},
        }
        return healthy, body

    # -- running -------------------------------------------------------------------------

    def _acquire(self) -> None:
        folder = self.settings.warehouse
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f".archiver-{table_name(self.settings.topic_readings)}.lock"
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held while running
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # The holder's pid is in the file. If that process is gone, the lock is
                # held by its writer, which the kernel is killing: wait a moment for it.
                handle.seek(0)
                holder = handle.read().strip()
                if _alive(holder) or time.monotonic() > deadline:
                    handle.close()
                    raise ArchiveError(
                        f"another archiver is writing {folder} (lock {path.name}, pid "
                        f"{holder or '?'}); stop it first — one archiver per warehouse"
                    ) from None
                time.sleep(0.05)
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

        Until ``stop`` any failure — Kafka, a full disk, a failed commit — restarts the
        writer and the consumer from the tables' snapshot offsets after a back-off
        (:data:`RETRY_FIRST` doubling to :data:`RETRY_MAX`; state ``"retrying"``, unhealthy
        meanwhile): the writer commits nothing after a failed commit, so the snapshots hold
        exactly what is archived and nothing is lost or archived twice. With
        ``until_caught_up`` a failure is raised instead.
        """
        stop = stop or threading.Event()
        self._acquire()
        try:
            delay = RETRY_FIRST
            while True:
                started = time.monotonic()
                try:
                    return self._session(stop, until_caught_up=until_caught_up, timeout=timeout)
                except Exception:  # crash-only: restart the session
                    if until_caught_up or stop.is_set():
                        raise
                    if time.monotonic() - started > RETRY_RESET:
                        delay = RETRY_FIRST  # it worked for a while: a fresh failure
                    self.restarts += 1
                    self.state, self.retry_at = "retrying", time.monotonic() + delay
                    log.warning("archiving stopped (%s); restarting from the tables' snapshot "
                                "offsets in %gs", self.error, delay)
                    if stop.wait(delay):
                        self.state = "stopped"
                        return {t.topic: t.archived for t in self.topics.values()}
                    delay = min(delay * 2, RETRY_MAX)
        finally:
            self._release()

    def _session(self, stop: threading.Event, *, until_caught_up: bool,
                 timeout: float) -> dict[str, int]:
        """One writer and one consumer, from the tables' snapshot offsets until ``stop``
        (or caught up) or the first failure (raised)."""
        from sensorlib.kafka.clients import make_consumer

        consumer = None
        writer: _Writer | None = None
        self.state = "starting"
        try:
            # The writer first: forked before the consumer starts its threads.
            writer = _Writer(self.settings, process=self.writer == "process")
            consumer = make_consumer(self.settings, group_id=self.group,
                                     client_id="sensorlib-archiver", **_CONSUMER)
            parts = self._assign(consumer, writer)
            targets = consumer.end_offsets(parts) if until_caught_up else {}
            self.state, self.retry_at = "running", None
            self.last_poll = self.answered = self.progress_at = time.monotonic()
            self.probe_error = None
            self.commit_failed_since = self.commit_error = None
            if self.restarts:
                log.info("archiving again (restart %d)", self.restarts)
            idle_since = time.monotonic()
            while not stop.is_set():
                got = self._poll(consumer)
                now = time.monotonic()
                self.last_poll = now
                if got:
                    idle_since = self.progress_at = now
                self._probe(consumer, now)
                for state in self.topics.values():
                    while len(state.batch) >= self.batch_rows or (
                            len(state.batch) and now - state.batch.started >= self.batch_seconds):
                        self._submit(state, writer)
                        # Back-pressure: at most one batch waits behind the one being written.
                        while len(writer.pending) > MAX_IN_FLIGHT:
                            self._settle(consumer, writer, timeout=None)
                self._settle(consumer, writer, timeout=0)
                if until_caught_up and all(consumer.position(tp) >= end
                                           for tp, end in targets.items()):
                    break
                if until_caught_up and now - idle_since > timeout:
                    raise KafkaUnavailable(self.settings.bootstrap_servers,
                                           f"no records for {timeout:.0f}s before catching up")
            for state in self.topics.values():  # a clean stop archives what was read
                while len(state.batch):
                    self._submit(state, writer)
            while writer.pending:
                self._settle(consumer, writer, timeout=None)
            self._commit_group(consumer)
            self.state = "caught up" if until_caught_up else "stopped"
            return {t.topic: t.archived for t in self.topics.values()}
        except KafkaError as exc:
            self.state, self.error = "error", f"{type(exc).__name__}: {exc}"
            raise KafkaUnavailable(self.settings.bootstrap_servers, self.error) from exc
        except BaseException as exc:
            self.state, self.error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if writer is not None:
                writer.close()
            if consumer is not None:
                try:  # bounded: the broker may be the reason we stop
                    consumer.close(autocommit=False, timeout_ms=5000)
                except Exception as exc:  # noqa: BLE001 - closing after a failure
                    log.info("consumer close: %s", exc)

    def _assign(self, consumer: Any, writer: _Writer) -> list[TopicPartition]:
        """Assign every partition and seek to the offsets the tables cover (the writer
        opens the tables, creating them if needed, while the consumer connects)."""
        writer.send(("open", [kind.name for kind in self.kinds]))
        known: dict[str, set[int]] = {}
        for kind in self.kinds:
            topic = kind.topic(self.settings)
            numbers = consumer.partitions_for_topic(topic)
            if not numbers:
                raise ArchiveError(f"topic {topic!r} does not exist at "
                                   f"{self.settings.bootstrap_servers}; create the topics with "
                                   "`sensorlib topics`")
            known[topic] = numbers
        opened = writer.opened()
        parts: list[TopicPartition] = []
        seeks: dict[TopicPartition, int] = {}
        for kind in self.kinds:
            topic = kind.topic(self.settings)
            covered = opened[topic]
            state = _Topic(kind, topic, dict(covered))
            old = self.topics.get(topic)
            if old is not None:  # a restart: the counters go on
                state.archived, state.invalid = old.archived, old.invalid
                state.duplicates = old.duplicates
                state.commits, state.last_commit = old.commits, old.last_commit
            self.topics[topic] = state
            tps = [TopicPartition(topic, p) for p in sorted(known[topic])]
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
            self.topics[tp.topic].batch.add(_Chunk.pack(tp.partition, records))
            got += len(records)
        if got:
            self._update_lag(consumer)
        return got

    def _commit_group(self, consumer: Any) -> None:
        """Commit the group offsets of everything archived, synchronously (at a clean stop)."""
        offsets = {TopicPartition(t.topic, p): OffsetAndMetadata(o, "", -1)
                   for t in self.topics.values() for p, o in t.covered.items()}
        try:  # bounded: a frozen broker must not hold up a stop
            consumer.commit(offsets, timeout_ms=5000)
        except KafkaError as exc:  # harmless: the tables hold the real position
            log.info("group offsets not committed (%s); the tables are up to date", exc)

    def _probe(self, consumer: Any, now: float) -> None:
        """Every :data:`PROBE_EVERY` s ask Kafka for the end offsets (bounded): the lag
        and whether the broker answers at all (a frozen broker still accepts TCP)."""
        if now < self._next_probe:
            return
        self._next_probe = now + PROBE_EVERY
        parts = list(consumer.assignment())
        try:
            ends = consumer.end_offsets(parts, timeout_ms=PROBE_TIMEOUT_MS)
        except KafkaError as exc:
            if self.probe_error is None:
                log.warning("Kafka did not answer within %gs (%s: %s)", PROBE_TIMEOUT_MS / 1000,
                            type(exc).__name__, exc)
            self.probe_error = f"{type(exc).__name__}: {exc}"
            return
        if self.probe_error is not None:
            log.info("Kafka answers again")
        self.answered, self.probe_error = time.monotonic(), None
        lag: dict[str, int] = {}
        per_partition: dict[tuple[str, int], int] = {}
        for tp, end in ends.items():
            behind = max(0, end - consumer.position(tp))
            lag[tp.topic] = lag.get(tp.topic, 0) + behind
            per_partition[(tp.topic, tp.partition)] = behind
        self.lag, self.partition_lag = lag, per_partition
        if not any(lag.values()):
            self.progress_at = self.answered  # nothing waits: no stall

    def _group_committed(self, offsets: Any, result: Any) -> None:
        """Group commit callback (lag display only): failing for long is a problem."""
        if isinstance(result, Exception):
            self._commit_failed(result)
        else:
            self.commit_failed_since = self.commit_error = None

    def _commit_failed(self, exc: BaseException) -> None:
        if self.commit_failed_since is None:
            self.commit_failed_since = time.monotonic()
            log.info("group offsets not committed (%s); the tables are up to date", exc)
        self.commit_error = f"{type(exc).__name__}: {exc}"

    def _update_lag(self, consumer: Any) -> None:
        lag: dict[str, int] = {}
        per_partition: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                behind = max(0, high - consumer.position(tp))
                lag[tp.topic] = lag.get(tp.topic, 0) + behind
                per_partition[(tp.topic, tp.partition)] = behind
        self.lag = lag
        self.partition_lag = per_partition

    def _submit(self, state: _Topic, writer: _Writer) -> None:
        """Hand (at most ``batch_rows`` of) the batch to the writer, in order."""
        batch = state.batch.take(self.batch_rows)
        covered = dict(state.covered)
        for chunk in batch.chunks:  # offsets rise within a partition
            last = int(chunk.offsets[-1]) + 1
            covered[chunk.partition] = max(covered.get(chunk.partition, 0), last)
        state.covered = covered
        writer.submit(state, batch, covered)

    def _settle(self, consumer: Any, writer: _Writer, *, timeout: float | None) -> None:
        """Take the writer's answers; commit the group offsets of committed batches (lag
        display only). ``timeout=None`` waits for one answer, ``0`` takes what is there."""
        while True:
            done = writer.answer(timeout)
            if done is None:
                return
            state, covered = done
            offsets = {TopicPartition(state.topic, p): OffsetAndMetadata(o, "", -1)
                       for p, o in covered.items()}
            try:  # asynchronous: the next polls complete it; a failure only delays the lag
                consumer.commit_async(offsets, callback=self._group_committed)
            except KafkaError as exc:  # harmless: the tables hold the real position
                self._commit_failed(exc)
            if timeout is None:
                return


_VALUE = operator.attrgetter("value")
_HEADERS = operator.attrgetter("headers")
_OFFSET = operator.attrgetter("offset")
_TIMESTAMP = operator.attrgetter("timestamp")


def _alive(pid: str) -> bool:
    """Whether the process ``pid`` (text from the lock file) exists."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


# -- /health ---------------------------------------------------------------------------------


def _host_name(header: str) -> str:
    """The host part of a Host header (``[::1]:8083`` -> ``[::1]``)."""
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0]


def serve_health(archiver: Archiver, host: str, port: int) -> ThreadingHTTPServer:
    """A tiny HTTP server answering ``GET /health`` (JSON; 200 healthy, 503 not) and
    ``GET /metrics`` (Prometheus text, :class:`~sensorlib.observe.telemetry.ArchiverMetrics`) in a
    thread."""
    allowed = set(archiver.settings.hosts())

    class Handler(BaseHTTPRequestHandler):
        timeout = archiver.settings.header_timeout  # idle or slow clients: their thread ends

        def do_GET(self) -> None:
            name = _host_name(self.headers.get("Host") or "")
            if name not in allowed:
                self._send(400, {"error": f"unknown Host header {name!r}"})
            elif self.path.split("?")[0] == "/metrics":
                data = generate_latest(archiver.metrics.registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(data)
            elif self.path.split("?")[0] != "/health":
                self._send(404, {"error": "not found; try /health or /metrics"})
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


def can_fork_writer() -> bool:
    """Whether this platform can run the writer as a process (fork and PR_SET_PDEATHSIG)."""
    return _can_fork()
