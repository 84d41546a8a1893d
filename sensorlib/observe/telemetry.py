"""Observability: Prometheus metrics, OpenTelemetry traces carried in Kafka headers, JSON logs.

**Metrics.** Each service keeps its own :class:`prometheus_client.CollectorRegistry`
(:class:`ProducerMetrics`, :class:`ProcessorMetrics`, :class:`ArchiverMetrics`; the dashboard's
is :mod:`sensorlib.dashboard.metrics`) and serves it at ``GET /metrics``.
Names follow Prometheus conventions: ``sensorlib_`` prefix, ``_total`` counters, base
units (``_seconds``), bounded label values.

**Traces.** Tracing is opt-in: :func:`setup_tracing` installs the OpenTelemetry SDK only
when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP over HTTP/protobuf, what the reference sample
honours) or ``OTEL_EXPORTER_ZIPKIN_ENDPOINT`` (Zipkin JSON v2) is set; otherwise no span is
ever recorded and the hot paths do not look at headers. A reading's trace context travels
from ``POST /api/events`` (an incoming W3C ``traceparent`` is honoured) in the Kafka record's
``traceparent``/``tracestate`` headers; the processor continues it in the alert it
publishes. With tracing off an incoming context is still passed on unchanged (W3C: a hop
that does not trace forwards what it got), so a caller's trace id reaches the alert.

**Logs.** ``SENSORLIB_LOG_FORMAT=json`` makes :func:`configure_logging` write one JSON object
per line, with ``trace_id``/``span_id`` inside a span; registered secrets are blanked out.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sensorlib.errors import SensorlibError

__all__ = [
    "TRACEPARENT",
    "ArchiverMetrics",
    "JsonFormatter",
    "ProcessorMetrics",
    "ProducerMetrics",
    "configure_logging",
    "context_from_headers",
    "headers_for",
    "setup_tracing",
    "shutdown_tracing",
    "tracer",
    "tracing_enabled",
]

#: The W3C trace-context header, on HTTP requests and on Kafka records alike.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: Trace-context headers copied from a reading's record to its alert when not tracing.
_CONTEXT_HEADERS = (TRACEPARENT, TRACESTATE)
#: At most this many batch records are linked from a batch's process span.
MAX_BATCH_LINKS = 128

#: Field names a refusal or a dead letter is counted under (anything else is "other"),
#: so a hostile body cannot create label values.
KNOWN_FIELDS = frozenset({"sensorId", "temperature", "humidity", "location", "timestamp",
                          "body"})

_tracing = False
_provider: Any = None


# --------------------------------------------------------------------------- tracing


def tracing_enabled() -> bool:
    """Whether :func:`setup_tracing` installed an exporting tracer in this process."""
    return _tracing


def tracer() -> trace.Tracer:
    """The tracer of sensorlib's own spans (a no-op tracer while tracing is off)."""
    return trace.get_tracer("sensorlib")


def _exporters(env: Mapping[str, str]) -> list[Any]:
    out: list[Any] = []
    otlp = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if otlp:
        protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
        if protocol == "grpc":
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as GrpcExporter,
                )
            except ImportError:
                raise SensorlibError(
                    "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the gRPC exporter: "
                    "pip install opentelemetry-exporter-otlp-proto-grpc==1.45.2, or use "
                    "http/protobuf (the default; an OTLP receiver's port 4318)") from None
            out.append(GrpcExporter())
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            out.append(OTLPSpanExporter())  # reads the endpoint (and /v1/traces) from env
        else:
            raise SensorlibError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: "
                                 "use http/protobuf or grpc")
    zipkin = env.get("OTEL_EXPORTER_ZIPKIN_ENDPOINT")
    if zipkin:
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        out.append(ZipkinExporter(endpoint=zipkin))
    return out


