"""Fetching for replays: a topic's records, bounded, into decoded frames.

Reads with :class:`sensorlib.kafka.reader.TopicReader` (no consumer group: assign + seek, up
to the end offsets taken when the read began) and hands the records to
:mod:`sensorlib.replay.decode` in chunks. Decoding runs on a worker thread while the next
records are fetched (Arrow's parser releases the GIL), so a replay costs little more
than consuming. The frames still need :func:`sensorlib.replay.frames.assemble` (period, order,
duplicates).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from kafka.record.util import crc32c_c as _crc32c_c

from sensorlib.config import Settings
from sensorlib.errors import ReplayError
from sensorlib.kafka.reader import TopicReader
from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.replay.decode import RecordKind, decode

__all__ = ["CONSUMER_OPTIONS", "Chunk", "decode_chunk", "fetch", "newest", "tail"]

#: Records decoded per bulk call (a failing chunk is bisected to find its bad records).
CHUNK = 50_000
#: Reads larger than this show a progress bar when stderr is a terminal.
PROGRESS_THRESHOLD = 50_000
#: Decode chunks on a worker thread while the next records are fetched (Arrow's parser
#: releases the GIL); False decodes them after the last poll instead.
OVERLAP = True

#: Consumer options of a replay (the benchmark's bare loop uses the same).
CONSUMER_OPTIONS: dict[str, Any] = {
    "max_poll_records": 10_000,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    # kafka-python's pure-Python CRC-32C takes half of a replay's time. Without the C
    # `crc32c` package we rely on TCP checksums and the broker's own CRC validation
    # on append instead; with it, checking is cheap and stays on.
    "check_crcs": _crc32c_c is not None,
    "key_deserializer": None,  # the key is the sensorId, which the value carries too
    "isolation_level": "read_committed",  # alerts are written in transactions
}


@dataclass
class Chunk:
    """Raw record values and where each was stored, in the order they were fetched."""

    values: list[bytes | None] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)  # Kafka record times (ms)

    def add(self, partition: int, records: Sequence[Any]) -> None:
        """Append one poll's records of ``partition`` (kafka-python consumer records)."""
        self.values.extend([r.value for r in records])
        self.offsets.extend([r.offset for r in records])
        self.times.extend([r.timestamp for r in records])
        self.partitions.extend([partition] * len(records))


def decode_chunk(chunk: Chunk, kind: RecordKind, accept: EventTimeWindow | None = None
                 ) -> pd.DataFrame:
    """:func:`sensorlib.replay.decode.decode` of the chunk plus its ``partition`` and ``offset``
    (readings judged as the processor does: ``accept`` around each record's time)."""
    frame = decode(chunk.values, kind, record_ms=chunk.times, accept=accept)
    frame["partition"] = np.asarray(chunk.partitions, dtype=np.int32)
    frame["offset"] = np.asarray(chunk.offsets, dtype=np.int64)
    return frame


def accept_of(settings: Settings) -> EventTimeWindow:
    """The accepted event-time window of the settings (the processor's)."""
    return EventTimeWindow(settings.max_past, settings.max_future)


def _show_progress(progress: bool | None, total: int) -> bool:
    if progress is not None:
        return progress
    return total > PROGRESS_THRESHOLD and sys.stderr.isatty()


