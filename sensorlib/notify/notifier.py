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

**Throughput.** Records are decoded by msgspec (:class:`_WireAlert`; anything it refuses
goes through :func:`~sensorlib.model.events.parse_alert`, the one authority) straight into the
payloads, encoded by msgspec. Up to :data:`IN_FLIGHT` posts are in the air at once over
keep-alive connections while the next poll is read and built; answers are handled oldest
first and offsets are committed in that order, so a refused batch is posted again together
with everything polled after it, and nothing is committed before Alertmanager took it.

``/health`` (200 or 503 with the reasons: Alertmanager refusing, Kafka unreachable, lag with
no progress) and ``/metrics`` (:data:`METRICS`) are served on :8084
(``SENSORLIB_NOTIFIER_PORT``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily

from sensorlib.config import Settings
from sensorlib.errors import KafkaUnavailable
from sensorlib.notify.payload import (
    DEFAULT_ACTIVE,
    _dashboard_url,
    _payload,
    _read_alert,
    _trace_url,
)

__all__ = ["METRICS", "Notifier"]

log = logging.getLogger("sensorlib.notify.notifier")

#: Records taken per poll, and so at most per ``POST /api/v2/alerts``.
MAX_BATCH = 5000
#: Posts to Alertmanager at once (it parses them in parallel); answers are handled in order.
IN_FLIGHT = 2
#: Seconds a post may take (no answer: posted again after the back-off).
POST_TIMEOUT = 30.0
#: Back-off of a refused post: first, at most.
RETRY_FIRST = 0.5
RETRY_MAX = 30.0
#: How often Alertmanager's uptime is checked (a restart means: post what fires again).
STATUS_EVERY = 5.0
#: Records waiting with none sent for this long make the notifier unhealthy.
STALL_AFTER = 60.0
#: The metrics of ``GET /metrics``.
METRICS = ("sensorlib_notify_sent_alerts_total", "sensorlib_notify_retried_alerts_total",
           "sensorlib_notify_failed_batches_total", "sensorlib_notify_failed_alerts_total",
           "sensorlib_notify_invalid_records_total", "sensorlib_notify_post_duration_seconds",
           "sensorlib_consumer_lag_records")


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
                 env: Mapping[str, str] | None = None, in_flight: int = IN_FLIGHT) -> None:
        import os

        self.settings = settings
        self.group = group or settings.notification_group
        self.max_batch = max_batch
        self.in_flight = max(1, in_flight)
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
        self.dashboard = _dashboard_url(settings)
        self._next_status = 0.0
        self._next_prune = 0.0
        # Keep-alive connections: one per post in flight, one for the status checks.
        # A post may take seconds on a busy machine; a timeout means posting it again.
        self._client = httpx.Client(timeout=POST_TIMEOUT,
                                    limits=httpx.Limits(max_connections=self.in_flight + 1))

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
        """One consumer's life. Pipelined: up to :data:`IN_FLIGHT` batches are posted at
        once (Alertmanager parses them on several cores) while the next poll's records are
        read and its payloads built; answers are handled oldest first, and a batch's offsets
        are committed only once Alertmanager accepted it and every batch before it."""
        from sensorlib.kafka.clients import make_consumer

        consumer = make_consumer(self.settings, self.settings.topic_alerts, group_id=self.group,
                                 client_id="sensorlib-notifier",
                                 isolation_level="read_committed",
                                 max_poll_records=self.max_batch)
        poster = ThreadPoolExecutor(self.in_flight, thread_name_prefix="sensorlib-notify-post")
        flights: deque[_Batch] = deque()  # posted, oldest first, answers not handled yet
        try:
            self.state, self.error = "running", None
            self.last_poll = self.progress_at = time.monotonic()
            delay = RETRY_FIRST
            while not stop.is_set():
                polled = consumer.poll(timeout_ms=20 if flights else 500,
                                       max_records=self.max_batch)
                self.last_poll = time.monotonic()
                self._check_alertmanager()
                self._update_lag(consumer)
                batch = self._batch(polled) if any(polled.values()) else None
                accepted: list[_Batch] = []
                refused: _Batch | None = None
                # Handle answers that came; wait for the oldest when the new batch needs a slot.
                while flights and (flights[0].future.done()
                                   or (batch is not None and len(flights) >= self.in_flight)):
                    done = flights.popleft()
                    if self._accepted(done):
                        accepted.append(done)
                    else:
                        refused = done
                        break
                if refused is not None:
                    # The refused alerts again after the back-off, and everything after
                    # them (posted meanwhile or only built): seek back to the earliest.
                    later = list(flights)
                    flights.clear()
                    for other in later:  # their answers no longer matter: read again
                        with contextlib.suppress(Exception):
                            other.future.result(15.0)
                        other.close()
                    if batch is not None:
                        later.append(batch)
                        batch.close()
                    self._commit(consumer, accepted)
                    self._rewind(consumer, refused, later)
                    stop.wait(delay)
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                if accepted:
                    delay = RETRY_FIRST
                if batch is not None:
                    flights.append(self._launch(batch, poster))
                # Committed while the next batches are on their way.
                self._commit(consumer, accepted)
                if batch is None and not flights and not any(self.partition_lag.values()):
                    self.progress_at = time.monotonic()
        finally:
            # Leaving: the offsets of what Alertmanager took, oldest first, up to the first
            # batch it did not.
            try:
                accepted = []
                while flights:
                    done = flights.popleft()
                    if not self._accepted(done, timeout=15.0):
                        break
                    accepted.append(done)
                self._commit(consumer, accepted)
            except Exception as exc:  # noqa: BLE001 - a re-post is harmless
                log.info("last batches not committed (%s); they will be posted again", exc)
            for other in flights:
                other.close()
            poster.shutdown(wait=False, cancel_futures=True)
            try:
                consumer.close(autocommit=False, timeout_ms=5000)
            except Exception as exc:  # noqa: BLE001 - closing after a failure
                log.info("consumer close: %s", exc)

    def _batch(self, polled: Mapping[Any, list[Any]]) -> _Batch:
        """One poll's records as Alertmanager payloads (records that are no alerts are
        counted and skipped; their offsets are still committed with the batch)."""
        from sensorlib.observe.tracing import trace_id_of

        batch = _Batch(polled)
        now = datetime.now(UTC)
        dashboard, active, trace_url = self.dashboard, self.active, self.trace_url
        payloads, headers = batch.payloads, batch.headers
        for records in polled.values():
            for record in records:
                try:
                    fields = _read_alert(record.value)
                except ValueError:
                    self.metrics.invalid.inc()
                    log.warning("%s partition %d offset %d is not an alert; skipped",
                                record.topic, record.partition, record.offset)
                    continue
                hdrs = record.headers
                payloads.append(_payload(fields, dashboard, active, now,
                                         trace_id_of(hdrs) if hdrs else None, trace_url))
                headers.append(hdrs)
        return batch

    def _launch(self, batch: _Batch, poster: ThreadPoolExecutor) -> _Batch:
        """Post ``batch`` in the poster thread (nothing to post: done at once)."""
        if not batch.payloads:
            batch.future.set_result(None)
            return batch
        batch.span = self._span(batch)
        body = _ENCODE(batch.payloads)
        batch.started = time.perf_counter()
        batch.future = poster.submit(self._client.post, self.url, content=body,
                                     headers={"Content-Type": "application/json"})
        return batch

    def _span(self, batch: _Batch) -> Any:
        from opentelemetry import trace
        from opentelemetry.trace import Link, SpanKind

        from sensorlib.observe.tracing import (
            MAX_BATCH_LINKS,
            context_from_headers,
            tracer,
            tracing_enabled,
        )

        if not tracing_enabled():
            return None
        links = []
        for h in batch.headers[:MAX_BATCH_LINKS]:
            ctx = trace.get_current_span(context_from_headers(h)).get_span_context()
            if ctx.is_valid:
                links.append(Link(ctx))
        parent = context_from_headers(batch.headers[0]) if len(batch.headers) == 1 else None
        return tracer().start_span(f"{self.settings.topic_alerts} notify", context=parent,
                                   kind=SpanKind.CONSUMER, links=links,
                                   attributes={"messaging.system": "kafka",
                                               "messaging.batch.message_count":
                                                   len(batch.payloads),
                                               "sensorlib.notify.alertmanager": self.url})

    def _accepted(self, batch: _Batch, timeout: float | None = None) -> bool:
        """Wait for Alertmanager's answer to ``batch``: True once it accepted the alerts
        (or there were none, or it rejected them as invalid: retrying cannot help then)."""
        try:
            try:
                answer = batch.future.result(timeout)
            except httpx.HTTPError as exc:
                return self._answered(batch.payloads, None, f"{type(exc).__name__}: {exc}")
            finally:
                if batch.started:
                    self.metrics.post_seconds.observe(time.perf_counter() - batch.started)
            if answer is None:
                return True
            return self._answered(batch.payloads, answer, None)
        finally:
            batch.close()

    def _rewind(self, consumer: Any, refused: _Batch, later: list[_Batch]) -> None:
        """Seek back to the first record of ``refused`` and of the batches polled after
        it (``later``), so all of them are read and posted again."""
        positions: dict[Any, int] = {}
        for batch in reversed([refused, *later]):  # a partition's earliest batch wins
            positions.update(batch.first)
        assigned = consumer.assignment()
        for tp, offset in positions.items():
            if tp in assigned:
                consumer.seek(tp, offset)
        self.metrics.retried.inc(len(refused.payloads))

    def _commit(self, consumer: Any, accepted: list[_Batch]) -> None:
        """Commit the offsets after ``accepted`` (consecutive batches, oldest first)."""
        if not accepted:
            return
        offsets: dict[Any, OffsetAndMetadata] = {}
        for batch in accepted:
            offsets.update({tp: OffsetAndMetadata(offset, "", -1)
                            for tp, offset in batch.last.items()})
        try:
            consumer.commit(offsets, timeout_ms=10_000)
        except KafkaError as exc:  # harmless: a re-post changes nothing a person sees
            log.warning("offsets not committed (%s); those alerts may be posted "
                        "again, which Alertmanager de-duplicates", exc)
        self.progress_at = time.monotonic()

    def _post(self, payloads: list[dict[str, Any]]) -> bool:
        """Post ``payloads`` now, in this thread (the re-post after a restart)."""
        started = time.perf_counter()
        try:
            answer = self._client.post(self.url, content=_ENCODE(payloads),
                                       headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            return self._answered(payloads, None, f"{type(exc).__name__}: {exc}")
        finally:
            self.metrics.post_seconds.observe(time.perf_counter() - started)
        return self._answered(payloads, answer, None)

    def _answered(self, payloads: list[dict[str, Any]], answer: httpx.Response | None,
                  error: str | None) -> bool:
        if answer is None:
            return self._refused(error or "no answer", len(payloads))
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
        now = datetime.now(UTC)
        if time.monotonic() >= self._next_prune:  # not per batch: firing can be large
            self._next_prune = time.monotonic() + STATUS_EVERY
            self.firing = {k: p for k, p in self.firing.items() if p["endsAt"] > now}
        firing = self.firing
        for payload in payloads:
            if payload["endsAt"] > now:
                firing[payload["labels"]["alert_id"]] = payload

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
            moment = datetime.now(UTC)
            again = [p for p in self.firing.values() if p["endsAt"] > moment]
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


_ENCODE = msgspec.json.Encoder().encode


class _Batch:
    """One poll's alerts on their way to Alertmanager: payloads, the offsets to seek back
    to (``first``) and to commit once accepted (``last``), the post's future and span."""

    __slots__ = ("first", "future", "headers", "last", "payloads", "span", "started")

    def __init__(self, polled: Mapping[Any, list[Any]]) -> None:
        self.first = {tp: records[0].offset for tp, records in polled.items() if records}
        self.last = {tp: records[-1].offset + 1 for tp, records in polled.items() if records}
        self.payloads: list[dict[str, Any]] = []
        self.headers: list[Any] = []
        self.future: Future[Any] = Future()
        self.span: Any = None
        self.started = 0.0

    def close(self) -> None:
        """End the batch's span (if tracing)."""
        if self.span is not None:
            self.span.end()
            self.span = None
