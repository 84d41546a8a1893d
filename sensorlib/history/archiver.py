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

Several archivers: ``sensorlib archive`` instances (or ``--workers N``) in one consumer
group split the partitions. Each commits its own partitions' offsets with its rows through
Iceberg's optimistic commit (refreshed and retried on a conflict); every commit records
the newest offset of each partition, checked against the table at commit time, so rows at
or below what the table already covers are dropped: a partition revoked in a rebalance
mid-batch is archived once, by whichever owner commits it first. On each assignment the
archiver re-reads the tables' offsets before consuming a newly assigned partition. With
``until_caught_up`` it reads every partition itself (no group membership).

Cluster identity: each table records the Kafka cluster id (and the topic) it archives; an
archiver pointed at another cluster with a topic of the same name stops with a
:class:`~sensorlib.errors.ClusterMismatch` naming both clusters.

>>> Archiver(Settings.from_env()).run(until_caught_up=True)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from sensorlib.config import Settings
from sensorlib.errors import ArchiveError, ClusterMismatch, KafkaUnavailable
from sensorlib.history.batches import Chunk, TopicState
from sensorlib.history.query import (
    KINDS,
    NAMESPACE,
    TableKind,
    table_name,
)
from sensorlib.history.writer import Writer, can_fork_writer
from sensorlib.kafka.clients import RebalanceQueue, subscribe
from sensorlib.kafka.fetch import CONSUMER_OPTIONS
from sensorlib.observe.metrics import ArchiverMetrics

__all__ = ["ArchiveError", "Archiver"]

log = logging.getLogger("sensorlib.history.archiver")

DEFAULT_BATCH_ROWS = 100_000
DEFAULT_BATCH_SECONDS = 30.0
#: Batches handed to the writer and not yet committed (one being written, one queued):
#: bounds memory while the consumer runs ahead.
MAX_IN_FLIGHT = 2
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

