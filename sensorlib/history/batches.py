"""One topic's pending batch for the archiver: records packed per poll, the batch they
make, its retries and its decoding into an Arrow table of a history table's schema."""

from __future__ import annotations

import logging
import operator
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sensorlib.config import Settings
from sensorlib.engine.dedup import SeenEvents, event_id_of
from sensorlib.history.query import (
    DEAD_LETTERS,
    FAULTS,
    READINGS,
    TableKind,
)
from sensorlib.model.acceptance import EventTimeWindow

log = logging.getLogger("sensorlib.history.archiver")






# -- one topic's pending batch -----------------------------------------------------------------


_VALUE = operator.attrgetter("value")
_HEADERS = operator.attrgetter("headers")
_OFFSET = operator.attrgetter("offset")
_TIMESTAMP = operator.attrgetter("timestamp")


@dataclass
class Chunk:
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
    def pack(cls, partition: int, records: list[Any]) -> Chunk:
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

    def split(self, k: int) -> tuple[Chunk, Chunk]:
        """The first ``k`` records and the rest."""
        cut = int(np.maximum(self.sizes[:k], 0).sum()) + k  # just past the k-th separator
        ids = self.event_ids
        return (Chunk(self.partition, self.values[:cut - 1], self.sizes[:k], self.offsets[:k],
                       self.times[:k], None if ids is None else ids[:k]),
                Chunk(self.partition, self.values[cut:], self.sizes[k:], self.offsets[k:],
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
class Batch:
    """Records of one topic waiting for the writer, as the polls brought them."""

    chunks: list[Chunk] = field(default_factory=list)
    rows: int = 0
    started: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return self.rows

    def add(self, chunk: Chunk) -> None:
        if not self.rows:
            self.started = time.monotonic()
        self.chunks.append(chunk)
        self.rows += len(chunk)

    def take(self, n: int) -> Batch:
        """Remove and return the first ``n`` records (all of them if fewer)."""
        if n >= self.rows:
            head, self.chunks, self.rows = Batch(self.chunks, self.rows, self.started), [], 0
            return head
        head = Batch(started=self.started)
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
class TopicState:
    kind: TableKind
    topic: str
    covered: dict[int, int]  # partition -> next offset the table covers (once committed)
    batch: Batch = field(default_factory=Batch)
    archived: int = 0
    invalid: int = 0
    duplicates: int = 0  # retried copies (same sensorId and eventId) not archived again
    skipped: int = 0  # records another archiver had archived already (after a rebalance)
    conflicts: int = 0  # commits retried because another writer committed first
    commits: int = 0
    last_commit: datetime | None = None


class Retries:
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

    def reload(self, table: Any, partitions: set[int]) -> None:
        """Forget ``partitions``' pairs and take them from the table instead (a partition
        newly assigned to this archiver: another one archived it until now)."""
        for partition in partitions:
            self._pairs.pop(partition, None)
        fresh = Retries.from_table(table, self.span_ms, partitions)
        for partition in partitions:
            if partition in fresh._pairs:
                self._pairs[partition] = fresh._pairs[partition]

    @classmethod
    def from_table(cls, table: Any, span_ms: int, partitions: set[int] | None = None
                   ) -> Retries:
        """The pairs of the table's newest ``span_ms`` of record time (a restart forgets
        nothing the running writer would have remembered), of ``partitions`` only if given."""
        from pyiceberg.expressions import And, GreaterThanOrEqual, In, NotNull

        out = cls(span_ms)
        if partitions is not None and not partitions:
            return out
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
        where = And(NotNull("event_id"), GreaterThanOrEqual("record_time", since.isoformat()))
        if partitions is not None:
            where = And(where, In("kafka_partition", set(partitions)))
        rows = table.scan(row_filter=where,
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
    from sensorlib.processor.warmup import WARM_EXTRA

    return int((settings.window_seconds + WARM_EXTRA.total_seconds()) * 1000)


def decode_batch(kind: TableKind, batch: Batch, accept: EventTimeWindow | None = None,
            seen: Retries | None = None) -> tuple[pa.Table, int, int]:
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
    elif kind is FAULTS:
        from sensorlib.history.faults import decode_faults

        frame = decode_faults(batch.values)
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

