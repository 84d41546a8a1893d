"""HTML fragments of the live view, built from view-models with every string escaped.

Sensor ids, locations and reasons come from Kafka or the public API, so they are
untrusted: each one goes through :func:`text` (``html.escape`` with quotes) before it
reaches markup, in element bodies and attribute values alike. Nothing here reads Kafka
or the clock; callers pass ``now``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from sensorlib.dashboard import kafka_view
from sensorlib.dashboard.silences import (
    SilenceWatch,
    alert_labels,
    amtool_command,
    silence_url,
)
from sensorlib.dashboard.state import (
    STATUSES,
    AlertView,
    Board,
    Counts,
    KafkaStatus,
    Sample,
    SensorView,
    relative_time,
)
from sensorlib.notebook import colours

__all__ = ["alert_feed", "board_summary", "header", "kafka_banner", "refused", "sensor_card",
           "sparklines", "text"]

#: Colours of the statuses (the reference's three, and grey for a silent sensor);
#: critical must stand out.
STATUS_COLOURS = colours.STATUS_COLOURS
#: A W3C trace id: 32 lower-case hex digits.
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def text(value: object) -> str:
    """``value`` as inert HTML text (safe in element bodies and quoted attributes)."""
    return html.escape(str(value), quote=True)


def _status(value: str) -> str:
    # Statuses and severities end up in class names: only known words get through.
    return value if value in STATUS_COLOURS else "normal"


def sensor_card(view: SensorView, now: datetime) -> str:
    """The text part of a sensor card: id, status, location, latest values, age.

    A stale card also says how long nothing arrived and what its last values meant.
    """
    status = _status(view.status)
    sid = text(view.sensor_id)
    age = f"last reading {relative_time(view.timestamp, now)}"
    if status == "stale" and view.arrived is not None:
        # Silence is measured by arrival; the reading's own time stays in the tooltip.
        was = _status(view.value_status)
        age = f"no reading for {relative_time(view.arrived, now).removesuffix(' ago')}"
        if was != "normal":
            age += f" · last values {was.upper()}"
    return (
        f'<div class="sensor-card status-{status}" data-sensor="{sid}" data-status="{status}">'
        f'<div class="card-head"><span class="sensor-id">{sid}</span>'
        f'<span class="badge badge-{status}">{status.upper()}</span></div>'
        f'<div class="location">{text(view.location)}</div>'
        f'<div class="values">'
        f'<span class="value temperature" data-field="temperature">{view.temperature:.1f}'
        f'<small> °C</small></span>'
        f'<span class="value humidity" data-field="humidity">{view.humidity:.1f}'
        f'<small> %</small></span></div>'
        f'<div class="updated" title="{text(view.timestamp.isoformat())}">{text(age)}</div>'
        f"{_limits(view)}</div>"
    )


def _limits(view: SensorView) -> str:
    """The threshold rule's limits in force for the card's sensor (empty when unknown)."""
    if view.alert_above is None:
        return ""
    hot, wet = view.alert_above
    version = f"rule settings {view.rules_version}" if view.rules_version else "rule settings"
    return (f'<div class="limits" data-temperature="{hot:g}" data-humidity="{wet:g}" '
            f'title="{text(version)}: sensorlib rules show --sensor {text(view.sensor_id)}">'
            f"alerts above {hot:g} °C · {wet:g} %</div>")


def board_summary(board: Board, query: str = "", status: str = "all") -> str:
    """The line above the cards: the fleet by status, what is shown, how many more."""
    parts = [f'<span class="count count-{s}" data-status-count="{s}">'
             f"{board.by_status.get(s, 0):,} {s}</span>" for s in STATUSES]
    fleet = (f'<span class="fleet" data-total="{board.total}">{board.total:,} sensors</span>: '
             + " · ".join(parts))
    filters = []
    if status in STATUSES:
        filters.append(f"status {status}")
    if query.strip():
        filters.append(f"“{text(query.strip())}”")
    if board.total == 0:
        shown = ""
    elif not board.views:
        shown = f'<span class="shown">No sensor matches {" and ".join(filters)}.</span>'
    else:
        matching = f" of {board.matched:,} matching {' and '.join(filters)}" if filters else ""
        shown = (f'<span class="shown">Showing {board.first:,}–{board.last:,}{matching}, '
                 f"worst first</span>")
        if board.more:
            shown += f' <span class="more" data-more="{board.more}">and {board.more:,} more</span>'
    return (f'<div class="board-summary" data-matched="{board.matched}">'
            f'<div>{fleet}</div><div>{shown}</div></div>')


def refused(names: Sequence[str]) -> str:
    """The whole page a session gets when its Host is not an allowed name."""
    return ('<div class="kafka-banner" role="alert">This dashboard does not answer to the '
            "host name in the address bar (DNS-rebinding guard). Open it as "
            f"{text(' or '.join(names))}, or add the name to SENSORLIB_ALLOWED_HOSTS.</div>")


#: Size of one sparkline (CSS pixels) and the most points drawn, whatever the rate.
SPARK_WIDTH, SPARK_HEIGHT = 108, 36
SPARK_POINTS = 120
TEMP_COLOUR, HUM_COLOUR = "#ff9f43", "#54a0ff"


def _downsample(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most ``limit`` points: the lowest and highest of each time bucket, in time order.

    Keeping both extremes keeps a one-reading spike visible at any rate.
    """
    if len(points) <= limit:
        return points
    buckets = max(1, limit // 2)
    t0, t1 = points[0][0], points[-1][0]
    span = (t1 - t0) or 1.0
    grouped: list[list[tuple[float, float]]] = [[] for _ in range(buckets)]
    for point in points:
        grouped[min(buckets - 1, int((point[0] - t0) / span * buckets))].append(point)
    out: list[tuple[float, float]] = []
    for group in grouped:
        if group:
            low, high = min(group, key=lambda p: p[1]), max(group, key=lambda p: p[1])
            out.extend(sorted({low, high}))
    return out


def _spark(points: list[tuple[float, float]], start: float, end: float, colour: str,
           label: str) -> str:
    width, height, pad = SPARK_WIDTH, SPARK_HEIGHT, 2.0
    mark = ""
    if points:
        values = [v for _, v in points]
        low, high = min(values), max(values)
        if high - low < 1e-9:
            low, high = low - 1, high + 1  # a flat line sits in the middle
        span = end - start
        coords = [((t - start) / span * width if span > 0 else width - pad,
                   pad + (high - v) / (high - low) * (height - 2 * pad)) for t, v in points]
        if len(coords) == 1:
            x, y = coords[0]
            mark = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.8" fill="{colour}"/>'
        else:
            mark = f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in coords)}"/>'
    # Numbers only inside the SVG: nothing from Kafka reaches it as text.
    return (f'<figure class="spark"><figcaption>{label} · 5 min</figcaption>'
            f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'preserveAspectRatio="none" role="img" aria-label="{label}, last 5 minutes">'
            f'<g fill="none" stroke="{colour}" stroke-width="1.6" stroke-linejoin="round">'
            f"{mark}</g></svg></figure>")


