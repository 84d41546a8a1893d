"""The processor loop: consume → aggregate → detect → publish alerts → commit, exactly once.

Each poll's batch runs in one Kafka transaction: the alerts it caused, the dead letters
for records that failed validation, and the consumer offsets are committed together
(``send_offsets_to_transaction``), so a ``read_committed`` reader sees every alert
exactly once even if the processor is killed at any point. State (windows, cooldowns)
is kept per assigned partition and rebuilt from the last window of history on every
assignment, so aggregates are right at once after a restart and nothing is published
twice. Any Kafka failure ends the session; the next session starts from the last
committed transaction (crash-only design: one recovery path, the same as a restart).

A reading whose event time lies outside the accepted window around its record's Kafka
timestamp (``SENSORLIB_MAX_PAST`` / ``SENSORLIB_MAX_FUTURE``) is a dead letter like any
invalid record: judged by the record's own time, the decision is the same on every
re-processing. ``/health`` is honest: it fails while the loop is down or restarting,
while the processor owns no partition although the group leaves some unowned, and while
readings wait but no transaction has committed for a while (see :meth:`Processor.problems`).

Throughput comes from working a poll at a time: the consumer's record batches are unpacked
by :mod:`sensorlib.kafka.records` (plain tuples), canonical readings are judged in one call
(:func:`~sensorlib.model.events.judge_canonical_many`), and each sensor's in-order run goes through
its window and the rules at once (:meth:`Pipeline.process_batch_us
<sensorlib.engine.pipeline.Pipeline.process_batch_us>`, :mod:`sensorlib.engine.runs`). Each fast path is
held to the one-record-at-a-time path by a differential test.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from kafka import OffsetAndMetadata, TopicPartition

from sensorlib.config import Settings
from sensorlib.engine.dedup import SeenEvents
from sensorlib.engine.detect import RuleConfig
from sensorlib.engine.pipeline import DEFAULT_TICK as TICK_EVERY
from sensorlib.engine.pipeline import Pipeline
from sensorlib.engine.recent import RecentById
from sensorlib.errors import RebalanceStuck
from sensorlib.kafka.admin import group_unowned_partitions
from sensorlib.kafka.clients import (
    RebalanceQueue,
    client_errors,
    make_consumer,
    make_producer,
    subscribe,
)
from sensorlib.kafka.records import as_raw, consumer_record
from sensorlib.kafka.records import install as install_fast_records
from sensorlib.kafka.ruletable import NoRulesTopic, RulesFollower
from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.model.events import Alert, LiveReading, Reading
from sensorlib.model.gate import judge, judge_many
from sensorlib.model.rejections import FieldError, InvalidReading
from sensorlib.model.times import EPOCH, format_timestamp, to_us, utcnow
from sensorlib.observe.metrics import ProcessorMetrics
from sensorlib.observe.tracing import AlertTracer, context_headers, tracing_enabled
from sensorlib.processor.checkpoint import Checkpoint
from sensorlib.processor.isolation import Suspects, poisoned
from sensorlib.processor.warmup import (
    WARM_EXTRA,
    first_copy,
    read_history,
    read_recent_alerts,
    warm_span,
)
from sensorlib.rules.table import RulesTable

log = logging.getLogger("sensorlib.processor.loop")

# Fields of a records.Raw tuple (and the event time of a judged reading, also at 1).
_TIME, _VALUE, _HEADERS = itemgetter(1), itemgetter(3), itemgetter(4)

#: Records per poll, i.e. per transaction, when readings wait (a backlog): each transaction
#: costs a few round trips and some bookkeeping; 20,000 was measured ~20 % faster than
#: 5,000 (and no slower than 50,000). Without a backlog a poll returns what has arrived.
MAX_RECORDS = 20_000
#: Bytes fetched per partition per request: big enough that a poll is rarely short.
FETCH_BYTES = 4 * 1024 * 1024
#: How long a problem may last before ``/health`` reports it (a rebalance or a restart
#: after a broker blip is normal for a few seconds).
HEALTH_GRACE = 30.0
#: Readings waiting this long with no committed transaction make the processor unhealthy.
STALL_AFTER = 60.0
#: Seconds between looks for a missing ``sensor-rules`` topic.
RULES_RETRY = 10.0


def rules_from_settings(settings: Settings) -> RuleConfig:
    """The rule configuration implied by the settings (thresholds from env vars)."""
    return RuleConfig(
        temperature_threshold=settings.temperature_threshold,
        humidity_threshold=settings.humidity_threshold,
    )


@dataclass
class ProcessorStats:
    """Counters shown by ``/health`` and ``sensorlib status``."""

    processed: int = 0
    invalid: int = 0
    alerts: int = 0
    duplicates: int = 0
    transactions: int = 0
    sessions: int = 0
    warmed: int = 0
    isolations: int = 0
    last_commit: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    session_started: float | None = None
    unassigned_since: float | None = None
    unowned: int = 0
    lag: int = 0
    assigned: list[int] = field(default_factory=list)


class Processor:
    """The stateful stream processor behind ``sensorlib processor``.

    Args:
        settings: topics, group and thresholds.
        instance: distinguishes processors of one group (the transactional id is
            ``<group>-<instance>``, stable across restarts so a restarted instance fences
            its predecessor's unfinished transaction at once).
        rules: detector configuration (default: from the settings' thresholds).
        max_records: records per poll, i.e. per transaction.
        metrics: where the loop counts (default: a registry of its own); updated once per
            transaction, never per record.

    A record with an ``eventId`` header whose (sensorId, eventId) pair came in the last
    window + :data:`WARM_EXTRA` of record time is a retry: it is dropped (counted in
    ``stats.duplicates``), its offset committed (:mod:`sensorlib.engine.dedup`).

    A reading that causes an alert may carry a W3C ``traceparent`` header: the alert is
    published with a header continuing that trace (a span of its own when tracing is on,
    :mod:`sensorlib.observe.tracing`; the reading's context unchanged when it is off).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        instance: str = "1",
        rules: RuleConfig | None = None,
        max_records: int = MAX_RECORDS,
        alert_history: int = 1000,
        clock: Callable[[], datetime] = utcnow,
        metrics: ProcessorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ProcessorMetrics()
        self.instance = instance
        #: The settings the ``sensor-rules`` table's layers go over.
        self.base_rules = rules or rules_from_settings(settings)
        #: The table in force (read at each session's start, followed while it runs) and
        #: the configuration it makes; alerts carry ``rules_table.version``.
        self.rules_table = RulesTable()
        self.rules = self.base_rules
        self._rules_version: str | None = None
        self.max_records = max_records
        self.clock = clock
        self.window = timedelta(seconds=settings.window_seconds)
        self.accept = EventTimeWindow(settings.max_past, settings.max_future)
        self._accept_us = self.accept.bounds_us(0)
        self.stats = ProcessorStats()
        self._pipelines: dict[TopicPartition, Pipeline] = {}
        self._seen: dict[TopicPartition, SeenEvents] = {}
        self._fast_records = False  # per session: see sensorlib.kafka.records
        self._suspects = Suspects()  # polls that failed on their data
        self._backfilling: threading.Thread | None = None  # see run()
        self._dedup_span_ms = int((self.window + WARM_EXTRA).total_seconds() * 1000)
        self._lock = threading.Lock()
        self._aggregates: list[dict[str, Any]] = []
        # Committed alerts for /api/alerts (also the "published already" check below).
        self._alerts: RecentById[dict[str, Any]] = RecentById(alert_history,
                                                              key=lambda a: a["alertId"])
        self._healthy = False
        self._consumer: Any = None
        self._producer: Any = None
        self._watermark_wall: dict[TopicPartition, tuple[datetime, float]] = {}
        self._last_group_check = 0.0

    # -- read side (HTTP threads) ------------------------------------------

    def aggregates(self) -> list[dict[str, Any]]:
        """The latest committed per-sensor aggregates (a copy; safe from any thread)."""
        with self._lock:
            return list(self._aggregates)

    def alerts(self, limit: int = 100, sensor_id: str | None = None) -> list[dict[str, Any]]:
        """Recent committed alerts, newest first, optionally for one sensor."""
        items = self._alerts.newest_first()
        if sensor_id is not None:
            items = [a for a in items if a["sensorId"] == sensor_id]
        return items[:limit]

    def problems(self, now: float | None = None) -> list[str]:
        """Why the processor is not doing its job, one sentence each (empty when healthy).

        ``now`` is :func:`time.time` (for tests). Each condition must hold for longer than
        :data:`HEALTH_GRACE` (stalls: :data:`STALL_AFTER`) before it counts.
        """
        now = time.time() if now is None else now
        st = self.stats
        out: list[str] = []
        if not self._healthy:
            out.append("the processing loop is not running (starting, or restarting after "
                       "an error)")
        if st.last_error_at is not None and now - st.last_error_at < HEALTH_GRACE:
            out.append(f"a session ended in an error {now - st.last_error_at:.0f}s ago: "
                       f"{st.last_error}")
        if (st.unassigned_since is not None and now - st.unassigned_since > HEALTH_GRACE
                and st.unowned):
            out.append(f"owns no partition for {now - st.unassigned_since:.0f}s while the "
                       f"group leaves {st.unowned} partition(s) unowned")
        since = max(filter(None, (st.last_commit, st.session_started)), default=None)
        if st.lag > 0 and since is not None and now - since > STALL_AFTER:
            out.append(f"no transaction committed for {now - since:.0f}s while "
                       f"{st.lag} reading(s) wait")
        return out

    def details(self) -> dict[str, Any]:
        """What ``/health`` shows besides the problems: assignment, lag, counters, errors."""
        st = self.stats
        return {
            "group": self.settings.processor_group,
            "instance": self.instance,
            "assignedPartitions": list(st.assigned),
            "lag": st.lag,
            "processed": st.processed,
            "invalid": st.invalid,
            "duplicates": st.duplicates,
            "isolations": st.isolations,
            "alerts": st.alerts,
            "transactions": st.transactions,
            "sessions": st.sessions,
            "lastCommit": _iso(st.last_commit),
            "lastError": st.last_error or client_errors.last(),
            "lastErrorAt": _iso(st.last_error_at),
        }

    # -- the loop ------------------------------------------------------------

    def run(self, stop: threading.Event, *, retry_delay: float = 1.0) -> None:
        """Process until ``stop`` is set, starting a fresh session after any Kafka failure."""
        # Read back the latest alerts while the first session joins its group; its first
        # batch waits for them (an alert read back is never published again).
        self._backfilling = threading.Thread(target=self._backfill_alerts,
                                             name="alerts-backfill", daemon=True)
        self._backfilling.start()
        while not stop.is_set():
            try:
                self._session(stop)
            except Exception as exc:  # noqa: BLE001 - crash-only: log, rebuild, go on
                self._healthy = False
                cause = client_errors.last()  # e.g. the SASL failure behind a timeout
                self.stats.last_error = f"{type(exc).__name__}: {exc}" + (
                    f" (client: {cause})" if cause and cause not in str(exc) else "")
                self.stats.last_error_at = time.time()
                log.warning("processor session ended (%s); restarting", self.stats.last_error)
                stop.wait(retry_delay)

    def _session(self, stop: threading.Event) -> None:
        s = self.settings
        self.stats.sessions += 1
        self.metrics.sessions.inc()
        self.stats.session_started = time.time()
        self.stats.unassigned_since = time.time()
        self.stats.unowned = 0
        client_errors.clear()
        producer = make_producer(
            s,
            client_id=f"sensorlib-processor-{self.instance}",
            transactional_id=f"{s.processor_group}-{self.instance}",
            transaction_timeout_ms=15000,
            max_block_ms=15000,
            linger_ms=0,  # a transaction's alerts go out at once: latency over batching
            # A transaction step refused with CONCURRENT_TRANSACTIONS (the previous
            # commit's markers still being written) is retried after this; the default
            # 100 ms put 100-300 ms tails on POST -> alert.
            retry_backoff_ms=20,
        )
        consumer = make_consumer(
            s,
            group_id=s.processor_group,
            client_id=f"sensorlib-processor-{self.instance}",
            isolation_level="read_committed",
            max_poll_records=self.max_records,
            max_partition_fetch_bytes=FETCH_BYTES,
            session_timeout_ms=10000,
            heartbeat_interval_ms=2000,
            # An idle fetch sometimes is not woken by a new reading and runs to this
            # wait (default 500 ms); 25 ms bounds that delay for 40 empty fetches/s.
            fetch_max_wait_ms=25,
            # Also the rebalance timeout: a member killed while its JoinGroup was pending
            # is not expired by the session timeout, and the group waits this long for it
            # (kafka-python's default is 5 minutes). A poll's work here takes well under 1 s.
            max_poll_interval_ms=30000,
        )
        self._consumer, self._producer = consumer, producer
        self._fast_records = install_fast_records(consumer)
        follower = None
        try:
            # The rule settings table, whole, before any reading: a restart judges what it
            # replays with the table as it is now (see README "Settings per sensor").
            follower = self._open_rules()
            retry_rules = time.monotonic() + RULES_RETRY
            rebalance = RebalanceQueue()
            subscribe(consumer, [s.topic_readings], listener=rebalance)
            while not stop.is_set():
                if follower is None:
                    if time.monotonic() > retry_rules:
                        follower = self._open_rules()
                        retry_rules = time.monotonic() + RULES_RETRY
                elif follower.poll():
                    self._apply_rules(follower.table)
                else:  # nothing new, or records that left the content as it was
                    self.rules_table = follower.table
                batch = consumer.poll(timeout_ms=200)
                # Rebalance callbacks run on kafka-python's IO thread, which must not
                # block: they only queue, and the state work happens here, before any
                # record of a newly assigned partition is processed.
                for revoked, assigned in rebalance.drain():
                    self.on_revoked(revoked)
                    self._suspects.forget(revoked)
                    self.on_assigned(assigned)
                self._healthy = True
                self._process_batch(batch)
                self._watch(consumer)
        finally:
            self._healthy = False
            with self._lock:
                self._pipelines.clear()
            try:
                consumer.close()
                if follower is not None:
                    follower.close()
            finally:
                producer.close(timeout=5)

    def _open_rules(self) -> RulesFollower | None:
        """Read the ``sensor-rules`` table to its end and put it in force; None (settings as
        configured, tried again every :data:`RULES_RETRY` s) when the topic does not exist."""
        try:
            follower = RulesFollower(self.settings, self.base_rules)
        except NoRulesTopic as exc:
            log.warning("no rule settings table: %s; the configured settings apply", exc)
            return None
        try:
            follower.catch_up()
        except Exception:
            follower.close()
            raise
        self._apply_rules(follower.table)
        return follower

    def _apply_rules(self, table: RulesTable) -> None:
        """Put the table's settings in force in every partition's pipeline, at once (between
        two transactions): each known sensor's settings are resolved again, rule state kept."""
        config = table.config(self.base_rules)
        version = table.version
        changed = []
        for pipeline in self._pipelines.values():
            changed += pipeline.reconfigure(config, version)
        self.rules, self._rules_version, self.rules_table = config, version, table
        if changed or table.layers:
            log.info("rule settings %s in force (table offset %d): %d sensor(s) changed",
                     version, table.offset, len(changed))

    def rules_view(self) -> dict[str, Any]:
        """``GET /api/rules``: the table (layers, version, offset), the defaults in force and
        each known sensor's effective settings (safe from any thread)."""
        from sensorlib.engine.detect import LAYERED
        from sensorlib.rules.table import settings_json

        table, config = self.rules_table, self.rules
        out = table.to_json()
        out["defaults"] = settings_json({k: getattr(config, k) for k in LAYERED})
        sensors = {}
        for aggregate in self.aggregates():
            sensor_id, location = aggregate["sensorId"], aggregate.get("location") or ""
            mine = config.for_sensor(sensor_id, location)
            sensors[sensor_id] = settings_json({k: getattr(mine, k) for k in LAYERED})
        out["sensors"] = sensors
        out["skipped"] = [{"offset": o, "why": why} for o, why in table.skipped]
        return out

    def _watch(self, consumer: Any) -> None:
        """Lag, and the stuck-consumer check: no partition while the group leaves some.

        kafka-python was seen (after crash loops) sitting in ``ensure_coordinator_ready``
        with no assignment for minutes; the session is then ended, so the next one starts
        with a fresh consumer. A member with nothing to own (more members than
        partitions) is not stuck.
        """
        st = self.stats
        assignment = consumer.assignment()
        lag = 0
        by_partition: dict[tuple[str, int], int] = {}
        for tp in assignment:
            high = consumer.highwater(tp)
            position = consumer.position(tp, timeout_ms=0) if high is not None else None
            if high is not None and position is not None:
                behind = max(0, high - position)
                by_partition[(tp.topic, tp.partition)] = behind
                lag += behind
        st.lag = lag
        self.metrics.set_lag(by_partition)
        now = time.time()
        if assignment:
            st.unassigned_since, st.unowned = None, 0
            return
        if st.unassigned_since is None:
            st.unassigned_since = now
            return
        waited = now - st.unassigned_since
        if waited <= HEALTH_GRACE or now - self._last_group_check < 10.0:
            return
        self._last_group_check = now
        st.unowned = group_unowned_partitions(self.settings, self.settings.processor_group,
                                              self.settings.topic_readings)
        if st.unowned:
            raise RebalanceStuck(f"owned no partition for {waited:.0f}s while the group left "
                               f"{st.unowned} unowned: starting a fresh consumer")

    def judge(self, record: Any, now_us: int
              ) -> tuple[Reading | LiveReading, int] | InvalidReading:
        """The record's reading and its event time (epoch µs), or why it is a dead letter:
        the one gate's verdict (:func:`sensorlib.model.gate.judge`), with the accepted event-time
        window around the record's Kafka timestamp (``now_us`` stands in for a record
        without one). Never raises."""
        return judge(record.value, record.timestamp, now_us=now_us, accept=self.accept)

    def accepted(self, record: Any) -> Reading | LiveReading | InvalidReading:
        """:meth:`judge` by the wall clock, without the event time."""
        got = self.judge(record, to_us(self.clock()))
        return got if isinstance(got, InvalidReading) else got[0]

    def _process_batch(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """One poll: judge, window and detect (:meth:`_prepare`), then one transaction
        (:meth:`_commit`). A record that makes either fail for a reason of its own (not
        Kafka's) is isolated by halves and dead-lettered (see :class:`Suspects`)."""
        if self._backfilling is not None:
            self._backfilling.join()
            self._backfilling = None
        if not self._fast_records:  # kafka-python's own records: the same tuples
            batch = {tp: [as_raw(r) for r in records] for tp, records in batch.items()}
        batch = self._suspects.limit(batch, self._consumer)
        if not any(batch.values()):
            self._commit(batch, self._prepare(batch, {}))
            return
        failed: BaseException | None = None
        try:
            self._commit(batch, self._prepare(batch, self._suspects.poison(batch)))
        except Exception as exc:
            if not poisoned(exc):
                raise
            failed = exc
        if failed is None:
            self._suspects.passed(batch)
            return
        log.warning("a poll of %d record(s) failed on its data (%s: %s): retrying it in "
                    "halves to find the record", sum(map(len, batch.values())),
                    type(failed).__name__, failed)
        self.stats.isolations += 1
        self._suspects.failed(batch, failed)
        # The failed attempt may have changed the windows: rebuild them from the committed
        # history, and read the poll again from the committed offsets.
        partitions = [tp for tp in batch if tp in self._pipelines]
        self.on_revoked(partitions)
        self.on_assigned(partitions)
        for tp in partitions:
            committed = self._consumer.committed(tp)
            self._consumer.seek(tp, committed if committed is not None else batch[tp][0][0])

    def _prepare(self, batch: dict[TopicPartition, list[Any]],
                 poison: dict[TopicPartition, tuple[int, str]]) -> Checkpoint:
        """Judge every record, run the windows and rules: the transaction's content.

        ``poison``: records isolated as the cause of a failure (offset and why), which are
        dead-lettered without being processed again."""
        out: list[Alert] = []
        dead: list[tuple[Any, Exception]] = []
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        caused: list[tuple[Any, list[Alert]]] = []  # (record, its alerts): for traces
        processed = duplicates = 0
        wall = self.clock()
        now_us = to_us(wall)
        for tp, records in batch.items():
            pipeline = self._pipelines.get(tp)
            if pipeline is None:  # revoked between poll and here
                continue
            seen = self._seen[tp]
            # Records are sensorlib.kafka.records.Raw tuples; the rare paths (dead letters,
            # alerts' traces) get kafka-python records.
            verdicts = judge_many(map(_VALUE, records), list(map(_TIME, records)),
                                  now_us=now_us, accept=self.accept)
            bad = poison.get(tp)
            if bad is None and not any(map(_HEADERS, records)) and all(
                    type(v) is tuple for v in verdicts):
                # The usual poll: every record a reading, none with headers (no event id
                # to de-duplicate by).
                judged: list[Any] = verdicts
                sources: list[Any] = records
            else:
                judged, sources = [], []
                for raw, got in zip(records, verdicts, strict=True):
                    if bad is not None and raw[0] == bad[0]:
                        got = InvalidReading([FieldError("body", bad[1])])
                    if type(got) is not tuple:
                        dead.append((consumer_record(tp.topic, tp.partition, raw), got))
                        continue
                    if raw[4] and not first_copy(seen, raw[4], raw[1], got[0]):
                        duplicates += 1
                        continue
                    judged.append(got)
                    sources.append(raw)
            # Ticks on event time inside the poll, as a replay ticks (a backlog's poll can
            # span an hour: every silence in it is seen, with the replay's alert ids).
            raised, ticked = pipeline.process_ticking(judged, TICK_EVERY, until=wall)
            out.extend(ticked)
            for i, found in raised:
                out.extend(found)
                caused.append((consumer_record(tp.topic, tp.partition, sources[i]), found))
            for i, refusal in pipeline.refused:  # a new sensor beyond SENSORLIB_MAX_SENSORS
                dead.append((consumer_record(tp.topic, tp.partition, sources[i]), refusal))
            processed -= len(pipeline.refused)
            processed += len(judged)
            if records:
                offsets[tp] = OffsetAndMetadata(records[-1][0] + 1, "", -1)
                last = pipeline.watermark
                if last is not None:
                    self._watermark_wall[tp] = (last, time.monotonic())
        out.extend(self._tick())
        # Alert ids are deterministic: one already published (seen live, or read back
        # from the alerts topic at start-up) is never published again.
        out = [a for a in out if a.alert_id not in self._alerts]
        if caused:
            kept = {a.alert_id for a in out}
            caused = [(r, new) for r, found in caused
                      if (new := [a for a in found if a.alert_id in kept])]
        return Checkpoint(out, dead, offsets, caused, processed, duplicates)

    def _commit(self, batch: dict[TopicPartition, list[Any]], checkpoint: Checkpoint) -> None:
        """Commit the poll's :class:`~sensorlib.processor.checkpoint.Checkpoint`: one transaction."""
        if not checkpoint:
            return
        s = self.settings
        spans = AlertTracer(s.topic_readings, s.topic_alerts) if tracing_enabled() else None
        caused, out, dead = checkpoint.caused, checkpoint.alerts, checkpoint.dead
        headers = self._alert_headers(caused, spans, batch) if caused or spans else {}
        started = time.perf_counter()
        try:
            checkpoint.commit(self._producer, self._consumer, s, headers)
        except Exception as failure:
            if spans is not None:
                spans.end(failure)
            raise
        processed = checkpoint.processed
        self.stats.transactions += 1
        self.stats.processed += processed
        self.stats.duplicates += checkpoint.duplicates
        self.stats.invalid += len(dead)
        self.stats.alerts += len(out)
        self.stats.last_commit = time.time()
        if spans is not None:
            spans.end()
        self.metrics.committed(processed=processed, dead=dead, alerts=out, started=started,
                               caused=caused)
        self._publish_state(out)

    def _alert_headers(self, caused: list[tuple[Any, list[Alert]]], spans: AlertTracer | None,
                       batch: dict[TopicPartition, list[Any]]) -> dict[str, Any]:
        """Each alert id's record headers continuing its reading's trace (if it had one)."""
        out: dict[str, Any] = {}
        if spans is None:  # not tracing: forward the reading's context unchanged
            for record, alerts in caused:
                if record.headers:
                    forwarded = context_headers(record.headers)
                    if forwarded:
                        out.update((a.alert_id, forwarded) for a in alerts)
            return out
        spans.batch((raw[4] for records in batch.values() for raw in records),
                    sum(map(len, batch.values())))
        for record, alerts in caused:
            out.update(spans.alerts(record, alerts))
        return out

    def _tick(self) -> list[Alert]:
        """Drive the silence rule: event time advanced by the wall time since it was seen.

        Live, this is the wall clock; replaying history at full speed it is the event
        time, so a replay ticks exactly as the offline ``run_frame`` does.
        """
        alerts: list[Alert] = []
        now_mono = time.monotonic()
        wall = self.clock()
        for tp, pipeline in list(self._pipelines.items()):
            seen = self._watermark_wall.get(tp)
            if seen is None:
                continue
            event_time, at = seen
            # Never past the wall clock: a reading a few minutes ahead (inside the accepted
            # window) must not make every other sensor of its partition look silent. On a
            # tick boundary, as a replay ticks: a silence a replay would not see yet (its
            # sensor back before the next boundary) is not raised live either.
            now = min(event_time + timedelta(seconds=now_mono - at), wall)
            now = EPOCH + (now - EPOCH) // TICK_EVERY * TICK_EVERY
            alerts.extend(pipeline.tick(now))
        return alerts

    def _publish_state(self, alerts: Iterable[Alert]) -> None:
        aggregates = [
            a.to_dict() for p in list(self._pipelines.values()) for a in p.aggregates()
        ]
        aggregates.sort(key=lambda a: a["sensorId"])
        with self._lock:
            self._aggregates = aggregates
        self._alerts.extend(alert.to_dict() for alert in alerts)

    # -- state rebuild ---------------------------------------------------------

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        """Rebuild each newly assigned partition's state from its recent history."""
        consumer = self._consumer
        fresh = [tp for tp in partitions if tp not in self._pipelines]
        begins = consumer.beginning_offsets(fresh) if fresh else {}
        for tp in fresh:
            committed = consumer.committed(tp)
            if committed is None:
                committed = begins[tp]
            pipeline = Pipeline(window=self.window, rules=self.rules, clock=self.clock,
                                max_sensors=self.settings.max_sensors)
            pipeline.reconfigure(self.rules, self._rules_version)
            seen = SeenEvents(self._dedup_span_ms)
            rebuild_started = time.perf_counter()
            # Nothing processed before (a new group, or a topic cut by retention up to
            # here): no history to rebuild, and no reader to start for it.
            # The window plus two minutes, or longer for a rule that learns over longer
            # (the ML rule's models): bounded by MAX_WARMUP.
            span = warm_span(self.window, pipeline.detector.warmup)
            history = [] if committed <= begins[tp] else read_history(
                self.settings, tp, span, committed, self.clock,
                accept=self.accepted, seen=seen)
            pipeline.warm(history)
            self.stats.warmed += len(history)
            self.metrics.rebuild_seconds.observe(time.perf_counter() - rebuild_started)
            self.metrics.rebuild_readings.inc(len(history))
            self._pipelines[tp] = pipeline
            self._seen[tp] = seen
            if pipeline.watermark is not None:
                self._watermark_wall[tp] = (pipeline.watermark, time.monotonic())
        self.stats.assigned = sorted(tp.partition for tp in self._pipelines)
        self._publish_state(())

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._pipelines.pop(tp, None)
            self._seen.pop(tp, None)
            self._watermark_wall.pop(tp, None)
        self.stats.assigned = sorted(tp.partition for tp in self._pipelines)

    def _backfill_alerts(self) -> None:
        """Fill ``/api/alerts`` with the latest committed alerts, so a restart shows them."""
        try:
            alerts = read_recent_alerts(self.settings, self._alerts.maxlen)
        except Exception as exc:  # noqa: BLE001 - an empty feed is better than no service
            log.warning("could not back-fill alerts: %s", exc)
            return
        self._alerts.extend(alerts)


def _iso(at: float | None) -> str | None:
    return None if at is None else format_timestamp(datetime.fromtimestamp(at, UTC))

