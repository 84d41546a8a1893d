"""Traces: OpenTelemetry, opt-in (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_ZIPKIN_ENDPOINT``),
its context carried in Kafka record headers from ``POST /api/events`` to the alert. With
tracing off an incoming context is passed on unchanged (W3C: a hop that does not trace
forwards what it got)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from sensorlib.errors import SensorlibError

#: The W3C trace-context header, on HTTP requests and on Kafka records alike.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: Trace-context headers copied from a reading's record to its alert when not tracing.
_CONTEXT_HEADERS = (TRACEPARENT, TRACESTATE)
#: At most this many batch records are linked from a batch's process span.
MAX_BATCH_LINKS = 128
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
