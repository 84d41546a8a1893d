"""The Panel layout of the live dashboard: sensor cards, alert feed, the Kafka and Ops tabs.

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
import time
from typing import Any

import holoviews as hv
import panel as pn

from sensorlib.config import Settings
from sensorlib.dashboard import render
from sensorlib.dashboard.feed import shared_feed
from sensorlib.dashboard.hosts import host_allowed
from sensorlib.dashboard.kafka_tab import KAFKA_EVERY, KafkaView
from sensorlib.dashboard.kafka_view import shared_monitor
from sensorlib.dashboard.live_tab import PAGE_SIZE, LiveView
from sensorlib.dashboard.metrics import dashboard_metrics
from sensorlib.dashboard.ops_tab import OPS_EVERY, OpsView, shared_ops
from sensorlib.dashboard.theme import TABS_CSS
from sensorlib.dashboard.theme import html_pane as _html

__all__ = ["PAGE_SIZE", "KafkaView", "LiveView", "OpsView", "build_app", "refused_page",
           "request_host"]

log = logging.getLogger(__name__)

#: Push period of each session (ms): new data reaches the browser within about this.
PUSH_MS = 250


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


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
    ops_monitor = shared_ops(settings)
    ops = OpsView(ops_monitor)
    live.traces = lambda: ops_monitor.zipkin_traces
    tabs = pn.Tabs(("Live", live.layout), ("Kafka", kafka.layout), ("Ops", ops.layout),
                   dynamic=True, sizing_mode="stretch_width", stylesheets=[TABS_CSS])
    start = asyncio.get_event_loop().time() if _loop_running() else 0.0
    metrics = dashboard_metrics()

    def push() -> None:
        with pn.io.hold():
            waited_since = live.refresh(asyncio.get_event_loop().time())
        # The hold's end handed the changes to the session's websocket.
        if waited_since is not None:
            metrics.push_seconds.observe(max(0.0, time.monotonic() - waited_since))

    def push_kafka() -> None:
        if tabs.active == 1:  # only while the Kafka tab is visible
            kafka.refresh(asyncio.get_event_loop().time())

    def push_ops() -> None:
        if tabs.active == 2:
            ops.refresh(asyncio.get_event_loop().time())

    def on_tab(event: Any) -> None:
        if event.new == 1:
            kafka.refresh(asyncio.get_event_loop().time())
        elif event.new == 2:
            ops.refresh(asyncio.get_event_loop().time())

    tabs.param.watch(on_tab, "active")
    callbacks = [pn.state.add_periodic_callback(push, period=PUSH_MS),
                 pn.state.add_periodic_callback(push_kafka, period=int(KAFKA_EVERY * 1000)),
                 pn.state.add_periodic_callback(push_ops, period=int(OPS_EVERY * 500))]
    metrics.session_opened()

    def cleanup(_context: Any) -> None:
        metrics.session_closed()
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
