"""``sensorlib notify``: alerts from ``sensor-alerts`` to Prometheus Alertmanager.

The notifier is a consumer like the archiver: group ``notification-group`` on
``sensor-alerts`` (``read_committed``: an aborted transaction's alerts are never sent). Each
poll's alerts go to Alertmanager's v2 API in one ``POST /api/v2/alerts`` with

- labels ``alertname`` (the rule), ``sensor``, ``location``, ``severity``,
  ``source="sensorlib"`` and ``alert_id`` (control characters removed, at most
  :data:`MAX_LABEL` characters: labels make e-mail subjects);
- annotations ``summary``/``reason`` (the alert's text, intact), ``values``, ``dashboard``
  (the sensor on the live dashboard), ``trace_id`` and ``trace`` (when the alert carries a
  trace context; a link when traces go to a Zipkin);
- ``startsAt`` = the alert's event time and ``endsAt`` = event time + the rule's cooldown
  (an alert that reaches Alertmanager after that fires for one cooldown from now instead:
  it is still news to a person).

**Exactly once, as a person sees it.** The group's offsets are committed only after
Alertmanager accepted the batch (HTTP 200); while it refuses or is down the batch is posted
again after a back-off (:data:`RETRY_FIRST` doubling to :data:`RETRY_MAX`), the consumer
rewound to the batch. A notifier killed after the post and before the commit posts those
alerts again: Alertmanager identifies an alert by its labels, so the second post updates the
alert it holds and its notification log sends nothing twice. Alertmanager keeps alerts in
memory only: when its uptime changes (a restart) the notifier posts the alerts that are
still firing again, so a restart between accepting an alert and notifying about it loses
nothing.

``/health`` (200 or 503 with the reasons: Alertmanager refusing, Kafka unreachable, lag with
no progress) and ``/metrics`` (:data:`METRICS`) are served on :8084
(``SENSORLIB_NOTIFIER_PORT``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from sensorlib.config import Settings
from sensorlib.errors import KafkaUnavailable, NotifyError
from sensorlib.model.events import Alert, parse_alert
from sensorlib.model.times import format_timestamp

__all__ = ["METRICS", "Notifier", "alert_payload", "serve_health"]

log = logging.getLogger("sensorlib.notify.notifier")

#: Longest label value sent (labels end up in e-mail subjects and Slack titles).
MAX_LABEL = 200
#: Records taken per poll, and so at most per ``POST /api/v2/alerts``.
MAX_BATCH = 5000
#: Back-off of a refused post: first, at most.
RETRY_FIRST = 0.5
RETRY_MAX = 30.0
#: How often Alertmanager's uptime is checked (a restart means: post what fires again).
STATUS_EVERY = 5.0
#: Records waiting with none sent for this long make the notifier unhealthy.
STALL_AFTER = 60.0
#: How long an alert fires: the rule's cooldown (the processor's default).
DEFAULT_ACTIVE = timedelta(minutes=1)
#: The metrics of ``GET /metrics``.
METRICS = ("sensorlib_notify_sent_alerts_total", "sensorlib_notify_retried_alerts_total",
           "sensorlib_notify_failed_batches_total", "sensorlib_notify_failed_alerts_total",
           "sensorlib_notify_invalid_records_total", "sensorlib_notify_post_duration_seconds",
           "sensorlib_consumer_lag_records")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _label(value: object) -> str:
    """A label value: no control characters (no header injection), bounded."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _iso(moment: datetime) -> str:
    return format_timestamp(moment)


def alert_payload(alert: Alert, settings: Settings, *, trace_id: str | None = None,
                  active: timedelta = DEFAULT_ACTIVE, now: datetime | None = None,
                  trace_url: str | None = None) -> dict[str, Any]:
    """The Alertmanager v2 alert (``postableAlert``) for ``alert`` (module docstring)."""
    now = now or datetime.now(UTC)
    ends = alert.timestamp + active
    if ends <= now:
        ends = now + active
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    dashboard = f"http://{shown}:{settings.dashboard_port}/live"
    annotations = {
        "summary": alert.reason,
        "reason": alert.reason,
        "values": f"{alert.temperature:.1f} °C, {alert.humidity:.1f} %",
        "timestamp": _iso(alert.timestamp),
        "detectedAt": _iso(alert.detected_at),
        "dashboard": dashboard,
    }
    if trace_id:
        annotations["trace_id"] = trace_id
        if trace_url:
            annotations["trace"] = trace_url.format(trace_id=trace_id)
    return {
        "labels": {"alertname": _label(alert.rule) or "alert", "sensor": _label(alert.sensor_id),
                   "location": _label(alert.location), "severity": _label(alert.severity),
                   "source": "sensorlib", "alert_id": _label(alert.alert_id)},
        "annotations": annotations,
        "startsAt": _iso(alert.timestamp),
        "endsAt": _iso(ends),
        "generatorURL": dashboard,
    }


