"""The archiver's writer: decode + Parquet + Iceberg commit, strictly in order, in a forked
process tied to its parent's life (Linux ``PR_SET_PDEATHSIG``) or a thread."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from sensorlib.config import Settings
from sensorlib.errors import ArchiveError
from sensorlib.history.query import (
    BY_NAME,
    READINGS,
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


def can_fork_writer() -> bool:
    """Whether this platform can run the writer as a process (fork and PR_SET_PDEATHSIG)."""
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
                for kind in kinds:
                    tables[kind.topic(settings)] = open_table(settings, kind)
                    if kind is READINGS:
                        retries = Retries.from_table(tables[kind.topic(settings)],
                                                      retry_span_ms(settings))
                replies.send(("opened", {t: snapshot_offsets(table) for t, table in tables.items()}))
                continue
            from pyiceberg.exceptions import CommitFailedException

            topic, kind_name, covered, batch = message
            kind = BY_NAME[kind_name]
            table, invalid, duplicates = decode_batch(kind, batch, accept_of(settings), retries)
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

    def opened(self) -> dict[str, dict[int, int]]:
        """The answer to ``("open", …)``: topic -> the offsets the tables' snapshots cover."""
        try:
            reply = self._replies.recv()
        except (EOFError, OSError):
            raise ArchiveError("the archive writer died while opening the tables") from None
        if reply[0] == "error":
            raise ArchiveError(f"opening the archive failed: {reply[1]}")
        return reply[1]

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