def sparklines(samples: Sequence[Sample], window: timedelta = timedelta(minutes=5), *,
               muted: bool = False) -> str:
    """Temperature and humidity of the window as two inline SVG lines (no plotting library).

    The x axis spans the last ``window`` before the newest sample, or less while there
    is less (the line fills the card); at most :data:`SPARK_POINTS` points each.
    ``muted`` greys them out (a stale sensor).
    """
    if samples:
        end = samples[-1].timestamp.timestamp()
        start = max(samples[0].timestamp.timestamp(), end - window.total_seconds())
        kept = [s for s in samples if s.timestamp.timestamp() >= start]
    else:
        start = end = 0.0
        kept = []
    temps = _downsample([(s.timestamp.timestamp(), s.temperature) for s in kept], SPARK_POINTS)
    hums = _downsample([(s.timestamp.timestamp(), s.humidity) for s in kept], SPARK_POINTS)
    return (f'<div class="sparks{" muted" if muted else ""}" data-points="{len(kept)}">'
            f"{_spark(temps, start, end, TEMP_COLOUR, 'temperature')}"
            f"{_spark(hums, start, end, HUM_COLOUR, 'humidity')}</div>")


def _trace_link(alert: AlertView, traces: str | None) -> str:
    """A link to the alert's trace in Zipkin (``traces``: the UI's ``.../traces/`` URL)."""
    trace_id = alert.trace_id
    if not traces or not trace_id or not _TRACE_ID.fullmatch(trace_id) or trace_id == "0" * 32:
        return ""
    return (f'<a class="alert-trace" href="{text(traces + trace_id)}" target="_blank" '
            f'rel="noopener noreferrer" data-trace="{trace_id}" '
            f'title="Open this alert\'s trace (POST to alert) in Zipkin">trace ↗</a>')


