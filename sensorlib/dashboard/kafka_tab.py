"""The Kafka tab of one session: brokers, topics, consumer groups with lag over time, messages."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn

from sensorlib.dashboard import render
from sensorlib.dashboard.kafka_view import (
    ASSIGNING_ROLES,
    KafkaMonitor,
    KafkaSnapshot,
    project_groups,
    shown_topics,
)
from sensorlib.dashboard.theme import WIDGET_CSS
from sensorlib.dashboard.theme import html_pane as _html

__all__ = ["KafkaView"]

#: The Kafka tab refreshes this often while it is the visible tab.
KAFKA_EVERY = 3.0


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
        self.topic = pn.widgets.Select(name="Topic", options=list(shown_topics(settings)), width=280,
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
            _html("<h3>Consumer groups</h3>"), self.groups,
            _html('<div class="kafka-note">† assigns its partitions itself and only commits its '
                  "position: Kafka lists such a group with no members.</div>",
                  sizing_mode="stretch_width"),
            self.lag_chart,
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
        self.summary.object = render.kafka_summary(snap)
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
                state = g.state
                if g.role in ASSIGNING_ROLES and not g.members:
                    state = f"{state} †"  # explained under the table
                rows.append({"group": g.group, "role": g.role, "state": state,
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
        self._browse_at = _loop_time()
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


def _loop_time() -> float:
    """The event loop's clock, or 0.0 outside one (tests build views without a loop)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return 0.0