def fetch(settings: Settings, topic: str, start: pd.Timestamp | None, kind: RecordKind, *,
          progress: bool | None, slack: timedelta, timeout: float,
          offsets: dict[int, int] | None = None) -> list[pd.DataFrame]:
    """Read ``topic`` from ``start`` (record time, minus ``slack``) to its current end.

    With ``offsets`` (partition -> first offset, e.g. where the archive ends) the read
    starts there instead; partitions not in it are read from their beginning. Returns
    the decoded chunks (no chunk when there is nothing to read).

    Raises:
        ReplayError: the topic does not exist.
        KafkaUnavailable: Kafka does not answer (or no record arrives for ``timeout`` s).
    """
    accept = accept_of(settings)
    since_ms = (None if start is None or offsets is not None
                else int((start - pd.Timedelta(slack)).timestamp() * 1000))
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sensorlib-replay")
    futures: list[Future[pd.DataFrame]] = []
    pending: list[Chunk] = []
    bar = None
    reader = TopicReader(settings, topic, since_ms=since_ms, offsets=offsets,
                         idle_timeout=timeout, client_id=f"sensorlib-replay-{kind.name}s",
                         **CONSUMER_OPTIONS)
    try:
        with reader:
            if not reader.exists:
                raise ReplayError(f"topic {topic!r} does not exist at "
                                  f"{settings.bootstrap_servers}; create the topics with "
                                  "`sensorlib topics` (or check SENSORLIB_TOPIC_READINGS / "
                                  "SENSORLIB_TOPIC_ALERTS)")
            total = reader.total
            if total == 0:
                return []
            if _show_progress(progress, total):
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="rec", unit_scale=True, desc=f"replay {topic}")
            # Small enough that the last chunk, decoded after the final poll, is quick.
            chunk_size = min(CHUNK, max(2_000, total // 10))
            chunk = Chunk()
            for partition, records in reader:
                chunk.add(partition, records)
                if bar is not None:
                    bar.update(len(records))
                if len(chunk.values) >= chunk_size:
                    if OVERLAP:
                        futures.append(pool.submit(decode_chunk, chunk, kind, accept))
                    else:
                        pending.append(chunk)
                    chunk = Chunk()
            if chunk.values:
                pending.append(chunk)
        return [f.result() for f in futures] + [decode_chunk(c, kind, accept) for c in pending]
    finally:
        if bar is not None:
            bar.close()
        pool.shutdown(wait=True, cancel_futures=True)


def tail(settings: Settings, topic: str, kind: RecordKind, *, seconds: float,
         since_ms: int | None, max_records: int) -> list[pd.DataFrame]:
    """What arrives on ``topic`` in the next ``seconds`` (from ``since_ms`` on, if given),
    at most about ``max_records`` records, decoded (no chunk when nothing arrived)."""
    chunk = Chunk()
    with TopicReader(settings, topic, follow=seconds, client_id="sensorlib-tail",
                     last=0 if since_ms is None else None,  # from now on, unless since
                     since_ms=since_ms, **CONSUMER_OPTIONS) as reader:
        if not reader.exists:
            raise ReplayError(f"topic {topic!r} does not exist at {settings.bootstrap_servers}")
        for partition, records in reader:
            chunk.add(partition, records)
            if len(chunk.values) >= max_records:
                break
    return [decode_chunk(chunk, kind, accept_of(settings))] if chunk.values else []


def newest(settings: Settings, topic: str, *, since_ms: int, seconds: float,
           max_records: int) -> tuple[Chunk, int]:
    """What arrived on ``topic`` from ``since_ms`` (record time) on, then ``seconds`` more
    of tailing; and how many records had arrived since ``since_ms`` when the call began.

    When more than ``max_records`` had arrived, only the newest ``max_records`` of them are
    read, taken from each partition in proportion to what it holds. No consumer group.

    Raises:
        ReplayError: ``topic`` does not exist.
    """
    options: dict[str, Any] = {"client_id": "sensorlib-live", **CONSUMER_OPTIONS}
    with TopicReader(settings, topic, since_ms=max(0, since_ms), **options) as probe:
        if not probe.exists:
            raise ReplayError(f"topic {topic!r} does not exist at {settings.bootstrap_servers}")
        begin, end, available = dict(probe.begin), probe.end, probe.total
    if available > max_records:  # keep the newest, in proportion per partition
        for p, first in list(begin.items()):
            share = math.ceil(max_records * (end[p] - first) / available)
            begin[p] = max(first, end[p] - share)
    chunk = Chunk()
    with TopicReader(settings, topic, offsets=begin, follow=seconds, **options) as reader:
        for partition, records in reader:
            chunk.add(partition, records)
    return chunk, available
