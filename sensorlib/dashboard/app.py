"""The Panel layout of the live dashboard: sensor cards, alert feed and the Kafka tab.

:func:`build_app` is called once per browser session by ``panel serve``. It attaches the
session to the process-wide feed and monitor and registers a server-side periodic
callback that pushes only what changed over the session's websocket (no page polling).
A session renders one page of cards (the worst :data:`PAGE_SIZE` sensors, or a search),
so the page costs the same with 5 sensors or 1,000.
Untrusted strings reach the page only through :mod:`sensorlib.dashboard.render`
(escaped) or as plain data (Bokeh, Tabulator plaintext cells).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn

from sensorlib.config import Settings
from sensorlib.dashboard import render
from sensorlib.dashboard.feed import Feed, shared_feed
from sensorlib.dashboard.hosts import host_allowed
from sensorlib.dashboard.kafka_view import (
    KafkaMonitor,
    KafkaSnapshot,
    project_groups,
    shared_monitor,
)
from sensorlib.dashboard.state import STATUSES, LiveState, SensorView, utc_now

__all__ = ["KafkaView", "LiveView", "build_app", "refused_page", "request_host"]

log = logging.getLogger(__name__)

#: Push period of each session (ms): new data reaches the browser within about this.
PUSH_MS = 250
#: Relative times ("12 s ago") are refreshed this often even when nothing new arrived.
CLOCK_EVERY = 1.0
#: The Kafka tab refreshes this often while it is the visible tab.
KAFKA_EVERY = 3.0
ALERTS_SHOWN = 50
#: Cards on one page: the worst this many sensors (a pager and a search reach the rest).
PAGE_SIZE = 24

COLOURS = render.STATUS_COLOURS

#: Each pane carries only the rules it needs: a stylesheet string is sent once per pane,
#: so one sheet for everything was most of the page (55 copies of 5 kB).
BASE_CSS = """
:host { --muted: #9aa4b2; --faint: #7d8590; color: #e6e6e6;
        font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
"""

CARD_TEXT_CSS = BASE_CSS + """
.sensor-card { padding: 2px 2px 0 2px; }
.card-head { display: flex; justify-content: space-between; align-items: center; gap: 8px; }
.sensor-id { font-weight: 650; font-size: 1.05em; overflow-wrap: anywhere; }
.badge { font-size: .68em; padding: 2px 9px; border-radius: 10px; font-weight: 700;
         letter-spacing: .06em; white-space: nowrap; }
.badge-normal { background: #163d24; color: #8ff0b0; }
.badge-warning { background: #5c4300; color: #ffd180; }
.badge-critical { background: #ff3b3b; color: #fff; animation: pulse 1.2s ease-in-out infinite; }
.badge-stale { background: #30363d; color: #c9d1d9; }
@keyframes pulse { 50% { opacity: .55; } }
.location { color: var(--muted); font-size: .85em; margin-top: 2px; overflow-wrap: anywhere; }
.values { display: flex; gap: 16px; margin-top: 6px; font-size: 1.9em; font-weight: 600;
          font-variant-numeric: tabular-nums; }
.values small { font-size: .45em; color: var(--muted); font-weight: 500; }
.temperature { color: #ffcf9e; } .humidity { color: #a9ceff; }
.status-warning .value { color: #ffc46b; }
.status-critical .value { color: #ff6b6b; }
.status-stale .value { color: #8b949e; }
.status-stale .updated { color: #c9d1d9; }
.updated { color: var(--faint); font-size: .75em; margin-top: 2px; }
"""

SPARK_CSS = BASE_CSS + """
.sparks { display: flex; gap: 8px; margin-top: 4px; }
.spark { margin: 0; }
.spark figcaption { color: #9aa4b2; font-size: 9px; line-height: 12px; }
.spark svg { display: block; overflow: visible; }
.sparks.muted svg { opacity: .5; }
"""

CSS = BASE_CSS + """
.board-summary { color: var(--muted); font-size: .9em; margin: 0 4px 4px 4px; line-height: 1.5; }
.board-summary .fleet { color: #e6e6e6; font-weight: 600; }
.count { font-weight: 600; font-variant-numeric: tabular-nums; }
.count-critical { color: #ff6b6b; } .count-warning { color: #ffc46b; }
.count-stale { color: #b1bac4; } .count-normal { color: #8ff0b0; }
.board-summary .more { color: #e6e6e6; font-weight: 600; }
.page-label { color: var(--muted); padding-top: 12px; text-align: center; font-size: .9em;
              white-space: nowrap; }
.stats { display: flex; flex-wrap: wrap; gap: 10px; }
.stat { background: #1b1f27; border: 1px solid #2d333b; border-radius: 8px; padding: 6px 14px;
        min-width: 110px; }
.stat-value { font-size: 1.45em; font-weight: 650; font-variant-numeric: tabular-nums; }
.stat-label { color: var(--muted); font-size: .78em; }
.stat-alerts-critical .stat-value { color: #ff6b6b; }
.stat-alerts-warning .stat-value { color: #ffc46b; }
.kafka-banner { background: #5a1217; border: 1px solid #ff3b3b; color: #ffd7d7; padding: 10px 14px;
                border-radius: 8px; font-weight: 600; }
.kafka-detail { font-weight: 400; font-size: .85em; color: #ffb3b3; margin-top: 2px; }
.alert-feed { display: flex; flex-direction: column; gap: 6px; }
.alert-row { display: grid; grid-template-columns: 74px 1fr auto; gap: 10px; align-items: start;
             background: #1b1f27; border-left: 4px solid #f5a623; border-radius: 6px;
             padding: 7px 9px; }
.alert-row.sev-critical { border-left-color: #ff3b3b; background: #261519; }
.sev { font-size: .68em; font-weight: 700; padding: 3px 0; border-radius: 4px; text-align: center;
       letter-spacing: .05em; }
.sev-badge-critical { background: #ff3b3b; color: #fff; }
.sev-badge-warning { background: #f5a623; color: #1b1f27; }
.sev-badge-normal { background: #2ecc71; color: #1b1f27; }
.alert-main { display: flex; flex-direction: column; min-width: 0; }
.alert-sensor { font-weight: 650; overflow-wrap: anywhere; }
.alert-location { color: var(--muted); font-size: .82em; overflow-wrap: anywhere; }
.alert-reason { font-size: .88em; margin-top: 2px; overflow-wrap: anywhere; }
.alert-when { color: var(--faint); font-size: .78em; white-space: nowrap; }
.no-alerts, .waiting { color: var(--muted); padding: 12px 4px; }
h3 { margin: 4px 0 8px 0; font-weight: 600; color: #cfd6df; }
"""

CARD_CSS = f"""
:host {{ background: #1b1f27; border: 1px solid #2d333b; border-left: 5px solid {COLOURS['normal']};
        border-radius: 9px; padding: 8px 10px 4px 12px; }}
:host(.status-warning) {{ border-left-color: {COLOURS['warning']}; }}
:host(.status-critical) {{ border-left-color: {COLOURS['critical']}; background: #2a1518;
        box-shadow: 0 0 0 1px {COLOURS['critical']}, 0 0 16px rgba(255, 59, 59, .45); }}
:host(.status-stale) {{ border-left-color: {COLOURS['stale']}; background: #171a1f;
        border-style: dashed solid dashed solid; }}
"""

TABS_CSS = """
.bk-header .bk-tab { color: #c9d1d9; font-size: 15px; font-weight: 600; padding: 6px 18px; }
.bk-header .bk-tab.bk-active { color: #ff9f43; }
"""

WIDGET_CSS = "label { color: #c9d1d9 !important; font-weight: 600; }"


def _minify(css: str) -> str:
    """Whitespace out: every pane carries its sheet, so bytes here are bytes per card."""
    return " ".join(css.split())


CSS, CARD_TEXT_CSS, SPARK_CSS, CARD_CSS, TABS_CSS = (
    _minify(c) for c in (CSS, CARD_TEXT_CSS, SPARK_CSS, CARD_CSS, TABS_CSS))


def _html(obj: str = "", css: str = CSS, **kwargs: Any) -> pn.pane.HTML:
    # Escaping is render's job; sanitize_html would also strip our data attributes.
    return pn.pane.HTML(obj, stylesheets=[css], margin=0, **kwargs)


class SensorCard:
    """One card slot of a session: escaped text, status colour and two SVG sparklines.

    A session keeps at most :data:`PAGE_SIZE` of them and points them at whichever
    sensors its page shows. The text (relative times) changes every second; the
    sparklines only when the sensor's samples do, so they are a pane of their own.
    """

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self.drawn: tuple[str, int, bool] | None = None  # sensor, version, stale drawn
        self.text = _html(css=CARD_TEXT_CSS, sizing_mode="stretch_width")
        self.sparks = _html(render.sparklines([]), css=SPARK_CSS, sizing_mode="stretch_width")
        self.layout = pn.Column(
            self.text, self.sparks,
            css_classes=["sensor-box", "status-normal"], stylesheets=[CARD_CSS],
            width=248, margin=6,
        )
        self.view: SensorView | None = None

    def show(self, view: SensorView, now: datetime) -> None:
        """Update the text and the status colour (only what differs is sent)."""
        self.view = view
        html = render.sensor_card(view, now)
        if self.text.object != html:
            self.text.object = html
        classes = ["sensor-box", f"status-{view.status}"]
        if self.layout.css_classes != classes:
            self.layout.css_classes = classes

    def sync(self, state: LiveState, view: SensorView) -> None:
        """Redraw the sparklines when the slot shows another sensor or its samples changed."""
        key = (view.sensor_id, view.version, view.status == "stale")
        if key == self.drawn:
            return
        self.drawn = key
        html = render.sparklines(state.window_samples(view.sensor_id), self.window,
                                 muted=key[2])
        if self.sparks.object != html:
            self.sparks.object = html


STATUS_OPTIONS = {"all statuses": "all", **{status: status for status in STATUSES}}


class LiveView:
    """The live tab of one session: header figures, Kafka banner, one page of cards, alerts.

    However many sensors there are, the page holds at most :data:`PAGE_SIZE` cards, the
    worst first; a search box, a status filter and a pager reach the others.
    """

    def __init__(self, feed: Feed, page_size: int = PAGE_SIZE) -> None:
        self.feed = feed
        self.state = feed.state
        self.page_size = page_size
        self.page = 0
        self.slots: list[SensorCard] = []
        self.stats = _html(sizing_mode="stretch_width")
        self.banner = _html(sizing_mode="stretch_width", visible=False)
        self.waiting = _html('<div class="waiting">Waiting for the first readings from Kafka…</div>')
        self.grid = pn.FlexBox(self.waiting, gap="4px", sizing_mode="stretch_width")
        self.summary = _html(sizing_mode="stretch_width")
        self.search = pn.widgets.TextInput(placeholder="Search sensor id or location",
                                           width=260, stylesheets=[WIDGET_CSS],
                                           css_classes=["sensor-search"])
        self.status = pn.widgets.Select(options=STATUS_OPTIONS, value="all", width=150,
                                        stylesheets=[WIDGET_CSS], css_classes=["status-filter"])
        self.prev = pn.widgets.Button(name="◀ Previous", width=110, disabled=True,
                                      css_classes=["page-prev"])
        self.next = pn.widgets.Button(name="Next ▶", width=90, disabled=True,
                                      css_classes=["page-next"])
        self.page_label = _html(width=100)
        self.search.param.watch(self._on_filter, "value_input")
        self.status.param.watch(self._on_filter, "value")
        self.prev.on_click(lambda _: self._turn(-1))
        self.next.on_click(lambda _: self._turn(1))
        self.feed_pane = _html(render.alert_feed([], utc_now()), sizing_mode="stretch_width")
        alerts = pn.Column(_html("<h3>Alerts <small>(newest first)</small></h3>"), self.feed_pane,
                           width=400, margin=(6, 10), scroll=True, height=760)
        # Flex boxes wrap: at 1280 px the pager goes under the search rather than under the
        # alert column.
        controls = pn.FlexBox(_html("<h3>Sensors</h3>", width=90), self.search, self.status,
                              pn.Row(self.prev, self.page_label, self.next, margin=0),
                              align_items="center", sizing_mode="stretch_width")
        self.layout = pn.Column(
            self.banner, self.stats,
            pn.Row(pn.Column(controls, self.summary, self.grid, sizing_mode="stretch_width"),
                   alerts, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        self._clock = 0.0
        self._version = -1
        self._alerts_version = -1

    # -- controls ---------------------------------------------------------------

    def _on_filter(self, _event: Any) -> None:
        self.page = 0
        self._show_board(utc_now())

    def _turn(self, step: int) -> None:
        self.page += step
        self._show_board(utc_now())

    # -- pushes -----------------------------------------------------------------

    def refresh(self, at: float) -> None:
        """Push the changes since the last call (the session's periodic callback)."""
        now = utc_now()
        tick = at - self._clock >= CLOCK_EVERY
        version = self.state.version
        if version != self._version or tick:
            self._version = version
            self._show_board(now)
        if tick:
            self._clock = at
            self._set(self.banner, render.kafka_banner(self.state.kafka,
                                                       self.feed.settings.bootstrap_servers, now))
            self.banner.visible = not self.state.kafka.ok
        alerts_version = self.state.alerts_version
        if alerts_version != self._alerts_version or tick:
            self._alerts_version = alerts_version
            self._set(self.feed_pane, render.alert_feed(self.state.alerts(ALERTS_SHOWN), now))
        self._set(self.stats, render.header(self.state.counts()))

    def _show_board(self, now: datetime) -> None:
        query = self.search.value_input or ""
        board = self.state.board(query=query, status=self.status.value, page=self.page,
                                 size=self.page_size, now=now)
        self.page = board.page
        while len(self.slots) < len(board.views):
            self.slots.append(SensorCard(self.state.window))
        for card, view in zip(self.slots, board.views, strict=False):
            card.sync(self.state, view)
            card.show(view, now)
        # Nothing yet: the waiting note; nothing matching: the summary says so.
        shown = ([card.layout for card in self.slots[:len(board.views)]]
                 or ([self.waiting] if board.total == 0 else []))
        if [id(o) for o in self.grid.objects] != [id(o) for o in shown]:
            self.grid.objects = shown
        self._set(self.summary, render.board_summary(board, query, self.status.value))
        self._set(self.page_label, f'<div class="page-label">page {board.page + 1:,} of '
                                   f"{board.pages:,}</div>")
        self.prev.disabled = board.page == 0
        self.next.disabled = board.page >= board.pages - 1

    @staticmethod
    def _set(pane: pn.pane.HTML, html: str) -> None:
        if pane.object != html:
            pane.object = html


def _table(**kwargs: Any) -> pn.widgets.Tabulator:
    # Plaintext formatters: Tabulator escapes cell text, so record values stay inert.
    return pn.widgets.Tabulator(pd.DataFrame(), disabled=True, show_index=False,
                                theme="fast", layout="fit_data_stretch",
                                sizing_mode="stretch_width", **kwargs)


def _plaintext(df: pd.DataFrame) -> dict[str, dict[str, str]]:
    return {str(c): {"type": "plaintext"} for c in df.columns}


def _set_table(table: pn.widgets.Tabulator, df: pd.DataFrame) -> None:
    table.formatters = _plaintext(df)
    table.value = df


LAG_COLOURS = ["#ff9f43", "#54a0ff", "#2ecc71"]


def _lag_plot(data: pd.DataFrame, roles: list[str]) -> hv.Overlay:
    # Always the same curves in the same order: a DynamicMap cannot add keys later.
    curves = []
    for role, colour in zip(roles, LAG_COLOURS, strict=False):
        part = data[data["group"] == role]
        curves.append(hv.Curve(part, "time", "lag", label=role).opts(color=colour))
    return hv.Overlay(curves).opts(
        hv.opts.Curve(line_width=2, tools=["hover"], framewise=True, toolbar=None),
        hv.opts.Overlay(height=240, responsive=True, legend_position="top_left",
                        title="Consumer group lag (records, last 10 min)", show_grid=True,
                        framewise=True,
                        hooks=[_dark_plot]),
    )


def _empty_lag() -> pd.DataFrame:
    # Typed columns even when empty: the first frame fixes the axis type (datetime).
    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[us]"),
                         "lag": pd.Series([], dtype="int64"),
                         "group": pd.Series([], dtype=object)})


def _dark_plot(plot: Any, _element: Any) -> None:
    """Readable axes and legend on the dark page (HoloViews' defaults are for white)."""
    fig = plot.state
    fig.background_fill_color = "#1b1f27"
    fig.border_fill_color = None
    fig.outline_line_color = "#2d333b"
    fig.title.text_color = "#cfd6df"
    for axis in fig.axis:
        axis.major_label_text_color = "#c9d1d9"
        axis.axis_label_text_color = "#c9d1d9"
        axis.axis_line_color = "#4b535d"
        axis.major_tick_line_color = "#4b535d"
    for grid in fig.grid:
        grid.grid_line_color = "#2d333b"
    for legend in fig.legend:
        legend.background_fill_color = "#12161c"
        legend.background_fill_alpha = 0.8
        legend.label_text_color = "#e6e6e6"
        legend.border_line_color = "#2d333b"


class KafkaView:
    """The Kafka tab: cluster, topics, group lag (table and chart) and a message browser."""

    def __init__(self, monitor: KafkaMonitor) -> None:
        self.monitor = monitor
        settings = monitor.settings
        self.summary = _html(sizing_mode="stretch_width")
        self.brokers = _table(name="brokers")
        self.topics = _table(name="topics")
        self.groups = _table(name="groups")
        self.lag_pipe = hv.streams.Pipe(data=_empty_lag())
        roles = [role for _, role, _ in project_groups(settings)]
        self.lag_chart = pn.pane.HoloViews(
            hv.DynamicMap(lambda data: _lag_plot(data, roles), streams=[self.lag_pipe]),
            sizing_mode="stretch_width", height=250)
        self.topic = pn.widgets.Select(name="Topic", options=list(settings.topics), width=280,
                                       stylesheets=[WIDGET_CSS])
        self.sensor = pn.widgets.TextInput(name="Sensor (key contains)", placeholder="sensor-01",
                                           width=220, stylesheets=[WIDGET_CSS])
        self.messages = _table(name="messages", page_size=25, pagination="local")
        self.topic.param.watch(lambda _: self.schedule_browse(), "value")
        self.sensor.param.watch(lambda _: self.schedule_browse(), "value")
        self.layout = pn.Column(
            self.summary,
            pn.Row(pn.Column(_html("<h3>Brokers</h3>"), self.brokers, width=420),
                   pn.Column(_html("<h3>Topics</h3>"), self.topics, sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            _html("<h3>Consumer groups</h3>"), self.groups, self.lag_chart,
            _html("<h3>Message browser <small>(latest records)</small></h3>"),
            pn.Row(self.topic, self.sensor), self.messages,
            sizing_mode="stretch_width",
        )
        self._shown_at: datetime | None = None
        self._browsing = False
        self._browse_at = 0.0

    def refresh(self, at: float) -> None:
        """Show the monitor's latest snapshot (cheap: it is polled in the background)."""
        snap = self.monitor.snapshot
        if snap.taken_at != self._shown_at:
            self._shown_at = snap.taken_at
            self._show(snap)
        if at - self._browse_at >= KAFKA_EVERY:
            self.schedule_browse()

    def _show(self, snap: KafkaSnapshot) -> None:
        self.summary.object = _summary_html(snap)
        _set_table(self.brokers, pd.DataFrame(
            [{"id": b["broker_id"], "host": b["host"], "port": b["port"],
              "role": "controller" if b["broker_id"] == snap.controller_id else "broker"}
             for b in snap.brokers]))
        _set_table(self.topics, pd.DataFrame(
            [{"topic": t.name, "partitions": t.partitions, "messages": t.messages,
              "end offsets": "  ".join(f"p{p}: {o:,}" for p, o in sorted(t.end.items()))}
             for t in snap.topics]))
        rows = []
        for g in snap.groups:
            for p in sorted(g.end) or [None]:
                rows.append({"group": g.group, "role": g.role, "state": g.state,
                             "members": g.members, "topic": g.topic,
                             "partition": "" if p is None else p,
                             "committed": "" if p is None or g.committed.get(p) is None
                             else g.committed[p],
                             "end": "" if p is None else g.end[p],
                             "lag": "" if p is None else g.lag(p)})
        _set_table(self.groups, pd.DataFrame(rows))
        history = self.monitor.history.series()
        frame = pd.DataFrame(
            [{"time": t.replace(tzinfo=None), "lag": lag, "group": group}
             for group, points in history.items() for t, lag in points])
        self.lag_pipe.send(frame if len(frame) else _empty_lag())

    def schedule_browse(self) -> None:
        """Refresh the message browser without blocking the session (Kafka reads in a thread)."""
        if self._browsing:
            return
        self._browsing = True
        self._browse_at = asyncio.get_event_loop().time() if _loop_running() else 0.0
        pn.state.execute(self._browse)

    async def _browse(self) -> None:
        try:
            records = await asyncio.to_thread(
                self.monitor.latest_records, self.topic.value, sensor=self.sensor.value or "")
            df = pd.DataFrame([{"timestamp": r.timestamp.strftime("%H:%M:%S.%f")[:-3],
                                "partition": r.partition, "offset": r.offset,
                                "key": r.key or "", "value": r.value} for r in records],
                              columns=["timestamp", "partition", "offset", "key", "value"])
            _set_table(self.messages, df)
        except Exception as exc:  # noqa: BLE001 — shown in the table, retried next refresh
            _set_table(self.messages, pd.DataFrame({"error": [str(exc)[:300]]}))
        finally:
            self._browsing = False


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _summary_html(snap: KafkaSnapshot) -> str:
    t = render.text
    if snap.error:
        return (f'<div class="kafka-banner">Kafka admin queries failing: {t(snap.error)}'
                f'<div class="kafka-detail">as of {t(snap.taken_at.strftime("%H:%M:%S"))} UTC'
                "</div></div>")
    return (f'<div class="stats"><div class="stat"><div class="stat-value">{len(snap.brokers)}</div>'
            '<div class="stat-label">brokers</div></div>'
            f'<div class="stat"><div class="stat-value">{len(snap.topics)}</div>'
            '<div class="stat-label">project topics</div></div>'
            f'<div class="stat"><div class="stat-value">{snap.other_groups}</div>'
            '<div class="stat-label">other consumer groups</div></div>'
            f'<div class="stat"><div class="stat-value" style="font-size:1em">'
            f'{t(snap.cluster_id or "?")}</div><div class="stat-label">cluster id · as of '
            f'{t(snap.taken_at.strftime("%H:%M:%S"))} UTC</div></div></div>')


def request_host() -> str | None:
    """The Host header of the request that opened this session (None outside a server).

    Read from the HTTP request itself, not from the copy of its headers in the session
    token, which a client could write.
    """
    doc = pn.state.curdoc
    context = getattr(doc, "session_context", None) if doc is not None else None
    request = getattr(context, "request", None) if context is not None else None
    if request is None:
        return None
    host = getattr(request, "host", None)  # the proxy forwards to the Tornado request
    return host if isinstance(host, str) else None


def refused_page(settings: Settings) -> pn.template.FastListTemplate:
    """What a session opened under a Host that is not allowed gets: no data at all."""
    names = [f"http://{name}:{settings.dashboard_port}/live" for name in settings.hosts()
             if ":" not in name]
    return pn.template.FastListTemplate(
        title="sensorlib · refused", theme="dark", main=[_html(render.refused(names))],
        header_background="#12161c", theme_toggle=False, busy_indicator=None)


def build_app(settings: Settings | None = None) -> pn.template.FastListTemplate:
    """The dashboard of one browser session, wired to the process-wide feed and monitor.

    A session whose request named a Host outside ``Settings.hosts()`` gets
    :func:`refused_page` instead: the guard of a plain ``panel serve``, which has no
    Host check of its own (``sensorlib dashboard`` refuses such requests before this).
    """
    pn.extension("tabulator", design="fast", notifications=False)
    hv.extension("bokeh", logo=False)
    settings = settings or Settings.from_env()
    host = request_host()
    if host is not None and not host_allowed(host, settings.hosts(), None):
        log.warning("refused a dashboard session for Host %r (allowed: %s)", host[:100],
                    ", ".join(settings.hosts()))
        return refused_page(settings)
    live = LiveView(shared_feed(settings))
    kafka = KafkaView(shared_monitor(settings))
    tabs = pn.Tabs(("Live", live.layout), ("Kafka", kafka.layout), dynamic=True,
                   sizing_mode="stretch_width", stylesheets=[TABS_CSS])
    start = asyncio.get_event_loop().time() if _loop_running() else 0.0
    clock = {"at": start}

    def push() -> None:
        at = asyncio.get_event_loop().time()
        clock["at"] = at
        with pn.io.hold():
            live.refresh(at)

    def push_kafka() -> None:
        if tabs.active == 1:  # only while the Kafka tab is visible
            kafka.refresh(asyncio.get_event_loop().time())

    def on_tab(event: Any) -> None:
        if event.new == 1:
            kafka.refresh(asyncio.get_event_loop().time())

    tabs.param.watch(on_tab, "active")
    callbacks = [pn.state.add_periodic_callback(push, period=PUSH_MS),
                 pn.state.add_periodic_callback(push_kafka, period=int(KAFKA_EVERY * 1000))]

    def cleanup(_context: Any) -> None:
        for cb in callbacks:
            cb.stop()
        live.slots.clear()

    pn.state.on_session_destroyed(cleanup)
    live.refresh(start)
    return pn.template.FastListTemplate(
        title="sensorlib · live sensors", theme="dark", main=[tabs],
        header_background="#12161c", accent_base_color="#ff9f43",
        main_max_width="", theme_toggle=False, busy_indicator=None,
    )
