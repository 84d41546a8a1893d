"""The Live tab of one session: header figures, the Kafka banner, one page of cards, alerts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import panel as pn

from sensorlib.dashboard import render
from sensorlib.dashboard.feed import Feed
from sensorlib.dashboard.silences import SilenceWatch
from sensorlib.dashboard.state import STATUSES, LiveState, SensorView, utc_now
from sensorlib.dashboard.theme import CARD_CSS, CARD_TEXT_CSS, SPARK_CSS, WIDGET_CSS
from sensorlib.dashboard.theme import html_pane as _html

__all__ = ["PAGE_SIZE", "LiveView", "SensorCard"]

#: Relative times ("12 s ago") are refreshed this often even when nothing new arrived.
CLOCK_EVERY = 1.0
ALERTS_SHOWN = 50
#: Cards on one page: the worst this many sensors (a pager and a search reach the rest).
PAGE_SIZE = 24


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
        #: Zipkin's per-trace URL prefix while it runs (None: alerts get no trace link).
        self.traces: Callable[[], str | None] = lambda: None
        self._traces: str | None = None
        #: Alertmanager's silences (polled in the background; None: no marks, no links).
        self.silences: SilenceWatch | None = None
        self._silences_version = -1

    # -- controls ---------------------------------------------------------------

    def _on_filter(self, _event: Any) -> None:
        self.page = 0
        self._show_board(utc_now())

    def _turn(self, step: int) -> None:
        self.page += step
        self._show_board(utc_now())

    # -- pushes -----------------------------------------------------------------

    def refresh(self, at: float) -> float | None:
        """Push the changes since the last call (the session's periodic callback).

        Returns when (``time.monotonic()``) the oldest record this push carries entered
        the state, None when it carries none (or it is the session's first push, which
        shows the back-fill): the dashboard's push-latency metric.
        """
        now = utc_now()
        tick = at - self._clock >= CLOCK_EVERY
        version = self.state.version
        waited_since = (self.state.changed_since(self._version)
                        if self._version >= 0 and version != self._version else None)
        if version != self._version or tick:
            self._version = version
            self._show_board(now)
        if tick:
            self._clock = at
            self._set(self.banner, render.kafka_banner(self.state.kafka,
                                                       self.feed.settings.bootstrap_servers, now))
            self.banner.visible = not self.state.kafka.ok
        alerts_version = self.state.alerts_version
        silences = self.silences
        silences_version = silences.version if silences is not None else -1
        if (alerts_version != self._alerts_version or tick
                or silences_version != self._silences_version):
            self._alerts_version = alerts_version
            self._silences_version = silences_version
            if tick:
                self._traces = self.traces()
            self._set(self.feed_pane, render.alert_feed(self.state.alerts(ALERTS_SHOWN), now,
                                                        self._traces, silences))
        self._set(self.stats, render.header(self.state.counts()))
        return waited_since

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
