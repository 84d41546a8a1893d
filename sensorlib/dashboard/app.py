"""The Panel layout of the live dashboard: sensor cards, alert feed, the Kafka and Ops tabs.

:func:`build_app` is called once per browser session by ``panel serve``. It attaches the
session to the process-wide feed and monitor and registers a server-side periodic
callback that pushes only what changed over the session's websocket (no page polling).
A session renders one page of cards (the worst :data:`PAGE_SIZE` sensors, or a search),
so the page costs the same with 5 sensors or 1,000.
Untrusted strings reach the page only through :mod:`sensorlib.dashboard.render`
(escaped) or as plain data (Bokeh, Tabulator plaintext cells).

Sessions are capped and give their memory back: at most ``SENSORLIB_MAX_SESSIONS`` are
open at once (one more gets :func:`busy_page`, a page without data or callbacks), and when a
session ends (its tab closed: Bokeh drops it once unused) :func:`release_session` stops its
callbacks and drops what Panel's process-wide state still keeps for its document (views,
templates, periodic callbacks, locations…), so that nothing refers to its widgets any more;
then the freed memory is handed back to the system (:func:`sensorlib.dashboard.shared.trim_memory`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from typing import Any

import holoviews as hv
import panel as pn

from sensorlib.config import Settings
from sensorlib.dashboard import render
from sensorlib.dashboard.feed import shared_feed
from sensorlib.dashboard.history_tab import HistoryTab
from sensorlib.dashboard.kafka_tab import KAFKA_EVERY, KafkaView
from sensorlib.dashboard.kafka_view import shared_monitor
from sensorlib.dashboard.live_tab import PAGE_SIZE, LiveView
from sensorlib.dashboard.metrics import dashboard_metrics
from sensorlib.dashboard.ops_tab import OPS_EVERY, OpsView, shared_ops
from sensorlib.dashboard.shared import trim_memory_soon
from sensorlib.dashboard.silences import shared_silences
from sensorlib.dashboard.theme import TABS_CSS
from sensorlib.dashboard.theme import html_pane as _html
from sensorlib.services.hosts import host_allowed

__all__ = [
    "PAGE_SIZE",
    "KafkaView",
    "LazyTabs",
    "LiveView",
    "OpsView",
    "build_app",
    "busy_message",
    "busy_page",
    "open_sessions",
    "refused_page",
    "release_session",
    "request_host",
]

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


#: Ids of the sessions showing the dashboard now (busy and refused pages not counted).
_OPEN: set[str] = set()
_OPEN_LOCK = threading.Lock()
#: Per-document entries of Panel's process-wide state (``pn.state``) that Panel itself
#: does not always drop when a session ends; each refers to the session's document, hence to
#: every widget of the page.
_DOC_KEYED = ("_browsers", "_base_urls", "_extensions_", "_fake_roots", "_locations",
              "_notifications", "_onload", "_periodic", "_rel_paths", "_stylesheets",
              "_templates", "_thread_id_", "_cache_docs")


def open_sessions() -> int:
    """How many dashboard sessions are open in this process (what the cap counts)."""
    with _OPEN_LOCK:
        return len(_OPEN)


def _session_id() -> str | None:
    doc = pn.state.curdoc
    context = getattr(doc, "session_context", None) if doc is not None else None
    return getattr(context, "id", None) if context is not None else None


def busy_message(limit: int) -> str:
    """The text of :func:`busy_page` (no untrusted string in it: only the limit)."""
    return ('<div class="kafka-banner" role="alert">The dashboard is busy: '
            f"{int(limit):,} sessions are open, the most this server serves at once "
            "(SENSORLIB_MAX_SESSIONS). Close another tab of it, or try again in a minute."
            "</div>")


def busy_page(settings: Settings) -> pn.template.FastListTemplate:
    """What a session opened beyond ``SENSORLIB_MAX_SESSIONS`` gets: a message, no data."""
    return pn.template.FastListTemplate(
        title="sensorlib · busy", theme="dark",
        main=[_html(busy_message(settings.max_sessions))],
        header_background="#12161c", theme_toggle=False, busy_indicator=None)


def release_session(doc: Any) -> None:
    """Drop what Panel's process-wide state keeps for ``doc`` (a session's document).

    Panel removes some of it itself when a session ends, not all (``pn.state._views`` keeps
    every root of the template, each with its document): without this, each closed session
    stays in memory for good. Safe to call twice.
    """
    if doc is None:
        return
    state = pn.state
    views = getattr(state, "_views", None)
    if isinstance(views, dict):
        for ref in [ref for ref, entry in list(views.items())
                    if isinstance(entry, tuple) and len(entry) > 2 and entry[2] is doc]:
            viewable, root = views[ref][0], views[ref][1]
            try:
                viewable._cleanup(root)
            except Exception as exc:  # noqa: BLE001 - best effort: the entry goes anyway
                log.debug("cleanup of a closed session's view failed: %s", exc)
            views.pop(ref, None)
    for name in _DOC_KEYED:
        held = getattr(state, name, None)
        if held is None or not hasattr(held, "pop"):
            continue
        try:
            callbacks = held.pop(doc, None)
        except TypeError:  # not keyed by documents in this Panel version
            continue
        if name == "_periodic":
            for cb in callbacks or ():
                try:
                    cb.stop()
                except Exception as exc:  # noqa: BLE001
                    log.debug("stopping a closed session's callback failed: %s", exc)


def _on_closed(session_id: str | None, stop: list[Any], opened: bool) -> Any:
    """The ``on_session_destroyed`` callback of one session."""
    def closed(context: Any) -> None:
        for step in stop:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - the rest must still be released
                log.debug("closing a dashboard session: %s", exc)
        if opened:
            with _OPEN_LOCK:
                _OPEN.discard(session_id or "")
        release_session(getattr(context, "_document", None))
        trim_memory_soon()
    return closed


@functools.cache
def _holoviews_bokeh() -> None:
    """Load HoloViews' Bokeh backend once per process.

    ``hv.extension`` rebuilds every ``hv.opts`` builder (thousands of ``inspect.Signature``
    parameters) on each call. The backend is process-wide in a server, so one load serves
    every session; called per session it left ~65 KB of new long-lived objects per session,
    scattered over the arenas the session filled, and those arenas could never be returned
    (the dashboard's RSS stayed ~40 % up after the sessions closed).
    """
    hv.extension("bokeh", logo=False)


def build_app(settings: Settings | None = None) -> pn.template.FastListTemplate:
    """The dashboard of one browser session, wired to the process-wide feed and monitor.

    A session whose request named a Host outside ``Settings.hosts()`` gets
    :func:`refused_page` instead: the guard of a plain ``panel serve``, which has no
    Host check of its own (``sensorlib dashboard`` refuses such requests before this).
    """
    pn.extension("tabulator", design="fast", notifications=False)
    _holoviews_bokeh()
    settings = settings or Settings.from_env()
    host = request_host()
    if host is not None and not host_allowed(host, settings.hosts(), None):
        log.warning("refused a dashboard session for Host %r (allowed: %s)", host[:100],
                    ", ".join(settings.hosts()))
        return _closing(refused_page(settings), [], opened=False)
    session_id = _session_id()
    with _OPEN_LOCK:
        full = session_id is not None and len(_OPEN) >= settings.max_sessions
        if not full and session_id is not None:
            _OPEN.add(session_id)
    if full:
        log.warning("dashboard busy: %d sessions open (SENSORLIB_MAX_SESSIONS); one more "
                    "got the busy page", settings.max_sessions)
        return _closing(busy_page(settings), [], opened=False)
    live = LiveView(shared_feed(settings))
    ops_monitor = shared_ops(settings)
    live.traces = lambda: ops_monitor.zipkin_traces
    live.silences = shared_silences(settings)
    # The other tabs are built when first shown: most sessions never open them, and a
    # session's objects are what its closing must give back (Kafka, Ops and History were
    # ~60 % of a session's Python heap).
    other = LazyTabs({
        1: lambda: KafkaView(shared_monitor(settings)),
        2: lambda: OpsView(ops_monitor),
        3: lambda: HistoryTab(settings),
    })
    tabs = pn.Tabs(("Live", live.layout), ("Kafka", other.slot(1)), ("Ops", other.slot(2)),
                   ("History", other.slot(3)), dynamic=True, sizing_mode="stretch_width",
                   stylesheets=[TABS_CSS])
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
            other.get(1).refresh(asyncio.get_event_loop().time())

    def push_ops() -> None:
        if tabs.active == 2:
            other.get(2).refresh(asyncio.get_event_loop().time())

    def on_tab(event: Any) -> None:
        if event.new in (1, 2):
            other.get(event.new).refresh(asyncio.get_event_loop().time())
        elif event.new == 3:
            other.get(3).activate()

    callbacks = [pn.state.add_periodic_callback(push, period=PUSH_MS),
                 pn.state.add_periodic_callback(push_kafka, period=int(KAFKA_EVERY * 1000)),
                 pn.state.add_periodic_callback(push_ops, period=int(OPS_EVERY * 500))]
    metrics.session_opened()

    def forget() -> None:
        # What refers back to the shared feed and monitors, or keeps widgets alive.
        live.slots.clear()
        live.traces = _no_traces
        live.silences = None
        other.clear()
        tabs.param.unwatch(watcher)

    watcher = tabs.param.watch(on_tab, "active")
    live.refresh(start)
    template = pn.template.FastListTemplate(
        title="sensorlib · live sensors", theme="dark", main=[tabs],
        header_background="#12161c", accent_base_color="#ff9f43",
        main_max_width="", theme_toggle=False, busy_indicator=None,
    )
    return _closing(template, [metrics.session_closed, *(cb.stop for cb in callbacks), forget],
                    opened=session_id is not None, session_id=session_id)


def _no_traces() -> None:
    return None


class LazyTabs:
    """Tab contents built on first use: :meth:`slot` is the tab's (empty) column, :meth:`get`
    builds the view into it the first time and returns it."""

    def __init__(self, builders: dict[int, Any]) -> None:
        self._builders = builders
        self._slots = {index: pn.Column(sizing_mode="stretch_width") for index in builders}
        self._views: dict[int, Any] = {}

    def slot(self, index: int) -> pn.Column:
        return self._slots[index]

    def get(self, index: int) -> Any:
        view = self._views.get(index)
        if view is None:
            view = self._views[index] = self._builders[index]()
            self._slots[index].objects = [view.layout]
        return view

    def built(self) -> list[int]:
        """The indexes of the tabs built so far."""
        return sorted(self._views)

    def clear(self) -> None:
        self._views.clear()
        self._builders = {}


def _closing(page: pn.template.FastListTemplate, stop: list[Any], *, opened: bool,
             session_id: str | None = None) -> pn.template.FastListTemplate:
    """Register the session's release (inside a server; nothing to do outside one)."""
    if pn.state.curdoc is not None and getattr(pn.state.curdoc, "session_context", None):
        pn.state.on_session_destroyed(_on_closed(session_id, stop, opened))
    return page
