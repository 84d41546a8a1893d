"""The Panel layout of the live dashboard: sensor cards, alert feed and the Kafka tab.

:func:`build_app` is called once per browser session by ``panel serve``. It attaches the
session to the process-wide feed and monitor and registers a server-side periodic
callback that pushes only what changed over the session's websocket (no page polling).
Untrusted strings reach the page only through :mod:`sensorlib.dashboard.render`
(escaped) or as plain data (Bokeh, Tabulator plaintext cells).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, Range1d
from bokeh.plotting import figure

from sensorlib.config import Settings
from sensorlib.dashboard import render
from sensorlib.dashboard.feed import Feed, shared_feed
from sensorlib.dashboard.kafka_view import (
    KafkaMonitor,
    KafkaSnapshot,
    project_groups,
    shared_monitor,
)
from sensorlib.dashboard.state import Sample, SensorView, SessionCursor, utc_now

__all__ = ["KafkaView", "LiveView", "build_app"]

#: Push period of each session (ms): new data reaches the browser within about this.
PUSH_MS = 250
#: Relative times ("12 s ago") are refreshed this often even when nothing new arrived.
CLOCK_EVERY = 1.0
#: Each sparkline is redrawn from the state this often (drops points older than the window).
RESYNC_EVERY = 20.0
#: The Kafka tab refreshes this often while it is the visible tab.
KAFKA_EVERY = 3.0
ALERTS_SHOWN = 50

COLOURS = render.STATUS_COLOURS
TEMP_COLOUR = "#ff9f43"
HUM_COLOUR = "#54a0ff"

CSS = """
:host { --muted: #9aa4b2; --faint: #7d8590; color: #e6e6e6;
        font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
.sensor-card { padding: 2px 2px 0 2px; }
.card-head { display: flex; justify-content: space-between; align-items: center; gap: 8px; }
.sensor-id { font-weight: 650; font-size: 1.05em; overflow-wrap: anywhere; }
.badge { font-size: .68em; padding: 2px 9px; border-radius: 10px; font-weight: 700;
         letter-spacing: .06em; white-space: nowrap; }
.badge-normal { background: #163d24; color: #8ff0b0; }
.badge-warning { background: #5c4300; color: #ffd180; }
.badge-critical { background: #ff3b3b; color: #fff; animation: pulse 1.2s ease-in-out infinite; }
@keyframes pulse { 50% { opacity: .55; } }
.location { color: var(--muted); font-size: .85em; margin-top: 2px; overflow-wrap: anywhere; }
.values { display: flex; gap: 22px; margin-top: 6px; font-size: 1.9em; font-weight: 600;
          font-variant-numeric: tabular-nums; }
.values small { font-size: .45em; color: var(--muted); font-weight: 500; }
.temperature { color: #ffcf9e; } .humidity { color: #a9ceff; }
.status-warning .value { color: #ffc46b; }
.status-critical .value { color: #ff6b6b; }
.updated { color: var(--faint); font-size: .75em; margin-top: 2px; }
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
"""

TABS_CSS = """
.bk-header .bk-tab { color: #c9d1d9; font-size: 15px; font-weight: 600; padding: 6px 18px; }
.bk-header .bk-tab.bk-active { color: #ff9f43; }
"""

WIDGET_CSS = "label { color: #c9d1d9 !important; font-weight: 600; }"


def _html(obj: str = "", **kwargs: Any) -> pn.pane.HTML:
    # Escaping is render's job; sanitize_html would also strip our data attributes.
    return pn.pane.HTML(obj, stylesheets=[CSS], margin=0, **kwargs)


def _sparkline(label: str, colour: str) -> tuple[Any, ColumnDataSource]:
    source = ColumnDataSource(data={"t": [], "v": []})
    fig = figure(height=62, width=132, toolbar_location=None, x_axis_type="datetime",
                 min_border=2, outline_line_color=None, title=label,
                 x_range=Range1d(0, 1), background_fill_color=None, border_fill_color=None)
    fig.title.text_font_size = "9px"
    fig.title.text_color = "#9aa4b2"
    fig.title.text_font_style = "normal"
    fig.axis.visible = False
    fig.grid.visible = False
    fig.line("t", "v", source=source, line_color=colour, line_width=1.6)
    return fig, source


def _columns(samples: list[Sample]) -> tuple[list[float], list[float], list[float]]:
    ts = [s.timestamp.timestamp() * 1000 for s in samples]
    return ts, [s.temperature for s in samples], [s.humidity for s in samples]


class SensorCard:
    """One sensor's card: escaped text, status colour and two sparklines."""

    def __init__(self, sensor_id: str, window: timedelta) -> None:
        self.sensor_id = sensor_id
        self.window_ms = window.total_seconds() * 1000
        self.text = _html(sizing_mode="stretch_width")
        self.temp_fig, self.temp_src = _sparkline("temperature · 5 min", TEMP_COLOUR)
        self.hum_fig, self.hum_src = _sparkline("humidity · 5 min", HUM_COLOUR)
        self.layout = pn.Column(
            self.text,
            pn.Row(pn.pane.Bokeh(self.temp_fig, margin=0), pn.pane.Bokeh(self.hum_fig, margin=0),
                   margin=0),
            css_classes=["sensor-box", "status-normal"], stylesheets=[CARD_CSS],
            width=300, margin=6,
        )
        self.view: SensorView | None = None
        self.synced_at = 0.0

    def show(self, view: SensorView, now: datetime) -> None:
        """Update the text and the status colour (only what differs is sent)."""
        self.view = view
        html = render.sensor_card(view, now)
        if self.text.object != html:
            self.text.object = html
        classes = ["sensor-box", f"status-{view.status}"]
        if self.layout.css_classes != classes:
            self.layout.css_classes = classes

    def plot(self, samples: list[Sample], full: bool, at: float) -> None:
        """Append new samples to the sparklines, or redraw them when ``full``."""
        if not samples and not full:
            return
        ts, temps, hums = _columns(samples)
        # Each source gets its own time list: Bokeh extends streamed lists in place.
        if full:
            self.temp_src.data = {"t": ts, "v": temps}
            self.hum_src.data = {"t": list(ts), "v": hums}
            self.synced_at = at
        else:
            # Rollover bounds the browser's copy too; the periodic full redraw trims by time.
            self.temp_src.stream({"t": ts, "v": temps}, rollover=3000)
            self.hum_src.stream({"t": list(ts), "v": hums}, rollover=3000)
        times = self.temp_src.data["t"]
        if len(times):
            # The last 5 minutes, or less while there is less: the line fills the card.
            start = max(times[0], times[-1] - self.window_ms)
            for fig in (self.temp_fig, self.hum_fig):
                fig.x_range.start = start
                fig.x_range.end = max(times[-1], start + 1)


class LiveView:
    """The live tab of one session: header figures, Kafka banner, cards and alert feed."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.state = feed.state
        self.cursor = SessionCursor(self.state)
        self.cards: dict[str, SensorCard] = {}
        self.stats = _html(sizing_mode="stretch_width")
        self.banner = _html(sizing_mode="stretch_width", visible=False)
        self.waiting = _html('<div class="waiting">Waiting for the first readings from Kafka…</div>')
        self.grid = pn.FlexBox(self.waiting, gap="4px", sizing_mode="stretch_width")
        self.feed_pane = _html(render.alert_feed([], utc_now()), sizing_mode="stretch_width")
        alerts = pn.Column(_html("<h3>Alerts <small>(newest first)</small></h3>"), self.feed_pane,
                           width=430, margin=(6, 10), scroll=True, height=760)
        self.layout = pn.Column(
            self.banner, self.stats,
            pn.Row(pn.Column(_html("<h3>Sensors</h3>"), self.grid, sizing_mode="stretch_width"),
                   alerts, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        self._clock = 0.0

    def refresh(self, at: float) -> None:
        """Push the changes since the last call (the session's periodic callback)."""
        now = utc_now()
        update = self.cursor.poll()
        tick = at - self._clock >= CLOCK_EVERY
        for sid in update.gone_sensors:
            self.cards.pop(sid, None)
        for view in update.sensors:
            card = self.cards.get(view.sensor_id)
            if card is None:
                card = self.cards[view.sensor_id] = SensorCard(view.sensor_id, self.state.window)
            card.show(view, now)
            samples, full = update.samples[view.sensor_id]
            card.plot(samples, full, at)
        if update.new_sensors or update.gone_sensors:
            ordered = [self.cards[sid].layout for sid in sorted(self.cards)]
            self.grid.objects = ordered or [self.waiting]
        if tick:
            self._clock = at
            shown = {v.sensor_id for v in update.sensors}
            for sid, card in self.cards.items():
                if card.view is not None and sid not in shown:
                    card.show(card.view, now)
                if at - card.synced_at > RESYNC_EVERY:
                    card.plot(self.state.window_samples(sid), True, at)
            self._set(self.banner, render.kafka_banner(self.state.kafka,
                                                       self.feed.settings.bootstrap_servers, now))
            self.banner.visible = not self.state.kafka.ok
        if update.alerts_changed or tick:
            self._set(self.feed_pane, render.alert_feed(self.state.alerts(ALERTS_SHOWN), now))
        if not update.empty or tick:
            self._set(self.stats, render.header(self.state.counts()))

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


def build_app(settings: Settings | None = None) -> pn.template.FastListTemplate:
    """The dashboard of one browser session, wired to the process-wide feed and monitor."""
    pn.extension("tabulator", design="fast", notifications=False)
    hv.extension("bokeh", logo=False)
    settings = settings or Settings.from_env()
    live = LiveView(shared_feed(settings))
    kafka = KafkaView(shared_monitor(settings))
    tabs = pn.Tabs(("Live", live.layout), ("Kafka", kafka.layout), dynamic=False,
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
        live.cards.clear()

    pn.state.on_session_destroyed(cleanup)
    live.refresh(start)
    return pn.template.FastListTemplate(
        title="sensorlib · live sensors", theme="dark", main=[tabs],
        header_background="#12161c", accent_base_color="#ff9f43",
        main_max_width="", theme_toggle=False, busy_indicator=None,
    )
