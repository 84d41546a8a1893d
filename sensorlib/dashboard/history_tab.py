"""The History tab of one session: any sensors over any period of the archive, zoomable.

The readings come from :func:`sensorlib.replay.reader.read_readings` (the Iceberg archive, plus
Kafka's tail not archived yet), read in a worker thread so the page and the other sessions
stay responsive. They are drawn by :class:`sensorlib.notebook.plots.HistoryView`, the same view a
notebook shows (:func:`sensorlib.notebook.plots.history_view`): downsampled to the visible range
with MinMaxLTTB on every zoom or pan, down to single readings. Sensor ids and locations
reach the page only as widget options, legend text or escaped HTML.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from types import SimpleNamespace
from typing import Any

import pandas as pd
import panel as pn

from sensorlib.config import Settings
from sensorlib.dashboard.kafka_tab import _dark_plot
from sensorlib.dashboard.theme import WIDGET_CSS
from sensorlib.dashboard.theme import html_pane as _html
from sensorlib.notebook import plots

__all__ = ["PERIODS", "HistoryTab", "HistoryView", "read_history"]

log = logging.getLogger(__name__)

HistoryView = plots.HistoryView

#: The periods offered (label -> how far back from now).
PERIODS = {"Last 6 hours": "6h", "Last 24 hours": "1D", "Last 7 days": "7D",
           "Last 30 days": "30D", "Last 90 days": "90D"}
_COLUMNS = ["sensorId", "location", "timestamp", "temperature", "humidity"]


def read_history(settings: Settings, start: pd.Timestamp, end: pd.Timestamp,
                 sensors: list[str] | None) -> pd.DataFrame:
    """The readings the tab draws: archive + Kafka tail, only the columns it needs."""
    from sensorlib.replay.reader import read_readings

    frame = read_readings(start, end, sensors or None, settings=settings, source="auto",
                          progress=False)
    out = frame[_COLUMNS]
    out.attrs = dict(frame.attrs)
    return out


#: The narrowest time range a zoom goes to: a few readings per sensor, never an empty plot.
MIN_ZOOM = pd.Timedelta("1min")


class HistoryTab:
    """Pick sensors, a period and a quantity; draws a zoomable :class:`HistoryView`."""

    def __init__(self, settings: Settings, *, width: int = 1200) -> None:
        self.settings = settings
        self.width = width
        # A native multi-select: Bokeh's MultiChoice renders option labels as HTML
        # (Choices.js allowHTML), a sensor id from Kafka must stay text.
        self.sensors = pn.widgets.MultiSelect(name="Sensors (none picked = all)", options=[],
                                              size=4, width=300, stylesheets=[WIDGET_CSS])
        self.period = pn.widgets.Select(name="Period", options=list(PERIODS),
                                        value="Last 7 days", width=160,
                                        stylesheets=[WIDGET_CSS])
        self.field = pn.widgets.Select(name="Quantity",
                                       options={"Temperature (°C)": "temperature",
                                                "Humidity (%)": "humidity"},
                                       width=170, stylesheets=[WIDGET_CSS])
        self.show = pn.widgets.Button(name="Show", button_type="primary", width=90,
                                      align="end")
        self.status = _html('<div class="history-status">Pick sensors and a period, then '
                            "<b>Show</b>.</div>", sizing_mode="stretch_width")
        self.resolution = _html("", sizing_mode="stretch_width")
        self.chart = pn.Column(sizing_mode="stretch_width", min_height=400)
        self.view: plots.HistoryView | None = None
        self.frame: pd.DataFrame | None = None
        self._loading = False
        self._loaded_options = False
        self.show.on_click(self._on_show)
        self.field.param.watch(lambda _: self._redraw(), "value")
        self.layout = pn.Column(
            pn.Row(self.sensors, self.period, self.field, self.show),
            self.status, self.chart, self.resolution,
            _html('<div class="hint">Scroll on the chart to zoom the time axis, drag to pan, '
                  "the ↻ tool resets. Each zoom redraws at most about "
                  f"{width:,} points per sensor (MinMaxLTTB keeps every spike); zoomed in far "
                  "enough, every reading is drawn with a marker. Times in UTC. A silence over "
                  f"{int(plots.HISTORY_GAP.total_seconds())} s breaks a line.</div>"),
            sizing_mode="stretch_width",
        )

    def activate(self) -> None:
        """Called when the tab is shown: the first time, draw the default period (every
        sensor; the picker then lists the sensors it found)."""
        if not self._loaded_options:
            self._loaded_options = True
            if self.view is None and not self._loading:
                pn.state.execute(self.load)

    async def _on_show(self, _event: Any = None) -> None:
        await self.load()

    async def load(self) -> None:
        """Read the chosen period (in a worker thread) and draw it."""
        if self._loading:
            return
        self._loading = True
        self.show.disabled = True
        end = pd.Timestamp.now(tz="UTC").ceil("min")
        start = end - pd.Timedelta(PERIODS[self.period.value])
        sensors = list(self.sensors.value)
        self.status.object = (f'<div class="history-status">Reading {html.escape(self.period.value)}'
                              " from the archive and Kafka…</div>")
        started = time.perf_counter()
        try:
            frame = await asyncio.to_thread(read_history, self.settings, start, end, sensors)
        except Exception as exc:  # noqa: BLE001 - shown, the page stays usable
            log.warning("history tab: reading failed: %s", exc)
            self.status.object = ('<div class="kafka-banner" role="alert">The history could not '
                                  f"be read: {html.escape(str(exc))}</div>")
            return
        finally:
            self._loading = False
            self.show.disabled = False
        read_s = time.perf_counter() - started
        self.frame = frame
        found = [str(x) for x in frame["sensorId"].unique()] if len(frame) else []
        self.sensors.options = sorted(set(self.sensors.options) | set(found))
        self._redraw(start=start, end=end)
        warnings = frame.attrs.get("warnings") or []
        note = "".join(f"<div class='warn'>⚠ {html.escape(str(w))}</div>" for w in warnings)
        self.status.object = (
            f'<div class="history-status">{len(frame):,} readings of '
            f"{frame['sensorId'].nunique() if len(frame) else 0} sensors, "
            f"{start:%d %b %Y %H:%M} to {end:%d %b %Y %H:%M} UTC "
            f"({frame.attrs.get('from_archive', 0):,} from the archive, "
            f"{frame.attrs.get('from_kafka', 0):,} from Kafka), read in {read_s:.1f} s.</div>"
            + note)

    def _redraw(self, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
                ) -> None:
        if self.frame is None:
            return
        view = plots.HistoryView(self.frame, self.field.value, width=self.width)
        view.on_draw.append(lambda _r: self._show_resolution())
        self.view = view
        fig = view.figure()  # a zoom updates its sources only (no HoloViews round trip)
        _dark_plot(SimpleNamespace(state=fig), None)
        fig.x_range.min_interval = MIN_ZOOM.total_seconds() * 1000  # ms on a datetime axis
        pane = pn.pane.Bokeh(fig, sizing_mode="stretch_width", height=view.height + 20)
        self.chart.objects = [pane]
        self._show_resolution()

    def _show_resolution(self) -> None:
        if self.view is None:
            return
        r = self.view.resolution
        # data-* attributes: what the browser test reads; the text is for the analyst.
        self.resolution.object = (
            f'<div class="history-resolution" data-visible="{int(r.get("visible", 0))}" '
            f'data-raw="{int(bool(r.get("raw")))}" data-span="{float(r.get("span_seconds", 0)):.0f}">'
            f"{html.escape(self.view.summary())}</div>")