def _silence_parts(alert: AlertView, silences: SilenceWatch | None) -> tuple[str, str, str]:
    """(row class, the "silenced" mark, the "silence this sensor" action) of one row."""
    if silences is None or not silences.reachable:
        return "", "", ""
    matching = silences.matching(alert_labels(alert))
    mark = ""
    if matching:
        tip = "\n".join(s.describe() for s in matching)
        mark = (f'<span class="alert-silenced" data-silences="'
                f'{text(" ".join(s.id for s in matching))}" title="{text(tip)}">silenced</span>')
    command = amtool_command(silences.url, alert.sensor_id)
    if silences.has_ui:
        action = (f'<a class="alert-silence" href="{text(silence_url(silences.url, alert.sensor_id))}" '
                  f'target="_blank" rel="noopener noreferrer" '
                  f'title="Silence this sensor in Alertmanager (or: {text(command)})">silence ↗</a>')
    else:
        tip = ("This Alertmanager serves no web UI (Debian's package ships none); silence "
               f"this sensor with: {command}")
        action = (f'<span class="alert-silence" data-command="{text(command)}" '
                  f'title="{text(tip)}">silence…</span>')
    return (" silenced" if matching else ""), mark, action


def alert_feed(alerts: Sequence[AlertView], now: datetime, traces: str | None = None,
               silences: SilenceWatch | None = None) -> str:
    """The alert feed, in the order given (newest first), or a calm placeholder.

    ``traces``: the trace viewer's URL prefix (``http://127.0.0.1:9411/zipkin/traces/``);
    when given, each alert whose record carried a trace context links to its trace.
    ``silences``: Alertmanager's silences (polled elsewhere; only read here); while it
    answers, an alert an active silence matches is marked "silenced" and every row offers
    to silence its sensor (a link to Alertmanager's UI, or the ``amtool`` command).
    """
    if not alerts:
        return '<div class="alert-feed empty"><div class="no-alerts">No alerts. All quiet.</div></div>'
    rows = []
    for alert in alerts:
        sev = _status(alert.severity)
        silenced, mark, action = _silence_parts(alert, silences)
        rows.append(
            f'<div class="alert-row sev-{sev}{silenced}" data-alert="{text(alert.alert_id)}" '
            f'data-sensor="{text(alert.sensor_id)}" data-severity="{sev}">'
            f'<span class="sev sev-badge-{sev}">{sev.upper()}</span>'
            f'<span class="alert-main"><span class="alert-sensor">{text(alert.sensor_id)}</span>'
            f'<span class="alert-location">{text(alert.location)}</span>'
            f'<span class="alert-reason">{text(alert.reason)}</span></span>'
            f'<span class="alert-when" title="{text(alert.detected_at.isoformat())}">'
            f"{text(relative_time(alert.detected_at, now))}{_trace_link(alert, traces)}"
            f"{mark}{action}</span></div>"
        )
    return f'<div class="alert-feed">{"".join(rows)}</div>'


def header(counts: Counts) -> str:
    """The figures above the cards."""
    cells = [
        ("sensors", "sensors", counts.sensors),
        ("readings-window", "readings (5 min)", counts.readings_window),
        ("readings-total", "readings received", counts.readings_total),
        ("alerts-critical", "critical alerts", counts.alerts_critical),
        ("alerts-warning", "warning alerts", counts.alerts_warning),
        ("alerts-total", "alerts", counts.alerts_total),
    ]
    body = "".join(
        f'<div class="stat stat-{key}" data-count="{key}"><div class="stat-value">{value:,}</div>'
        f'<div class="stat-label">{label}</div></div>'
        for key, label, value in cells
    )
    return f'<div class="stats">{body}</div>'


def kafka_banner(status: KafkaStatus, bootstrap: str, now: datetime) -> str:
    """A red banner while Kafka is unreachable; empty otherwise."""
    if status.ok:
        return ""
    since = f" for {relative_time(status.since, now).removesuffix(' ago')}" if status.since else ""
    return (
        f'<div class="kafka-banner" role="alert">Kafka unreachable at {text(bootstrap)}{text(since)}'
        " — showing the last data received; reconnecting automatically."
        f'<div class="kafka-detail">{text(status.detail)}</div></div>'
    )


def kafka_summary(snap: kafka_view.KafkaSnapshot) -> str:
    """The Kafka tab's header: brokers, topics, other groups, cluster id (or the error)."""
    t = text
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
