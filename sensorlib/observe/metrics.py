"""Metrics: each service's own :class:`prometheus_client.CollectorRegistry` served at
``GET /metrics``; ``sensorlib_`` names, ``_total`` counters, base units, bounded labels."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

#: Field names a refusal or a dead letter is counted under (anything else is "other"),
#: so a hostile body cannot create label values.
KNOWN_FIELDS = frozenset({"sensorId", "temperature", "humidity", "location", "timestamp",
                          "body"})
# --------------------------------------------------------------------------- metrics

#: Buckets of POST and transaction durations (seconds).
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Buckets of event-to-alert latency (seconds).
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def field_label(field: str) -> str:
    """A bounded label value for a reading's field name."""
    return field if field in KNOWN_FIELDS else "other"


class ProducerMetrics:
    """The producer service's metrics (``GET /metrics`` of ``sensorlib producer``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.accepted = Counter("sensorlib_readings_accepted", "Readings published to Kafka "
                                "and acknowledged, by source (api or simulator)", ["source"],
                                registry=r)
        self.refused = Counter("sensorlib_readings_refused", "POST /api/events requests "
                               "refused, by reason and (for invalid readings) field",
                               ["reason", "field"], registry=r)
        self.publish_seconds = Histogram("sensorlib_publish_duration_seconds", "Time from "
                                         "sending a POSTed reading to Kafka's acknowledgement",
                                         buckets=_FAST, registry=r)
        for source in ("api", "simulator"):
            self.accepted.labels(source)
        for reason in ("unsupported_media_type", "body_too_large", "body_timeout",
                       "kafka_unavailable"):
            self.refused.labels(reason, "")

    def refuse(self, reason: str, fields: Iterable[str] = ("",)) -> None:
        """Count one refused request (``fields`` of an invalid reading: each counted)."""
        for field in fields:
            self.refused.labels(reason, field_label(field) if field else "").inc()


class ProcessorMetrics:
    """The processor's metrics (``GET /metrics`` of ``sensorlib processor``).

    Updated once per transaction (never per record), so they cost nothing measurable;
    consumer lag is read from the processor's own per-partition figures at scrape time.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.processed = Counter("sensorlib_readings_processed", "Valid readings processed "
                                 "(committed)", registry=r)
        self.dead_letters = Counter("sensorlib_dead_letters", "Records sent to the dead-letter "
                                    "topic, by the first field at fault", ["field"], registry=r)
        self.alerts = Counter("sensorlib_alerts", "Alerts published (committed), by rule and "
                              "severity", ["rule", "severity"], registry=r)
        self.transactions = Counter("sensorlib_transactions", "Kafka transactions committed",
                                    registry=r)
        self.transaction_seconds = Histogram("sensorlib_transaction_duration_seconds",
                                             "From beginning a batch's transaction to its "
                                             "commit", buckets=_FAST, registry=r)
        self.event_to_alert = Histogram("sensorlib_event_to_alert_seconds", "From a reading's "
                                        "event time to the commit of the alert it caused",
                                        buckets=_LATENCY, registry=r)
        self.rebuild_seconds = Histogram("sensorlib_state_rebuild_duration_seconds", "Time to "
                                         "rebuild one assigned partition's state from history",
                                         buckets=_LATENCY, registry=r)
        self.rebuild_readings = Counter("sensorlib_state_rebuild_readings", "Readings re-read "
                                        "to rebuild state on assignment", registry=r)
        self.sessions = Counter("sensorlib_processor_sessions", "Processing sessions started "
                                "(1 + restarts after failures)", registry=r)
        self.dead_letters.labels("other")
        self._lag: dict[tuple[str, int], int] = {}
        r.register(_LagCollector(self))

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Replace the per-partition consumer lag (topic, partition) -> records."""
        self._lag = dict(lag)

    def committed(self, *, processed: int, dead: Sequence[tuple[Any, Exception]],
                  alerts: Sequence[Any], started: float, caused: Sequence[tuple[Any, Any]]
                  ) -> None:
        """Count one committed transaction (``started``: :func:`time.perf_counter`)."""
        now = time.perf_counter()
        self.transactions.inc()
        self.transaction_seconds.observe(now - started)
        if processed:
            self.processed.inc(processed)
        for _, exc in dead:
            errors = getattr(exc, "errors", None)
            self.dead_letters.labels(field_label(errors[0].field) if errors else "other").inc()
        for alert in alerts:
            self.alerts.labels(alert.rule, str(alert.severity)).inc()
        if caused:
            wall = time.time()
            for _, found in caused:
                for alert in found:
                    self.event_to_alert.observe(max(0.0, wall - alert.timestamp.timestamp()))


class _LagCollector:
    """Exposes :meth:`ProcessorMetrics.set_lag` figures as ``sensorlib_consumer_lag_records``."""

    def __init__(self, metrics: ProcessorMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("sensorlib_consumer_lag_records", "Readings not yet "
                                   "processed, per assigned partition (high watermark minus "
                                   "position)", labels=["topic", "partition"])
        for (topic, partition), lag in sorted(self._metrics._lag.items()):
            family.add_metric([topic, str(partition)], lag)
        yield family


class ArchiverMetrics:
    """The archiver's metrics (``GET /metrics`` of ``sensorlib archive``), read at scrape time.

    Nothing is updated on the archiver's hot path: its own figures (rows committed per
    table, commits, records read but not yet committed, per-partition lag) are turned into
    samples when Prometheus asks:

    - ``sensorlib_archive_rows_total{table}``: rows appended to the Iceberg table (committed);
    - ``sensorlib_archive_invalid_records_total{table}``: records not archived (invalid);
    - ``sensorlib_archive_commits_total{table}``: Iceberg commits;
    - ``sensorlib_archive_commit_conflicts_total{table}``: commits retried because another
      writer (archiver, compaction) committed first;
    - ``sensorlib_archive_pending_rows{table}``: records read from Kafka, waiting in the
      next batch (batches being written are not counted);
    - ``sensorlib_archive_last_commit_timestamp_seconds{table}``: when the last commit was;
    - ``sensorlib_consumer_lag_records{topic,partition}``: high watermark minus the archiver's
      position (records not yet read), as the processor's.

    ``archiver`` is a :class:`sensorlib.history.archiver.Archiver` (its ``topics`` and
    ``partition_lag``).
    """

    def __init__(self, archiver: Any, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._archiver = archiver
        self.registry.register(self)

    def collect(self) -> Iterable[Any]:
        """The samples of this scrape (the :class:`prometheus_client` collector protocol)."""
        from sensorlib.history.query import table_name

        rows = CounterMetricFamily("sensorlib_archive_rows", "Rows appended to the archive "
                                   "table (committed)", labels=["table"])
        invalid = CounterMetricFamily("sensorlib_archive_invalid_records", "Records not "
                                      "archived because they are invalid", labels=["table"])
        commits = CounterMetricFamily("sensorlib_archive_commits", "Iceberg commits",
                                      labels=["table"])
        conflicts = CounterMetricFamily("sensorlib_archive_commit_conflicts", "Commits retried "
                                        "because another writer committed first",
                                        labels=["table"])
        pending = GaugeMetricFamily("sensorlib_archive_pending_rows", "Records read from Kafka "
                                    "waiting in the next batch (not yet handed to the writer)",
                                    labels=["table"])
        last = GaugeMetricFamily("sensorlib_archive_last_commit_timestamp_seconds", "Unix time "
                                 "of the table's last commit by this archiver", labels=["table"])
        for state in list(self._archiver.topics.values()):
            table = table_name(state.topic)
            rows.add_metric([table], state.archived)
            invalid.add_metric([table], state.invalid)
            commits.add_metric([table], state.commits)
            conflicts.add_metric([table], state.conflicts)
            pending.add_metric([table], len(state.batch))
            if state.last_commit is not None:
                last.add_metric([table], state.last_commit.timestamp())
        lag = GaugeMetricFamily("sensorlib_consumer_lag_records", "Records not yet read by "
                                "the archiver, per partition (high watermark minus position)",
                                labels=["topic", "partition"])
        for (topic, partition), records in sorted(self._archiver.partition_lag.items()):
            lag.add_metric([topic, str(partition)], records)
        yield from (rows, invalid, commits, conflicts, pending, last, lag)