#: The replay's consumer options (one place: :data:`sensorlib.kafka.fetch.CONSUMER_OPTIONS`),
#: with a shorter fetch wait so that a quiet topic still flushes batches on time.
_CONSUMER = {**CONSUMER_OPTIONS, "fetch_max_wait_ms": 200}
#: In a consumer group (the service): a dead member's partitions move after 10 s; the
#: rebalance timeout (``max_poll_interval_ms``) bounds how long the group waits for a member
#: that is settling its batches (a few commits) before it rejoins.
_GROUP = {"session_timeout_ms": 10_000, "heartbeat_interval_ms": 2_000,
          "max_poll_interval_ms": 60_000}



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
        if writer == "process" and not can_fork_writer():
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
        self.topics: dict[str, TopicState] = {}
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
        self._rebalance: RebalanceQueue | None = None
        #: Rebalances handled (assignments received) since start.
        self.rebalances = 0
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
        from sensorlib.kafka.admin import kafka_reachable

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
            "rebalances": self.rebalances,
            "assignedPartitions": {t.topic: sorted(t.covered) for t in list(self.topics.values())},
            "warehouse": str(self.settings.warehouse),
            "tables": {t.topic: {"table": f"{NAMESPACE}.{table_name(t.topic)}",
                                 "archived": t.archived, "invalid": t.invalid,
                                 "duplicates": t.duplicates,
                                 "skipped": t.skipped, "conflicts": t.conflicts,
                                 "commits": t.commits, "pending": len(t.batch),
                                 "lag": self.lag.get(t.topic),
                                 "lastCommit": t.last_commit.isoformat() if t.last_commit else None}
                       for t in list(self.topics.values())},
        }
        return healthy, body

    # -- running -------------------------------------------------------------------------

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
        delay = RETRY_FIRST
        while True:
            started = time.monotonic()
            try:
                return self._session(stop, until_caught_up=until_caught_up, timeout=timeout)
            except Exception as exc:  # crash-only: restart the session
                if until_caught_up or stop.is_set() or isinstance(exc, ClusterMismatch):
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

    def _session(self, stop: threading.Event, *, until_caught_up: bool,
                 timeout: float) -> dict[str, int]:
        """One writer and one consumer, from the tables' snapshot offsets until ``stop``
        (or caught up) or the first failure (raised)."""
        from sensorlib.kafka.clients import make_consumer

        consumer = None
        writer: Writer | None = None
        self.state = "starting"
        try:
            # The writer first: forked before the consumer starts its threads.
            writer = Writer(self.settings, process=self.writer == "process")
            options = _CONSUMER if until_caught_up else {**_CONSUMER, **_GROUP}
            consumer = make_consumer(self.settings, group_id=self.group,
                                     client_id="sensorlib-archiver", **options)
            if until_caught_up:  # every partition, read by this archiver alone
                parts = self._assign(consumer, writer)
                targets = consumer.end_offsets(parts)
            else:  # the group's share: partitions come with each assignment
                self._subscribe(consumer, writer)
                targets = {}
            self.state, self.retry_at = "running", None
            self.last_poll = self.answered = self.progress_at = time.monotonic()
            self.probe_error = None
            self.commit_failed_since = self.commit_error = None
            if self.restarts:
                log.info("archiving again (restart %d)", self.restarts)
            idle_since = time.monotonic()
            while not stop.is_set():
                got = self._poll(consumer, writer)
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

    def _open(self, consumer: Any, writer: Writer) -> dict[str, dict[int, int]]:
        """Open the tables (the writer creates them if needed and checks they archive this
        Kafka cluster's topics) while the consumer connects; the topics must exist.
        Returns the offsets the tables cover; every topic's state starts with no partition."""
        from sensorlib.kafka.admin import cluster_id

        writer.send(("open", [kind.name for kind in self.kinds], cluster_id(self.settings)))
        for kind in self.kinds:
            topic = kind.topic(self.settings)
            if not consumer.partitions_for_topic(topic):
                raise ArchiveError(f"topic {topic!r} does not exist at "
                                   f"{self.settings.bootstrap_servers}; create the topics with "
                                   "`sensorlib topics`")
        opened = writer.opened()
        for kind in self.kinds:
            topic = kind.topic(self.settings)
            state = TopicState(kind, topic, {})
            old = self.topics.get(topic)
            if old is not None:  # a restart: the counters go on
                state.archived, state.invalid = old.archived, old.invalid
                state.duplicates, state.skipped = old.duplicates, old.skipped
                state.conflicts = old.conflicts
                state.commits, state.last_commit = old.commits, old.last_commit
            self.topics[topic] = state
        return opened

    def _seek(self, consumer: Any, tps: list[TopicPartition],
              offsets: dict[str, dict[int, int]]) -> None:
        """Seek each partition to the offset the tables cover (its beginning if none, or if
        retention deleted it) and make it this archiver's."""
        firsts = consumer.beginning_offsets(tps)
        for tp in tps:
            start = offsets.get(tp.topic, {}).get(tp.partition, firsts[tp])
            if start < firsts[tp]:
                log.warning("%s partition %d: offsets %d..%d were deleted by retention "
                            "before they were archived", tp.topic, tp.partition, start,
                            firsts[tp] - 1)
                start = firsts[tp]
            consumer.seek(tp, start)
            self.topics[tp.topic].covered[tp.partition] = start
        for topic in sorted({tp.topic for tp in tps}):
            log.info("archiving %s into %s.%s from offsets %s", topic, NAMESPACE,
                     table_name(topic), {tp.partition: consumer.position(tp)
                                         for tp in tps if tp.topic == topic})

    def _assign(self, consumer: Any, writer: Writer) -> list[TopicPartition]:
        """Assign every partition and seek to the offsets the tables cover."""
        opened = self._open(consumer, writer)
        parts = [TopicPartition(topic, p) for topic in self.topics
                 for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        self._seek(consumer, parts, opened)
        return parts

    def _subscribe(self, consumer: Any, writer: Writer) -> None:
        """Join the group: partitions come with assignments (:meth:`_rebalanced`)."""
        self._open(consumer, writer)
        self._rebalance = RebalanceQueue()
        subscribe(consumer, list(self.topics), listener=self._rebalance)

    def _rebalanced(self, consumer: Any, writer: Writer,
                    events: list[tuple[list[TopicPartition], list[TopicPartition]]]
                    ) -> set[TopicPartition]:
        """After a rebalance: commit what was read (a partition's new owner drops what is
        archived already), then seek each newly assigned partition to the offsets the
        tables cover now (another archiver may have archived it until now). Returns the
        partitions whose records of this poll must be dropped (read from elsewhere)."""
        revoked = {tp for lost, _ in events for tp in lost}
        assigned = {tp for _, got in events for tp in got}
        for state in self.topics.values():
            while len(state.batch):
                self._submit(state, writer)
        while writer.pending:
            self._settle(consumer, writer, timeout=None)
        now = set(consumer.assignment())
        for tp in revoked - now:
            self.topics[tp.topic].covered.pop(tp.partition, None)
        fresh = sorted(assigned & now)
        if fresh:
            wanted: dict[str, list[int]] = {}
            for tp in fresh:
                wanted.setdefault(tp.topic, []).append(tp.partition)
            self._seek(consumer, fresh, writer.resume(wanted))
        self.rebalances += 1
        log.info("rebalance: %d partition(s) now (%d revoked, %d assigned)", len(now),
                 len(revoked), len(assigned))
        return revoked | assigned

    def _poll(self, consumer: Any, writer: Writer) -> int:
        got = 0
        polled = consumer.poll(timeout_ms=500)
        events = self._rebalance.drain() if self._rebalance is not None else []
        if events:
            touched = self._rebalanced(consumer, writer, events)
            polled = {tp: records for tp, records in polled.items() if tp not in touched}
        for tp, records in polled.items():
            self.topics[tp.topic].batch.add(Chunk.pack(tp.partition, records))
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

    def _submit(self, state: TopicState, writer: Writer) -> None:
        """Hand (at most ``batch_rows`` of) the batch to the writer, in order, with the
        offsets its partitions end at."""
        batch = state.batch.take(self.batch_rows)
        covered: dict[int, int] = {}
        for chunk in batch.chunks:  # offsets rise within a partition
            covered[chunk.partition] = int(chunk.offsets[-1]) + 1
        for partition, offset in covered.items():
            if partition in state.covered:
                state.covered[partition] = max(state.covered[partition], offset)
        writer.submit(state, batch, covered)

    def _settle(self, consumer: Any, writer: Writer, *, timeout: float | None) -> None:
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


