"""An alert as Alertmanager's v2 API takes it: labels (``alertname`` = rule, ``sensor``,
``location``, ``severity``, ``source``: clean, bounded, no header injection), annotations
(reason, values, the dashboard and trace links) and ``startsAt``/``endsAt``; decoded from the
alerts topic by msgspec, pydantic for anything msgspec refuses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from sensorlib.config import Settings
from sensorlib.model.events import Alert, parse_alert
from sensorlib.model.limits import TIMESTAMP_RANGE
from sensorlib.model.times import format_timestamp

#: Longest label value sent (labels end up in e-mail subjects and Slack titles).
MAX_LABEL = 200
#: How long an alert fires: the rule's cooldown (the processor's default).
DEFAULT_ACTIVE = timedelta(minutes=1)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_LOW, _HIGH = TIMESTAMP_RANGE


def _label(value: object) -> str:
    """A label value: no control characters (no header injection), bounded."""
    text = value if type(value) is str else str(value)
    # Fast path (almost every label): printable, short, nothing to strip. Characters
    # isprintable() refuses but _CONTROL keeps (format characters) take the exact path.
    if (len(text) <= MAX_LABEL and text.isprintable() and text[:1] != " "
            and text[-1:] != " "):
        return text
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def labels_of(rule: str, sensor: str, location: str, severity: str, alert_id: str
              ) -> dict[str, str]:
    """The labels an alert carries in Alertmanager (what silences and routes match on)."""
    return {"alertname": _label(rule) or "alert", "sensor": _label(sensor),
            "location": _label(location), "severity": _label(severity),
            "source": "sensorlib", "alert_id": _label(alert_id)}


def _iso(moment: datetime) -> str:
    return format_timestamp(moment)


class _WireAlert(msgspec.Struct):
    """The alert wire format as the processor writes it (camelCase keys), decoded in C.

    Only a fast path: a record it refuses (PascalCase keys, a naive or offset timestamp,
    a missing field) is read by :func:`~sensorlib.model.events.parse_alert`, the one authority.
    """

    alertId: str
    sensorId: str
    temperature: float
    humidity: float
    timestamp: datetime
    detectedAt: datetime
    rule: str
    severity: Literal["warning", "critical"]
    reason: str
    location: str = ""
    rulesVersion: str | None = None


_DECODE_ALERT = msgspec.json.Decoder(_WireAlert).decode


def _utc_in_range(moment: datetime) -> bool:
    return moment.tzinfo is UTC and _LOW <= moment < _HIGH


def _read_alert(raw: bytes | None) -> tuple[str, str, str, float, float, datetime, datetime,
                                            str, str, str, str | None]:
    """(alert id, sensor, location, temperature, humidity, timestamp, detected at, rule,
    severity, reason, rules version) of a record's value; ``ValueError`` when it is not an
    alert."""
    if raw is None:
        raise ValueError("a record without a value")
    try:
        w = _DECODE_ALERT(raw)
        if _utc_in_range(w.timestamp) and _utc_in_range(w.detectedAt):
            return (w.alertId, w.sensorId, w.location, w.temperature, w.humidity, w.timestamp,
                    w.detectedAt, w.rule, w.severity, w.reason, w.rulesVersion)
    except msgspec.DecodeError:
        pass
    a = parse_alert(raw)
    return (a.alert_id, a.sensor_id, a.location, a.temperature, a.humidity, a.timestamp,
            a.detected_at, a.rule, a.severity, a.reason, a.rules_version)


def _dashboard_url(settings: Settings) -> str:
    return settings.service_url("dashboard") + "/live"


def _payload(fields: tuple[str, str, str, float, float, datetime, datetime, str, str, str,
                          str | None],
             dashboard: str, active: timedelta, now: datetime, trace_id: str | None,
             trace_url: str | None) -> dict[str, Any]:
    """The postable alert with its times as ``datetime`` (encoded by msgspec as ``...Z``)."""
    alert_id, sensor, location, temperature, humidity, when, detected, rule, severity, \
        reason, rules_version = fields
    ends = when + active
    if ends <= now:
        ends = now + active
    annotations = {
        "summary": reason,
        "reason": reason,
        "values": f"{temperature:.1f} °C, {humidity:.1f} %",
        "timestamp": when,
        "detectedAt": detected,
        "dashboard": dashboard,
    }
    if rules_version:  # the rule settings' version the alert was judged with
        annotations["rulesVersion"] = _label(rules_version)
    if trace_id:
        annotations["trace_id"] = trace_id
        if trace_url:
            annotations["trace"] = trace_url.format(trace_id=trace_id)
    return {
        "labels": labels_of(rule, sensor, location, severity, alert_id),
        "annotations": annotations,
        "startsAt": when,
        "endsAt": ends,
        "generatorURL": dashboard,
    }


def alert_payload(alert: Alert, settings: Settings, *, trace_id: str | None = None,
                  active: timedelta = DEFAULT_ACTIVE, now: datetime | None = None,
                  trace_url: str | None = None) -> dict[str, Any]:
    """The Alertmanager v2 alert (``postableAlert``) for ``alert`` (module docstring), as
    JSON-ready values (times as ISO-8601 ``...Z`` strings)."""
    fields = (alert.alert_id, alert.sensor_id, alert.location, alert.temperature,
              alert.humidity, alert.timestamp, alert.detected_at, alert.rule, alert.severity,
              alert.reason, alert.rules_version)
    return msgspec.json.decode(msgspec.json.encode(
        _payload(fields, _dashboard_url(settings), active, now or datetime.now(UTC), trace_id,
                 trace_url)))


def _trace_url(env: Mapping[str, str]) -> str | None:
    """Where a trace is shown: the Zipkin UI when spans go to a Zipkin."""
    zipkin = (env.get("OTEL_EXPORTER_ZIPKIN_ENDPOINT") or "").strip()
    if zipkin and "/api/v2/spans" in zipkin:
        return zipkin.split("/api/v2/spans")[0] + "/zipkin/traces/{trace_id}"
    return None
