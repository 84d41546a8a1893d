"""HTML fragments of the live view, built from view-models with every string escaped.

Sensor ids, locations and reasons come from Kafka or the public API, so they are
untrusted: each one goes through :func:`text` (``html.escape`` with quotes) before it
reaches markup, in element bodies and attribute values alike. Nothing here reads Kafka
or the clock; callers pass ``now``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime

from sensorlib.dashboard.state import AlertView, Counts, KafkaStatus, SensorView, relative_time

__all__ = ["alert_feed", "header", "kafka_banner", "sensor_card", "text"]

#: Colours of the three statuses (the reference's rules); critical must stand out.
STATUS_COLOURS = {"normal": "#2ecc71", "warning": "#f5a623", "critical": "#ff3b3b"}


def text(value: object) -> str:
    """``value`` as inert HTML text (safe in element bodies and quoted attributes)."""
    return html.escape(str(value), quote=True)


def _status(value: str) -> str:
    # Statuses and severities end up in class names: only known words get through.
    return value if value in STATUS_COLOURS else "normal"


def sensor_card(view: SensorView, now: datetime) -> str:
    """The text part of a sensor card: id, status, location, latest values, age."""
    status = _status(view.status)
    sid = text(view.sensor_id)
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
        f'<div class="updated" title="{text(view.timestamp.isoformat())}">'
        f"last reading {text(relative_time(view.timestamp, now))}</div>"
        f"</div>"
    )


def alert_feed(alerts: Sequence[AlertView], now: datetime) -> str:
    """The alert feed, in the order given (newest first), or a calm placeholder."""
    if not alerts:
        return '<div class="alert-feed empty"><div class="no-alerts">No alerts. All quiet.</div></div>'
    rows = []
    for alert in alerts:
        sev = _status(alert.severity)
        rows.append(
            f'<div class="alert-row sev-{sev}" data-alert="{text(alert.alert_id)}" '
            f'data-sensor="{text(alert.sensor_id)}" data-severity="{sev}">'
            f'<span class="sev sev-badge-{sev}">{sev.upper()}</span>'
            f'<span class="alert-main"><span class="alert-sensor">{text(alert.sensor_id)}</span>'
            f'<span class="alert-location">{text(alert.location)}</span>'
            f'<span class="alert-reason">{text(alert.reason)}</span></span>'
            f'<span class="alert-when" title="{text(alert.detected_at.isoformat())}">'
            f"{text(relative_time(alert.detected_at, now))}</span></div>"
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
