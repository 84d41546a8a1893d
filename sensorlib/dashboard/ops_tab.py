"""The Ops tab: each service's rates, event-to-alert latency and lag, from its own ``/metrics``.

One :class:`OpsMonitor` per server process (:func:`shared_ops`) scrapes the producer's,
the processor's and the archiver's ``GET /metrics`` (the URLs of ``Settings``: host and
``*_port``) every :data:`OPS_EVERY` seconds, plus the dashboard's own registry, and keeps
the last minutes of scrapes; it also checks whether the trace and metrics viewers
(Zipkin, Prometheus: :mod:`sensorlib.observe.viewers`) answer. Nothing is counted here: every
figure is computed from the services' counters and histograms with the pure functions of
:mod:`sensorlib.dashboard.ops` — rates over the last minute, event-to-alert p50/p99 over
the last five. :class:`OpsView` shows them in a session (only while the tab is visible).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import holoviews as hv
import httpx
import pandas as pd
import panel as pn

from sensorlib.config import Settings
from sensorlib.dashboard.kafka_tab import _dark_plot
from sensorlib.dashboard.ops import (
    Samples,
    Scrape,
    counter_rate,
    parse_metrics,
    pick_window,
    total,
    window_quantile,
)
from sensorlib.dashboard.render import text
from sensorlib.dashboard.shared import PerSettings
from sensorlib.dashboard.theme import OPS_CSS
from sensorlib.dashboard.theme import html_pane as _html

__all__ = ["OPS_EVERY", "OpsFigures", "OpsMonitor", "OpsView", "ops_figures", "render_ops",
           "shared_ops"]

log = logging.getLogger(__name__)

#: Scrape period (seconds).
OPS_EVERY = 2.0
#: Rates are per second over this window; quantiles over QUANTILE_WINDOW.
RATE_WINDOW = 60.0
QUANTILE_WINDOW = 300.0
#: Scrapes kept per service (enough for the quantile window) and lag points kept.
KEEP_SECONDS = QUANTILE_WINDOW + 2 * OPS_EVERY
LAG_SPAN = 600.0
#: Only these families are kept from a scrape (the rest is not shown).
USED = ("sensorlib_readings_accepted_total", "sensorlib_readings_refused_total",
        "sensorlib_readings_processed_total", "sensorlib_alerts_total",
        "sensorlib_dead_letters_total", "sensorlib_event_to_alert_seconds_bucket",
        "sensorlib_consumer_lag_records", "sensorlib_archive_rows_total",
        "sensorlib_archive_pending_rows", "sensorlib_dashboard_records_total",
        "sensorlib_dashboard_sessions", "sensorlib_dashboard_push_duration_seconds_bucket")

#: (service, label, counter) of the rates shown, in order.
RATES = (
    ("producer", "readings accepted", "sensorlib_readings_accepted_total"),
    ("producer", "refused", "sensorlib_readings_refused_total"),
    ("processor", "processed", "sensorlib_readings_processed_total"),
    ("processor", "alerts", "sensorlib_alerts_total"),
    ("processor", "dead letters", "sensorlib_dead_letters_total"),
    ("archiver", "rows archived", "sensorlib_archive_rows_total"),
    ("dashboard", "records consumed", "sensorlib_dashboard_records_total"),
)
SERVICES = ("producer", "processor", "archiver", "dashboard")
LAGGING = ("processor", "archiver")


def metrics_urls(settings: Settings) -> dict[str, str]:
    """``{service: its /metrics URL}`` of the services the tab scrapes: ``SENSORLIB_HOST`` and
    each service's port, unless ``SENSORLIB_METRICS_URLS`` names them (e.g. other
    containers under compose)."""
    return {**{name: settings.service_url(name) + "/metrics"
               for name in ("producer", "processor", "archiver")},
            **dict(settings.metrics_urls)}


def _keep(samples: Samples) -> Samples:
    return {key: value for key, value in samples.items() if key[0] in USED}


# -- figures (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceStatus:
    """One service's scrape status."""

    name: str
    url: str
    up: bool
    error: str | None
    last_ok: float | None


@dataclass(frozen=True)
class OpsFigures:
    """Everything the Ops tab shows, computed from the scrapes."""

    at: float
    services: list[ServiceStatus]
    #: ``{(service, label): per-second rate or None}`` over :data:`RATE_WINDOW`.
    rates: dict[tuple[str, str], float | None]
    #: ``{(service, label): counter total since the service started}``.
    totals: dict[tuple[str, str], float | None]
    e2a_p50: float | None
    e2a_p99: float | None
    push_p99: float | None
    lag: dict[str, float | None]
    sessions: float | None
    viewers: dict[str, tuple[str, bool]] = field(default_factory=dict)
    #: When the latest scrape was made (None: none yet).
    scraped_at: float | None = None


