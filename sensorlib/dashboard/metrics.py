"""The dashboard server's own Prometheus metrics, served at ``GET /metrics``.

One registry per server process (``panel serve`` runs every browser session in one
process, sharing one feed):

- ``sensorlib_dashboard_sessions`` (gauge): browser sessions open now;
- ``sensorlib_dashboard_sessions_opened_total`` (counter);
- ``sensorlib_dashboard_push_duration_seconds`` (histogram): from the moment the feed put a
  record into the shared state (after Kafka delivered it to the feed's consumer and it was
  parsed) to the end of the session's periodic callback that handed the change to that
  session's websocket — one observation per push that carried new records, per session.
  It does not include the network or the browser's rendering, nor the time the record
  waited in Kafka (the processor's ``sensorlib_event_to_alert_seconds`` covers that side);
- ``sensorlib_dashboard_records_total{topic}`` (counter): records the feed consumed (read
  at scrape time from the feed's own count; back-fill included);
- ``sensorlib_dashboard_heap_bytes{kind}`` (gauge, under jemalloc only: see
  :mod:`sensorlib.dashboard.allocator`): bytes in live objects (``allocated``), in pages
  holding some (``active``) and held in RAM (``resident``).

The handler is a Tornado route. ``sensorlib dashboard`` (and ``sensorlib up``) add it with
``--plugins sensorlib.dashboard.metrics``; a plain ``panel serve dashboards/live.py`` gets
it the same way (``panel serve dashboards/live.py --plugins sensorlib.dashboard.metrics``),
since Panel mounts the ``ROUTES`` of every ``--plugins`` module. The handler checks the
Host header itself too, so it is guarded under a plain ``panel serve`` as well.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from tornado.web import RequestHandler

from sensorlib.config import Settings
from sensorlib.services.hosts import host_allowed

__all__ = ["ROUTES", "DashboardMetrics", "MetricsHandler", "dashboard_metrics"]

#: Buckets of the push latency (seconds): the push period is 0.25 s.
PUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DashboardMetrics:
    """The dashboard server's metrics (one per process: :func:`dashboard_metrics`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("sensorlib_dashboard_sessions", "Browser sessions open now",
                              registry=r)
        self.opened = Counter("sensorlib_dashboard_sessions_opened", "Browser sessions opened "
                              "since the server started", registry=r)
        self.push_seconds = Histogram(
            "sensorlib_dashboard_push_duration_seconds", "From a record entering the "
            "dashboard's state (delivered by Kafka to the feed, parsed) to the end of the "
            "session callback that handed the change to the session's websocket",
            buckets=PUSH_BUCKETS, registry=r)
        r.register(_FeedCollector())
        r.register(_HeapCollector())

    def session_opened(self) -> None:
        """Count a session that opened (call :meth:`session_closed` when it ends)."""
        self.sessions.inc()
        self.opened.inc()

    def session_closed(self) -> None:
        """Count a session that ended."""
        self.sessions.dec()

    def text(self) -> bytes:
        """The exposition text of the registry."""
        return generate_latest(self.registry)


class _FeedCollector:
    """``sensorlib_dashboard_records_total{topic}`` from the running feeds' own counts."""

    def collect(self) -> Iterable[CounterMetricFamily]:
        from sensorlib.dashboard.feed import running_feeds

        family = CounterMetricFamily("sensorlib_dashboard_records", "Records the dashboard's "
                                     "feed consumed from Kafka (back-fill included)",
                                     labels=["topic"])
        counts: dict[str, int] = {}
        for feed in running_feeds():
            for pump in (feed.readings, feed.alerts):
                counts[pump.topic] = counts.get(pump.topic, 0) + pump.records
        for topic, count in sorted(counts.items()):
            family.add_metric([topic], count)
        yield family


class _HeapCollector:
    """``sensorlib_dashboard_heap_bytes{kind}`` from jemalloc's statistics (none without)."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from sensorlib.dashboard.allocator import heap_stats

        stats = heap_stats()
        if stats is None:
            return
        family = GaugeMetricFamily("sensorlib_dashboard_heap_bytes", "The dashboard server's "
                                   "heap (jemalloc): bytes in live objects (allocated), in "
                                   "pages holding some (active), held in RAM (resident)",
                                   labels=["kind"])
        for kind, value in stats.items():
            family.add_metric([kind], value)
        yield family


_METRICS: DashboardMetrics | None = None
_LOCK = threading.Lock()


def dashboard_metrics() -> DashboardMetrics:
    """This process's :class:`DashboardMetrics` (created on first use)."""
    global _METRICS
    with _LOCK:
        if _METRICS is None:
            _METRICS = DashboardMetrics()
        return _METRICS


class MetricsHandler(RequestHandler):
    """``GET /metrics``: the dashboard's metrics in Prometheus's text format.

    Refuses (400) a Host outside ``Settings.hosts()``, like every other route of
    ``sensorlib dashboard`` (where the server-wide guard has refused it already).
    """

    def get(self) -> None:
        """Answer the scrape."""
        names = Settings.from_env().hosts()
        if not host_allowed(self.request.headers.get("Host"), names, None):
            self.set_status(400)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("This server does not answer to that Host name "
                        "(see SENSORLIB_ALLOWED_HOSTS).\n")
            return
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(dashboard_metrics().text())


#: What ``panel serve --plugins sensorlib.dashboard.metrics`` mounts.
ROUTES = [(r"/metrics", MetricsHandler)]