def _trace_url(env: Mapping[str, str]) -> str | None:
    """Where a trace is shown: the Zipkin UI when spans go to a Zipkin."""
    zipkin = (env.get("OTEL_EXPORTER_ZIPKIN_ENDPOINT") or "").strip()
    if zipkin and "/api/v2/spans" in zipkin:
        return zipkin.split("/api/v2/spans")[0] + "/zipkin/traces/{trace_id}"
    return None


class _Metrics:
    def __init__(self, notifier: Notifier) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sent = Counter("sensorlib_notify_sent_alerts", "Alerts Alertmanager accepted "
                            "(offsets committed after)", registry=r)
        self.retried = Counter("sensorlib_notify_retried_alerts", "Alerts posted again after "
                               "Alertmanager refused or did not answer", registry=r)
        self.failed_batches = Counter("sensorlib_notify_failed_batches", "Posts to "
                                      "Alertmanager that failed (retried)", registry=r)
        self.failed = Counter("sensorlib_notify_failed_alerts", "Alerts Alertmanager rejected "
                              "as invalid (HTTP 400; not retried)", registry=r)
        self.invalid = Counter("sensorlib_notify_invalid_records", "Records on the alerts "
                               "topic that are not alerts (skipped)", registry=r)
        self.post_seconds = Histogram("sensorlib_notify_post_duration_seconds", "Duration of "
                                      "one POST /api/v2/alerts", registry=r,
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                               5, 10))
        self._notifier = notifier
        r.register(self)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        lag = GaugeMetricFamily("sensorlib_consumer_lag_records", "Alerts not yet sent to "
                                "Alertmanager, per partition", labels=["topic", "partition"])
        for (topic, partition), behind in sorted(self._notifier.partition_lag.items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag


class Notifier:
    """Send the alerts topic to Alertmanager (see the module docstring)."""

    def __init__(self, settings: Settings, *, group: str | None = None,
                 max_batch: int = MAX_BATCH, active: timedelta = DEFAULT_ACTIVE,
                 env: Mapping[str, str] | None = None) -> None:
        import os

        self.settings = settings
        self.group = group or settings.notification_group
        self.max_batch = max_batch
        self.active = active
        self.url = settings.alertmanager.rstrip("/") + "/api/v2/alerts"
        self.trace_url = _trace_url(os.environ if env is None else env)
        self.state = "starting"
        self.error: str | None = None
        self.am_error: str | None = None
        self.am_uptime: str | None = None
        self.partition_lag: dict[tuple[str, int], int] = {}
        self.progress_at = time.monotonic()
        self.last_poll = time.monotonic()
        self.sent = 0
        self.restarts = 0
        #: Alerts still firing (alert id -> payload), posted again after an Alertmanager restart.
        self.firing: dict[str, dict[str, Any]] = {}
        self.metrics = _Metrics(self)
        self._next_status = 0.0
        self._client = httpx.Client(timeout=10.0)

    # -- health --------------------------------------------------------------------------

    def problems(self, now: float | None = None) -> list[str]:
        """Why notifications do not flow, one sentence each (empty when healthy)."""
        now = time.monotonic() if now is None else now
        out: list[str] = []
        if self.state not in ("running",):
            out.append(f"not sending ({self.state})" + (f": {self.error}" if self.error else ""))
        if self.am_error:
            out.append(f"Alertmanager at {self.settings.alertmanager} refuses the alerts: "
                       f"{self.am_error}; retrying, nothing is committed meanwhile")
        waiting = sum(self.partition_lag.values())
        if waiting and now - self.progress_at > STALL_AFTER:
            out.append(f"{waiting} alert(s) wait and none was sent for "
                       f"{now - self.progress_at:.0f}s")
        if self.state == "running" and now - self.last_poll > 60:
            out.append(f"the consumer loop has not polled Kafka for {now - self.last_poll:.0f}s")
        return out

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the JSON of ``/health``)."""
        from sensorlib.kafka.admin import kafka_reachable

        problems = self.problems()
        reachable = kafka_reachable(self.settings)
        if not reachable:
            problems.insert(0, f"Kafka is not reachable at {self.settings.bootstrap_servers}")
        return not problems, {
            "status": "ok" if not problems else "unhealthy",
            "state": self.state,
            "problems": problems,
            "kafka": "reachable" if reachable else "unreachable",
            "alertmanager": self.settings.alertmanager,
            "alertmanagerStatus": "refusing" if self.am_error else "accepting",
            "group": self.group,
            "topic": self.settings.topic_alerts,
            "sent": self.sent,
            "lag": sum(self.partition_lag.values()),
            "firing": len(self.firing),
            "restarts": self.restarts,
        }

    # -- running -------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> int:
        """Send alerts until ``stop``; a Kafka failure restarts the consumer (from the
        committed offsets) after a back-off. Returns the alerts sent."""
        stop = stop or threading.Event()
        delay = RETRY_FIRST
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self._session(stop)
                except (KafkaError, KafkaUnavailable) as exc:
                    self.error = f"{type(exc).__name__}: {exc}"
                    if time.monotonic() - started > 60:
                        delay = RETRY_FIRST
                    self.restarts += 1
                    self.state = "retrying"
                    log.warning("consuming %s stopped (%s); again from the committed offsets "
                                "in %gs", self.settings.topic_alerts, self.error, delay)
                    stop.wait(delay)
                    delay = min(delay * 2, RETRY_MAX)
            self.state = "stopped"
            return self.sent
        finally:
            self._client.close()

    def _session(self, stop: threading.Event) -> None:
        from sensorlib.kafka.clients import make_consumer

        consumer = make_consumer(self.settings, self.settings.topic_alerts, group_id=self.group,
                                 client_id="sensorlib-notifier",
                                 isolation_level="read_committed",
                                 max_poll_records=self.max_batch)
        try:
            self.state, self.error = "running", None
            self.last_poll = self.progress_at = time.monotonic()
            delay = RETRY_FIRST
            while not stop.is_set():
                polled = consumer.poll(timeout_ms=500, max_records=self.max_batch)
                self.last_poll = time.monotonic()
                self._check_alertmanager()
                records = [r for batch in polled.values() for r in batch]
                self._update_lag(consumer)
                if not records:
                    if not any(self.partition_lag.values()):
                        self.progress_at = time.monotonic()
                    continue
                ok = self._send(records)
                if ok:
                    delay = RETRY_FIRST
                    offsets = {tp: OffsetAndMetadata(batch[-1].offset + 1, "", -1)
                               for tp, batch in polled.items()}
                    try:
                        consumer.commit(offsets, timeout_ms=10_000)
                    except KafkaError as exc:  # harmless: a re-post changes nothing a person sees
                        log.warning("offsets not committed (%s); those alerts may be posted "
                                    "again, which Alertmanager de-duplicates", exc)
                    self.progress_at = time.monotonic()
                else:
                    for tp, batch in polled.items():  # the same alerts again after the back-off
                        consumer.seek(tp, batch[0].offset)
                    self.metrics.retried.inc(len(records))
                    stop.wait(delay)
                    delay = min(delay * 2, RETRY_MAX)
        finally:
            try:
                consumer.close(autocommit=False, timeout_ms=5000)
            except Exception as exc:  # noqa: BLE001 - closing after a failure
                log.info("consumer close: %s", exc)

    def _payloads(self, records: list[Any]) -> tuple[list[dict[str, Any]], list[Any]]:
        from sensorlib.observe.tracing import trace_id_of

        out: list[dict[str, Any]] = []
        headers: list[Any] = []
        now = datetime.now(UTC)
        for record in records:
            try:
                alert = parse_alert(record.value)
            except ValueError:
                self.metrics.invalid.inc()
                log.warning("%s partition %d offset %d is not an alert; skipped",
                            record.topic, record.partition, record.offset)
                continue
            out.append(alert_payload(alert, self.settings, trace_id=trace_id_of(record.headers),
                                     active=self.active, now=now, trace_url=self.trace_url))
            headers.append(record.headers)
        return out, headers

    def _send(self, records: list[Any]) -> bool:
        """Post the records' alerts; True once Alertmanager accepted them (or there were
        none, or it rejected them as invalid: retrying cannot help then)."""
        from opentelemetry import trace
        from opentelemetry.trace import Link, SpanKind

        from sensorlib.observe.tracing import (
            MAX_BATCH_LINKS,
            context_from_headers,
            tracer,
            tracing_enabled,
        )

        payloads, headers = self._payloads(records)
        if not payloads:
            return True
        span = None
        if tracing_enabled():
            links = []
            for h in headers[:MAX_BATCH_LINKS]:
                ctx = trace.get_current_span(context_from_headers(h)).get_span_context()
                if ctx.is_valid:
                    links.append(Link(ctx))
            parent = context_from_headers(headers[0]) if len(headers) == 1 else None
            span = tracer().start_span(f"{self.settings.topic_alerts} notify", context=parent,
                                       kind=SpanKind.CONSUMER, links=links,
                                       attributes={"messaging.system": "kafka",
                                                   "messaging.batch.message_count": len(payloads),
                                                   "sensorlib.notify.alertmanager": self.url})
        try:
            with trace.use_span(span, end_on_exit=False) if span else _nothing():
                return self._post(payloads)
        finally:
            if span is not None:
                span.end()

    def _post(self, payloads: list[dict[str, Any]]) -> bool:
        body = json.dumps(payloads, ensure_ascii=False).encode()
        started = time.perf_counter()
        try:
            answer = self._client.post(self.url, content=body,
                                       headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            return self._refused(f"{type(exc).__name__}: {exc}", len(payloads))
        finally:
            self.metrics.post_seconds.observe(time.perf_counter() - started)
        if answer.status_code == 200:
            if self.am_error:
                log.info("Alertmanager accepts alerts again")
            self.am_error = None
            self.sent += len(payloads)
            self.metrics.sent.inc(len(payloads))
            self._remember(payloads)
            log.info("%d alert(s) sent to Alertmanager", len(payloads))
            return True
        if answer.status_code == 400:  # invalid alerts: posting them again cannot help
            self.metrics.failed.inc(len(payloads))
            log.error("Alertmanager rejected %d alert(s) as invalid: %s", len(payloads),
                      answer.text[:500])
            return True
        return self._refused(f"HTTP {answer.status_code}: {answer.text[:200]}", len(payloads))

    def _refused(self, why: str, count: int) -> bool:
        if self.am_error is None:
            log.warning("Alertmanager at %s did not take %d alert(s) (%s); retrying with "
                        "back-off", self.settings.alertmanager, count, why)
        self.am_error = why
        self.metrics.failed_batches.inc()
        return False

    def _remember(self, payloads: list[dict[str, Any]]) -> None:
        now = _iso(datetime.now(UTC))
        for alert_id in [k for k, p in self.firing.items() if p["endsAt"] <= now]:
            del self.firing[alert_id]
        for payload in payloads:
            if payload["endsAt"] > now:
                self.firing[payload["labels"]["alert_id"]] = payload

    def _check_alertmanager(self) -> None:
        """Every :data:`STATUS_EVERY` s: Alertmanager's uptime; after a restart it has
        forgotten its alerts, so the ones still firing are posted again."""
        now = time.monotonic()
        if now < self._next_status:
            return
        self._next_status = now + STATUS_EVERY
        try:
            answer = self._client.get(self.url.rsplit("/alerts", 1)[0] + "/status", timeout=2.0)
            uptime = answer.json().get("uptime") if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            uptime = None
        if uptime is None:
            return
        restarted = self.am_uptime is not None and uptime != self.am_uptime
        self.am_uptime = uptime
        if restarted and self.firing:
            now_iso = _iso(datetime.now(UTC))
            again = [p for p in self.firing.values() if p["endsAt"] > now_iso]
            log.info("Alertmanager restarted: posting the %d alert(s) still firing again",
                     len(again))
            if again:
                self._post(again)

    def _update_lag(self, consumer: Any) -> None:
        lag: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                lag[(tp.topic, tp.partition)] = max(0, high - consumer.position(tp))
        self.partition_lag = lag


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _host_name(header: str) -> str:
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0]


def serve_health(notifier: Notifier, host: str, port: int) -> ThreadingHTTPServer:
    """``GET /health`` (JSON; 200 healthy, 503 with the reasons) and ``GET /metrics`` in a
    thread (the archiver's shape)."""
    allowed = set(notifier.settings.hosts())

    class Handler(BaseHTTPRequestHandler):
        timeout = notifier.settings.header_timeout

        def do_GET(self) -> None:
            name = _host_name(self.headers.get("Host") or "")
            path = self.path.split("?")[0]
            if name not in allowed:
                self._send(400, {"error": f"unknown Host header {name!r}"})
            elif path == "/metrics":
                data = generate_latest(notifier.metrics.registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(data)
            elif path != "/health":
                self._send(404, {"error": "not found; try /health or /metrics"})
            else:
                healthy, body = notifier.health()
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

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise NotifyError(f"the notifier's /health cannot listen on {host}:{port} ({exc}); "
                          "set SENSORLIB_NOTIFIER_PORT") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sensorlib-notify-health",
                     daemon=True).start()
    return server