def ops_figures(history: dict[str, list[Scrape]], urls: dict[str, str],
                viewers: dict[str, tuple[str, bool]], now: float) -> OpsFigures:
    """The figures of the tab from each service's scrapes (oldest first)."""
    statuses, rates, totals, lag = [], {}, {}, {}
    for name in SERVICES:
        scrapes = history.get(name, [])
        last = scrapes[-1] if scrapes else None
        last_ok = next((s.at for s in reversed(scrapes) if s.ok), None)
        statuses.append(ServiceStatus(name, urls.get(name, "(this server)"),
                                      bool(last and last.ok), last.error if last else None,
                                      last_ok))
    windows = {name: pick_window(history.get(name, []), RATE_WINDOW) for name in SERVICES}
    for service, label, metric in RATES:
        before, after = windows[service]
        rates[(service, label)] = (counter_rate(before, after, metric)
                                   if before is not None and after is not None else None)
        totals[(service, label)] = total(after.samples, metric) if after is not None else None
    for service in LAGGING:
        after = windows[service][1]
        lag[service] = (total(after.samples, "sensorlib_consumer_lag_records")
                        if after is not None else None)
    before, after = pick_window(history.get("processor", []), QUANTILE_WINDOW)
    p50 = p99 = None
    if after is not None:
        p50 = window_quantile(0.5, before, after, "sensorlib_event_to_alert_seconds")
        p99 = window_quantile(0.99, before, after, "sensorlib_event_to_alert_seconds")
    before, after = pick_window(history.get("dashboard", []), QUANTILE_WINDOW)
    push = (window_quantile(0.99, before, after, "sensorlib_dashboard_push_duration_seconds")
            if after is not None else None)
    sessions = total(after.samples, "sensorlib_dashboard_sessions") if after is not None else None
    latest = [scrapes[-1].at for scrapes in history.values() if scrapes]
    return OpsFigures(now, statuses, rates, totals, p50, p99, push, lag, sessions, viewers,
                      max(latest) if latest else None)


def _rate(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:,.0f} ms" if value < 1 else f"{value:,.2f} s"


def _count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _stat(key: str, label: str, value: str, hint: str, tone: str = "") -> str:
    return (f'<div class="stat ops-stat {tone}" data-ops="{key}" title="{text(hint)}">'
            f'<div class="stat-value">{text(value)}</div>'
            f'<div class="stat-label">{text(label)}</div></div>')


def _clock(at: float | None) -> str:
    if at is None:
        return "none yet"
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC")


def _url_cell(url: str) -> str:
    if not url.startswith("http"):
        return text(url)
    return (f'<a href="{text(url)}" target="_blank" rel="noopener noreferrer">'
            f"{text(url)}</a>")


def render_ops(figures: OpsFigures) -> str:
    """The Ops tab's HTML: headline figures, the viewers, one row per service."""
    r, t = figures.rates, figures.totals
    dead = r.get(("processor", "dead letters"))
    stats = "".join([
        _stat("accepted-rate", "readings accepted /s", _rate(r.get(("producer",
              "readings accepted"))), "producer: sensorlib_readings_accepted_total, last minute"),
        _stat("alerts-rate", "alerts /s", _rate(r.get(("processor", "alerts"))),
              "processor: sensorlib_alerts_total, last minute"),
        _stat("dlq-rate", "dead letters /s", _rate(dead),
              "processor: sensorlib_dead_letters_total, last minute",
              "ops-bad" if dead else ""),
        _stat("e2a-p50", "event → alert p50", _seconds(figures.e2a_p50),
              "processor: sensorlib_event_to_alert_seconds, last 5 minutes"),
        _stat("e2a-p99", "event → alert p99", _seconds(figures.e2a_p99),
              "processor: sensorlib_event_to_alert_seconds, last 5 minutes"),
        _stat("processor-lag", "processor lag", _count(figures.lag.get("processor")),
              "records not yet processed (sensorlib_consumer_lag_records)",
              "ops-warn" if figures.lag.get("processor") else ""),
        _stat("archiver-lag", "archiver lag", _count(figures.lag.get("archiver")),
              "records not yet read by the archiver (sensorlib_consumer_lag_records)",
              "ops-warn" if figures.lag.get("archiver") else ""),
    ])
    viewers = []
    for name, (url, running) in figures.viewers.items():
        if running:
            viewers.append(f'<a class="viewer viewer-up" data-viewer="{name}" href="{text(url)}" '
                           f'target="_blank" rel="noopener noreferrer">'
                           f'<span class="dot"></span>{name.capitalize()} ↗</a>')
        else:
            viewers.append(f'<span class="viewer viewer-down" data-viewer="{name}" '
                           f'title="start it with sensorlib up --observe">'
                           f'<span class="dot"></span>{name.capitalize()}: not running</span>')
    rows = []
    for status in figures.services:
        name = status.name
        cells = [f"{label}: <b>{_rate(r.get((name, label)))}</b>/s "
                 f'<span class="muted">({_count(t.get((name, label)))} in all)</span>'
                 for service, label, _ in RATES if service == name]
        if name in LAGGING:
            cells.append(f"lag: <b>{_count(figures.lag.get(name))}</b>")
        if name == "dashboard":
            cells.append(f"sessions: <b>{_count(figures.sessions)}</b>")
            cells.append(f"push p99: <b>{_seconds(figures.push_p99)}</b>")
        if status.up:
            state = '<span class="svc-up">● up</span>'
        elif status.last_ok is None:
            state = '<span class="svc-down">● no answer</span>'
        else:
            ago = max(0.0, figures.at - status.last_ok)
            state = f'<span class="svc-down">● down ({ago:,.0f} s)</span>'
        error = (f'<div class="svc-error">{text((status.error or "")[:160])}</div>'
                 if not status.up and status.error else "")
        rows.append(f'<tr data-service="{name}" data-up="{str(status.up).lower()}">'
                    f'<td class="svc-name">{name}</td><td>{state}{error}</td>'
                    f'<td class="svc-figures">{" · ".join(cells)}</td>'
                    f'<td class="svc-url">{_url_cell(status.url)}</td></tr>')
    return (f'<div class="ops"><div class="stats">{stats}</div>'
            f'<div class="viewers"><span class="muted">Trace and metrics viewers:</span>'
            f'{"".join(viewers)}</div>'
            '<table class="svc-table"><thead><tr><th>service</th><th>state</th>'
            '<th>rates (last minute) and totals</th><th>scraped from</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            '<div class="ops-note">Read from each service\'s own <code>/metrics</code> every '
            f"{OPS_EVERY:g} s (last: {_clock(figures.scraped_at)}); rates over the last minute, "
            "event-to-alert quantiles over the last five, estimated from the histogram's "
            "buckets as Prometheus's <code>histogram_quantile</code> does.</div>"
            "</div>")