def setup_tracing(service: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the OpenTelemetry SDK for ``service`` if an exporter endpoint is configured.

    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) exports OTLP,
    ``OTEL_EXPORTER_ZIPKIN_ENDPOINT`` (e.g. ``http://127.0.0.1:9411/api/v2/spans``) exports
    to Zipkin; both may be set. ``OTEL_SDK_DISABLED=true`` turns tracing off whatever else
    is set. The service name is ``OTEL_SERVICE_NAME`` or ``sensorlib-<service>``. Returns
    whether tracing is now on. Idempotent within a process.
    """
    global _tracing, _provider
    env = os.environ if env is None else env
    if _tracing:
        return True
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporters(env)
    if not exporters:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = env.get("OTEL_SERVICE_NAME") or f"sensorlib-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    trace.set_tracer_provider(provider)
    _provider, _tracing = provider, True
    return True


def shutdown_tracing() -> None:
    """Export what is buffered and stop the exporters (at service shutdown)."""
    if _provider is not None:
        _provider.shutdown()


def headers_for(ctx: otel_context.Context | None = None) -> list[tuple[str, bytes]]:
    """Kafka record headers carrying ``ctx`` (default: the current context); [] if none."""
    carrier: dict[str, str] = {}
    inject(carrier, context=ctx)
    return [(k, v.encode("ascii")) for k, v in carrier.items()]


def context_from_headers(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    """The trace context in a Kafka record's headers (an empty context when there is none)."""
    carrier = {}
    for key, value in headers or ():
        if key in _CONTEXT_HEADERS and type(value) is bytes and 0 < len(value) <= MAX_CONTEXT_HEADER:
            carrier[key] = value.decode("ascii", errors="replace")
    return extract(carrier)


#: Longest trace-context header forwarded (W3C allows 512 characters of tracestate);
#: a longer one, or one without a value (a Java producer can send null), is dropped.
MAX_CONTEXT_HEADER = 1024


def context_headers(headers: Iterable[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """The trace-context headers of a record, as they are (forwarded when not tracing)."""
    return [(k, v) for k, v in headers or ()
            if k in _CONTEXT_HEADERS and type(v) is bytes and len(v) <= MAX_CONTEXT_HEADER]


def trace_id_of(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The 32-hex-digit trace id of a record's ``traceparent`` header, if it has one."""
    for key, value in headers or ():
        if key == TRACEPARENT and type(value) is bytes:
            parts = value.decode("ascii", errors="replace").split("-")
            return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None
    return None


class AlertTracer:
    """The processor's spans for one transaction (only when tracing is on).

    One ``process`` span per reading that caused alerts (a child of the reading's own
    trace), one ``publish`` span per alert under it (its context goes out in the alert's
    headers), and one ``process batch`` span linking the batch's readings. All end when
    the transaction commits or fails.
    """

    def __init__(self, topic_in: str, topic_out: str) -> None:
        self.topic_in, self.topic_out = topic_in, topic_out
        self._spans: list[Any] = []

    def batch(self, headers: Iterable[Any], count: int) -> None:
        """Start the span of a batch of ``count`` records, linked to the traces of up to
        :data:`MAX_BATCH_LINKS` of them (``headers``: each record's Kafka headers)."""
        links: list[Link] = []
        for record_headers in headers:
            if len(links) >= MAX_BATCH_LINKS:
                break
            if record_headers:
                ctx = trace.get_current_span(context_from_headers(record_headers))
                if ctx.get_span_context().is_valid:
                    links.append(Link(ctx.get_span_context()))
        self._spans.append(tracer().start_span(
            f"{self.topic_in} process batch", kind=SpanKind.CONSUMER, links=links,
            attributes={"messaging.system": "kafka", "messaging.operation.type": "process",
                        "messaging.destination.name": self.topic_in,
                        "messaging.batch.message_count": count}))

    def alerts(self, record: Any, alerts: Sequence[Any]) -> dict[str, list[tuple[str, bytes]]]:
        """Spans for a reading that caused ``alerts``; returns each alert id's headers."""
        parent = context_from_headers(record.headers)
        process = tracer().start_span(
            f"{self.topic_in} process", context=parent, kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka", "messaging.operation.type": "process",
                        "messaging.destination.name": self.topic_in,
                        "messaging.destination.partition.id": str(record.partition),
                        "messaging.kafka.offset": record.offset,
                        "messaging.kafka.message.key": record.key or "",
                        "sensorlib.alerts": len(alerts)})
        self._spans.append(process)
        under = trace.set_span_in_context(process)
        out: dict[str, list[tuple[str, bytes]]] = {}
        for alert in alerts:
            span = tracer().start_span(
                f"{self.topic_out} publish", context=under, kind=SpanKind.PRODUCER,
                attributes={"messaging.system": "kafka", "messaging.operation.type": "publish",
                            "messaging.destination.name": self.topic_out,
                            "sensorlib.alert.id": alert.alert_id,
                            "sensorlib.alert.rule": alert.rule,
                            "sensorlib.alert.severity": str(alert.severity)})
            self._spans.append(span)
            out[alert.alert_id] = headers_for(trace.set_span_in_context(span))
        return out

    def end(self, error: BaseException | None = None) -> None:
        """End every span (marking them failed with ``error``)."""
        for span in reversed(self._spans):
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.end()
        self._spans = []


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
            pending.add_metric([table], len(state.batch))
            if state.last_commit is not None:
                last.add_metric([table], state.last_commit.timestamp())
        lag = GaugeMetricFamily("sensorlib_consumer_lag_records", "Records not yet read by "
                                "the archiver, per partition (high watermark minus position)",
                                labels=["topic", "partition"])
        for (topic, partition), records in sorted(self._archiver.partition_lag.items()):
            lag.add_metric([topic, str(partition)], records)
        yield from (rows, invalid, commits, pending, last, lag)


# --------------------------------------------------------------------------- logs

#: Standard LogRecord attributes (anything else passed in ``extra`` is logged as a field).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {
    "message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, trace/span ids.

    ``secrets`` (and any registered with kafka_io's client error log) are replaced by
    ``***`` wherever they appear in the line.
    """

    def __init__(self, service: str = "sensorlib", secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.service = service
        self.secrets = {s for s in secrets if s}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            out["trace_id"] = format(span.trace_id, "032x")
            out["span_id"] = format(span.span_id, "016x")
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool)) else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        for key, value in out.items():
            if isinstance(value, str):
                out[key] = self.redact(value)
        return json.dumps(out, ensure_ascii=False, default=str)

    def redact(self, text: str) -> str:
        """``text`` without any secret, as it is or as ``repr`` shows it."""
        from sensorlib.kafka.clients import client_errors

        for secret in self.secrets:
            text = text.replace(secret, "***")
            shown = repr(secret)[1:-1]
            if shown != secret:
                text = text.replace(shown, "***")
        return client_errors.redact(text)


def _iso_ms(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + \
        f".{int(created * 1000) % 1000:03d}Z"


#: Seconds after the logging set-up that count as start-up (:class:`KafkaNoise`).
START_UP_SECONDS = 120.0


class KafkaNoise(logging.Filter):
    """Demotes kafka-python's known-benign warnings and errors to DEBUG, so that what is
    logged as WARNING or ERROR needs someone's attention.

    - A transient, retriable error the client retries by itself: a record of a ``kafka.*``
      logger whose arguments carry a retriable :class:`kafka.errors.KafkaError`
      (``NotCoordinatorError`` while the group coordinator loads, ``Metadata refresh:
      failed Cancelled`` when a request is superseded, ``NodeNotReadyError``) or that says
      it is ``retrying`` (``NotEnoughReplicasError … Unable to verify the partition has been
      added to the transaction`` while a new broker's transaction state loads).
    - During start-up (the first :data:`START_UP_SECONDS`): its event loop's "Task … is
      blocking the event loop" (imports and first connections on a busy machine).

    Non-retriable errors (authorisation, SASL, unknown topic, fatal producer errors) and
    sensorlib's own records pass unchanged. A demoted record is shown only when its logger
    is enabled for DEBUG.
    """

    _START_UP = ("blocking the event loop", "left RUNNING after step")

    def __init__(self, started: float | None = None) -> None:
        super().__init__()
        self.started = time.monotonic() if started is None else started

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not record.name.startswith("kafka"):
            return True
        if not self.benign(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    def benign(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` (of a kafka-python logger) is a benign, transient one."""
        from kafka.errors import KafkaError

        args = record.args if isinstance(record.args, tuple) else (record.args,)
        if record.exc_info and record.exc_info[1] is not None:
            args = (*args, record.exc_info[1])
        for arg in args:
            if isinstance(arg, KafkaError) or (isinstance(arg, type)
                                               and issubclass(arg, KafkaError)):
                return bool(getattr(arg, "retriable", False))
        message = str(record.msg)
        if "retrying" in message and record.levelno == logging.WARNING:
            return True
        return (time.monotonic() - self.started < START_UP_SECONDS
                and any(part in message for part in self._START_UP))


def quiet_kafka_noise(*handlers: logging.Handler) -> None:
    """Put a :class:`KafkaNoise` on ``handlers`` and on Python's last-resort handler (what
    prints warnings in a process that set no logging up: the CLI, the archiver)."""
    for handler in (*handlers, logging.lastResort):
        if handler is not None and not any(isinstance(f, KafkaNoise) for f in handler.filters):
            handler.addFilter(KafkaNoise())


def configure_logging(service: str, *, text_format: str, secrets: Iterable[str | None] = (),
                      log_format: str = "text") -> None:
    """Set up the root logger: ``log_format`` ``json`` (``Settings.log_format``, from
    ``SENSORLIB_LOG_FORMAT``) gives JSON lines, ``text`` lines in ``text_format``."""
    kind = log_format.strip().lower() or "text"
    if kind not in ("text", "json"):
        raise SensorlibError(f"SENSORLIB_LOG_FORMAT={kind!r}: use text or json")
    handler = logging.StreamHandler()
    if kind == "json":
        handler.setFormatter(JsonFormatter(service, secrets))
    else:
        handler.setFormatter(logging.Formatter(text_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    quiet_kafka_noise(handler)  # kafka-python's retried, transient errors are not ERRORs
