"""The archiver's writer: decode + Parquet + Iceberg commit, strictly in order, in a forked
process tied to its parent's life (Linux ``PR_SET_PDEATHSIG``) or a thread."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import random
import signal
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from sensorlib.config import Settings
from sensorlib.errors import ArchiveError, ClusterMismatch
from sensorlib.history.query import (
    BY_NAME,
    CLUSTER_PROPERTY,
    READINGS,
    check_cluster,
    offsets_property,
    open_table,
    snapshot_offsets,
)
from sensorlib.kafka.fetch import accept_of

log = logging.getLogger("sensorlib.history.archiver")

from sensorlib.history.batches import Batch, Retries, TopicState, decode_batch, retry_span_ms

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
# Several archivers (one consumer group, each its own partitions) commit to the same tables
# through Iceberg's optimistic commit: each commit first reads the offsets the table covers
# and drops the rows at or below them (commit_batch), so a writer that lost a partition in a
# rebalance — or a SIGKILLed archiver's writer still finishing its commit — never archives a
# record twice, and never leaves a gap (its batch starts at or below the table's offsets:
# its previous batch of that partition was committed, or dropped as already archived).
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


def can_fork_writer() -> bool:
    """Whether this platform can run the writer as a process (fork and PR_SET_PDEATHSIG)."""
    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


#: Commit attempts of one batch (each after a conflict: another archiver or a compaction
#: committed first; the table is refreshed and its offsets checked again).
COMMIT_ATTEMPTS = 40


def _new_rows(rows: pa.Table, committed: dict[int, int]) -> np.ndarray | None:
    """Which rows are beyond the offsets the table already covers (None: all of them)."""
    if not committed or not rows.num_rows:
        return None
    parts = rows["kafka_partition"].to_numpy()
    offsets = rows["kafka_offset"].to_numpy()
    floor = np.full(max(int(parts.max()), max(committed)) + 1, -1, dtype=np.int64)
    for partition, offset in committed.items():
        floor[partition] = offset
    keep = offsets >= floor[parts]
    return None if keep.all() else keep


def commit_batch(target: Any, rows: pa.Table, topic: str, covered: dict[int, int],
                 attempts: int = COMMIT_ATTEMPTS) -> tuple[Any, int, int, int]:
    """Append a batch's rows with the offsets they end at, exactly once among several
    writers: Iceberg's optimistic commit, checked and retried.

    Each attempt reads the offsets the table (as of its current snapshot) covers, drops
    the rows at or below them (another archiver, which took the partition over, archived
    them already), records the merged offsets (each partition's newest) and commits; a
    conflict (pyiceberg's ``CommitFailedException``: someone committed in between)
    refreshes the table and tries again. The Parquet files are written once and reused
    while the rows kept stay the same. Returns (the table, rows committed, rows dropped
    as already archived, conflicts).
    """
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    files: list[Any] | None = None
    written_for: np.ndarray | None = None
    conflicts = 0
    for attempt in range(attempts):
        committed = snapshot_offsets(target)
        keep = _new_rows(rows, committed)
        merged = dict(committed)
        for partition, offset in covered.items():
            merged[partition] = max(merged.get(partition, 0), offset)
        chosen = rows if keep is None else rows.filter(pa.array(keep))
        if merged == committed and not chosen.num_rows:
            return target, 0, rows.num_rows, conflicts  # all of it is archived already
        same = (keep is None and written_for is None) or (
            keep is not None and written_for is not None and np.array_equal(keep, written_for))
        if files is None or not same:
            files = list(_dataframe_to_data_files(
                table_metadata=target.metadata, write_uuid=uuid.uuid4(), df=chosen,
                io=target.io)) if chosen.num_rows else []
            written_for = keep
        merge = str(target.properties.get("commit.manifest-merge.enabled", "false")) == "true"
        try:
            with target.transaction() as tx:
                update = tx.update_snapshot(snapshot_properties=offsets_property(topic, merged))
                with update.merge_append() if merge else update.fast_append() as append:
                    for file in files:
                        append.append_data_file(file)
            return target, chosen.num_rows, rows.num_rows - chosen.num_rows, conflicts
        except CommitFailedException:
            conflicts += 1
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0, min(0.5, 0.02 * (attempt + 1))))
            target = target.refresh()
    raise AssertionError("unreachable")  # pragma: no cover


def _open_tables(settings: Settings, kinds: list[Any], cluster: str | None
                 ) -> dict[str, Any]:
    """Open (create) the tables, check they archive this Kafka cluster's topics
    (:func:`~sensorlib.history.query.check_cluster`) and record the cluster where not yet."""
    from pyiceberg.exceptions import CommitFailedException

    tables: dict[str, Any] = {}
    for kind in kinds:
        topic = kind.topic(settings)
        table = open_table(settings, kind)
        for _ in range(COMMIT_ATTEMPTS):
            check_cluster(table, topic, cluster, settings.bootstrap_servers)
            if cluster is None or table.properties.get(CLUSTER_PROPERTY) == cluster:
                break
            try:
                with table.transaction() as tx:
                    tx.set_properties({CLUSTER_PROPERTY: cluster})
                table = table.refresh()
                break
            except CommitFailedException:
                table = table.refresh()
        tables[topic] = table
    return tables


def _writer_loop(requests: Any, replies: Any, settings: Settings, parent: int | None,
                 others: tuple[Any, ...] = ()) -> None:
    """The writer. ``("open", kind names, cluster id)`` opens the tables (checking the
    Kafka cluster they archive) and answers ``("opened", {topic: offsets covered})``;
    ``("resume", {topic: partitions})`` re-reads the tables (another archiver may have
    archived those partitions until now) and answers ``("resumed", {topic: offsets})``;
    ``(topic, kind, covered, batch)`` messages are appended, each to its table with its
    offsets (:func:`commit_batch`), answering ``("done", rows, invalid, time, duplicates,
    skipped, conflicts)``. After an error it answers ``("error", message)`` (``"fatal"``:
    the archive is another cluster's) and stops. ``None`` (or a closed pipe) ends the loop.
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
    retries = Retries(retry_span_ms(settings))
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
                tables = _open_tables(settings, kinds, message[2])
                if READINGS in kinds:
                    retries = Retries.from_table(tables[READINGS.topic(settings)],
                                                 retry_span_ms(settings))
                replies.send(("opened", {t: snapshot_offsets(table) for t, table in tables.items()}))
                continue
            if message[0] == "resume":  # partitions newly assigned: the tables as they are now
                answer = {}
                for topic, partitions in message[1].items():
                    tables[topic] = tables[topic].refresh()
                    if topic == READINGS.topic(settings) and partitions:
                        retries.reload(tables[topic], set(partitions))
                    answer[topic] = snapshot_offsets(tables[topic])
                replies.send(("resumed", answer))
                continue
            topic, kind_name, covered, batch = message
            kind = BY_NAME[kind_name]
            table, invalid, duplicates = decode_batch(kind, batch, accept_of(settings), retries)
            tables[topic], rows, skipped, conflicts = commit_batch(tables[topic], table, topic,
                                                                   covered)
            replies.send(("done", rows, invalid, datetime.now(UTC), duplicates, skipped,
                          conflicts))
        except BaseException as exc:  # noqa: BLE001 - reported to the archiver, then stop
            try:
                replies.send(("fatal" if isinstance(exc, ClusterMismatch) else "error",
                              f"{type(exc).__name__}: {exc}" if not isinstance(
                                  exc, ClusterMismatch) else str(exc)))
            except (OSError, ValueError):
                pass
            return


class Writer:
    """The writer (process or thread) and the batches handed to it, oldest first.

    Batches are sent by a thread of their own: a pipe holds 64 KiB, so a send blocks
    until the writer reads it — after its previous commit — and the consumer must not.
    """

    def __init__(self, settings: Settings, *, process: bool) -> None:
        their_in, self._requests = multiprocessing.Pipe(duplex=False)
        self._replies, their_out = multiprocessing.Pipe(duplex=False)
        self.pending: list[tuple[TopicState, dict[int, int]]] = []
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

    def _reply(self, doing: str) -> Any:
        try:
            reply = self._replies.recv()
        except (EOFError, OSError):
            raise ArchiveError(f"the archive writer died while {doing}") from None
        if reply[0] == "fatal":
            raise ClusterMismatch(reply[1])
        if reply[0] == "error":
            raise ArchiveError(f"{doing} failed: {reply[1]}")
        return reply[1]

    def opened(self) -> dict[str, dict[int, int]]:
        """The answer to ``("open", …)``: topic -> the offsets the tables' snapshots cover.

        Raises:
            ClusterMismatch: the archive holds another Kafka cluster's topic.
        """
        return self._reply("opening the archive")

    def resume(self, partitions: dict[str, list[int]]) -> dict[str, dict[int, int]]:
        """The tables' offsets now (topic -> partition -> next offset), re-read for
        ``partitions`` newly assigned to this archiver; call with no batch pending."""
        assert not self.pending, "resume() after every pending batch is settled"
        self.send(("resume", partitions))
        return self._reply("re-reading the archive's offsets")

    def submit(self, state: TopicState, batch: Batch, covered: dict[int, int]) -> None:
        self.send((state.topic, state.kind.name, covered, batch))
        self.pending.append((state, covered))

    def answer(self, timeout: float | None) -> tuple[TopicState, dict[int, int]] | None:
        """The oldest batch once committed (its stats updated), None if not yet; raises
        :class:`ArchiveError` if the writer failed or died."""
        if not self.pending or not self._replies.poll(timeout):
            return None
        try:
            reply = self._replies.recv()
        except (EOFError, OSError):
            raise ArchiveError("the archive writer died; the tables hold everything "
                               "committed so far (a restart resumes from there)") from None
        if reply[0] in ("error", "fatal"):
            raise ArchiveError(f"writing the archive failed: {reply[1]}")
        state, covered = self.pending.pop(0)
        _, rows, invalid, when, duplicates, skipped, conflicts = reply
        state.archived += rows
        state.invalid += invalid
        state.duplicates += duplicates
        state.skipped += skipped
        state.conflicts += conflicts
        state.commits += 1
        state.last_commit = when
        if invalid:
            log.warning("%d invalid record(s) of %s were not archived", invalid, state.topic)
        if skipped:
            log.info("%d record(s) of %s were archived already (by the partition's previous "
                     "owner) and were not archived again", skipped, state.topic)
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