# -- the monitor (one per process) -----------------------------------------------------------


def zipkin_traces_url(zipkin_ui: str) -> str:
    """The URL prefix of one trace in Zipkin's UI (``…/zipkin/traces/<trace id>``)."""
    return zipkin_ui.rstrip("/") + "/traces/"


class OpsMonitor:
    """Scrapes the services' ``/metrics`` and checks the viewers, in a background thread.

    ``own``: the dashboard's own exposition text (read in-process, not over HTTP).
    """

    def __init__(self, settings: Settings, own: Callable[[], bytes] | None = None,
                 every: float = OPS_EVERY) -> None:
        from sensorlib.observe.viewers import viewer_urls

        self.settings = settings
        self.urls = metrics_urls(settings)
        self.every = every
        self._own = own
        self._viewer_urls = viewer_urls(settings)
        self._history: dict[str, deque[Scrape]] = {n: deque() for n in SERVICES}
        self._lag: dict[str, deque[tuple[float, float]]] = {n: deque() for n in LAGGING}
        self._viewers: dict[str, tuple[str, bool]] = {
            name: (ui, False) for name, (ui, _) in self._viewer_urls.items()}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.version = 0

    # -- reading ---------------------------------------------------------------------

    def figures(self, now: float | None = None) -> OpsFigures:
        """The figures of the latest scrapes."""
        with self._lock:
            history = {name: list(scrapes) for name, scrapes in self._history.items()}
            viewers = dict(self._viewers)
        return ops_figures(history, {**self.urls, "dashboard": "(this server)"}, viewers,
                           time.time() if now is None else now)

    def lag_series(self) -> dict[str, list[tuple[float, float]]]:
        """``{service: [(time, total lag), …]}`` over the last :data:`LAG_SPAN` seconds."""
        with self._lock:
            return {name: list(points) for name, points in self._lag.items()}

    @property
    def zipkin_traces(self) -> str | None:
        """Zipkin's per-trace URL prefix while Zipkin answers, else None."""
        with self._lock:
            ui, running = self._viewers.get("zipkin", ("", False))
        return zipkin_traces_url(ui) if running else None

    # -- scraping --------------------------------------------------------------------

    def poll_once(self, client: httpx.Client | None = None) -> None:
        """Scrape every service and check the viewers once."""
        own_client = client is None
        client = client or httpx.Client(timeout=2.0)
        try:
            got = {name: self._scrape(client, url) for name, url in self.urls.items()}
            if self._own is not None:
                got["dashboard"] = self._parse(time.time(), self._own().decode())
            viewers = {name: (ui, self._answers(client, health))
                       for name, (ui, health) in self._viewer_urls.items()}
        finally:
            if own_client:
                client.close()
        with self._lock:
            for name, scrape in got.items():
                scrapes = self._history[name]
                scrapes.append(scrape)
                while scrapes and scrapes[0].at < scrape.at - KEEP_SECONDS:
                    scrapes.popleft()
                if name in self._lag and scrape.ok:
                    lag = total(scrape.samples, "sensorlib_consumer_lag_records")
                    if lag is not None:
                        points = self._lag[name]
                        points.append((scrape.at, lag))
                        while points and points[0][0] < scrape.at - LAG_SPAN:
                            points.popleft()
            self._viewers = viewers
            self.version += 1

    @staticmethod
    def _parse(at: float, body: str) -> Scrape:
        try:
            return Scrape(at, _keep(parse_metrics(body)))
        except ValueError as exc:
            return Scrape(at, error=f"not Prometheus text: {exc}")

    def _scrape(self, client: httpx.Client, url: str) -> Scrape:
        at = time.time()
        try:
            answer = client.get(url)
        except httpx.HTTPError as exc:
            return Scrape(at, error=f"{type(exc).__name__}: {exc}" if str(exc)
                          else type(exc).__name__)
        if answer.status_code != 200:
            return Scrape(at, error=f"HTTP {answer.status_code}")
        return self._parse(at, answer.text)

    @staticmethod
    def _answers(client: httpx.Client, url: str) -> bool:
        try:
            return client.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set():
                try:
                    self.poll_once(client)
                except Exception as exc:  # noqa: BLE001 — the tab must outlive any surprise
                    log.warning("Ops tab scrape failed: %s", exc)
                self._stop.wait(self.every)

    def start(self) -> OpsMonitor:
        """Start scraping in a daemon thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dashboard-ops", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def _start_ops(settings: Settings) -> OpsMonitor:
    from sensorlib.dashboard.metrics import dashboard_metrics

    return OpsMonitor(settings, dashboard_metrics().text).start()


_MONITORS: PerSettings[OpsMonitor] = PerSettings(_start_ops)


def shared_ops(settings: Settings) -> OpsMonitor:
    """The one running :class:`OpsMonitor` of this process for ``settings``."""
    return _MONITORS.get(settings)


# -- the tab of one session ------------------------------------------------------------------

#: Drawn in this order: the processor's line on top (both are often 0).
LAG_COLOURS = {"archiver": "#54a0ff", "processor": "#ff9f43"}


def _lag_frame(series: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    rows = [{"time": datetime.fromtimestamp(at, UTC).replace(tzinfo=None), "lag": lag,
             "service": name} for name, points in series.items() for at, lag in points]
    if not rows:
        return pd.DataFrame({"time": pd.Series([], dtype="datetime64[us]"),
                             "lag": pd.Series([], dtype="float64"),
                             "service": pd.Series([], dtype=object)})
    return pd.DataFrame(rows)


def _lag_plot(data: pd.DataFrame) -> hv.Overlay:
    curves = [hv.Curve(data[data["service"] == name], "time", "lag", label=name)
              .opts(color=colour, line_dash="dashed" if name == "archiver" else "solid")
              for name, colour in LAG_COLOURS.items()]
    top = max(1.0, float(data["lag"].max()) * 1.1) if len(data) else 1.0
    return hv.Overlay(curves).opts(
        # Lag is never negative: the axis starts at 0, with just enough room below for a
        # flat 0 line to show above the axis.
        hv.opts.Curve(line_width=2, tools=["hover"], framewise=True, toolbar=None,
                      ylim=(-0.04 * top, top)),
        hv.opts.Overlay(height=240, responsive=True, legend_position="top_left",
                        title="Consumer lag (records, last 10 min, from /metrics)",
                        show_grid=True, framewise=True, hooks=[_dark_plot]))


class OpsView:
    """The Ops tab of one session: the figures and the lag chart of the shared monitor."""

    def __init__(self, monitor: OpsMonitor) -> None:
        self.monitor = monitor
        self.body = _html(render_ops(monitor.figures()), css=OPS_CSS,
                          sizing_mode="stretch_width")
        self.lag_pipe = hv.streams.Pipe(data=_lag_frame(monitor.lag_series()))
        self.lag_chart = pn.pane.HoloViews(hv.DynamicMap(_lag_plot, streams=[self.lag_pipe]),
                                           sizing_mode="stretch_width", height=250)
        self.layout = pn.Column(self.body, self.lag_chart, sizing_mode="stretch_width")
        self._shown = -1

    def refresh(self, at: float) -> None:
        """Show the monitor's latest figures (only when it scraped again)."""
        if self.monitor.version == self._shown:
            return
        self._shown = self.monitor.version
        html = render_ops(self.monitor.figures())
        if self.body.object != html:
            self.body.object = html
        self.lag_pipe.send(_lag_frame(self.monitor.lag_series()))
