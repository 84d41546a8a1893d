"""Incidents instead of alert floods, time in each status, two periods side by side, local days.

A sensor with a persistent fault raises an alert a minute per rule (the cooldown): about
12,000 a month. An **incident** is one run of a sensor's alerts of one rule with no pause
longer than ``gap`` between them: start, end, peak values, count and worst severity.
:func:`incidents` does it in pandas; the SQL view ``incidents`` (:data:`INCIDENTS_SQL`,
added by :func:`sensorlib.history.query.connect`) does the same in DuckDB, so both agree row for row.

Pure: frames in, frames out (the notebooks and the report call these).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_GAP",
    "INCIDENTS_SQL",
    "STATUSES",
    "add_incidents_view",
    "compare_periods",
    "incident_ids",
    "incidents",
    "local_day",
    "per_local_day",
    "time_in_status",
]

#: An incident ends when its sensor raised no alert of its rule for this long (10 × the
#: default one-minute cooldown: a fault that flaps for a few minutes stays one incident).
DEFAULT_GAP = timedelta(minutes=10)
#: The statuses of :func:`time_in_status`, best to worst.
STATUSES = ("normal", "warning", "critical", "silent")
_SEVERITY_RANK = {"warning": 1, "critical": 2}
_COLUMNS = ["incidentId", "sensorId", "location", "rule", "start", "end", "duration", "alerts",
            "severity", "peak_temperature", "peak_humidity", "reason"]


def _ordered(alerts: pd.DataFrame) -> pd.DataFrame:
    """Alerts by sensor, rule, event time and id: the order both implementations use."""
    keys = ["sensorId", "rule", "timestamp"] + (["alertId"] if "alertId" in alerts else [])
    return alerts.sort_values(keys, kind="stable")


def incident_ids(alerts: pd.DataFrame, gap: timedelta | str = DEFAULT_GAP) -> pd.Series:
    """The incident each alert belongs to (aligned with ``alerts``' index).

    An incident's id is the ``alertId`` of its first alert (or ``sensor|rule|n`` without
    ids). A new incident begins when the previous alert of the same sensor and rule is
    more than ``gap`` earlier.
    """
    gap = pd.Timedelta(gap)
    if alerts.empty:
        return pd.Series([], index=alerts.index, dtype="object", name="incidentId")
    ordered = _ordered(alerts)
    same = ((ordered["sensorId"] == ordered["sensorId"].shift())
            & (ordered["rule"] == ordered["rule"].shift()))
    pause = ordered["timestamp"] - ordered["timestamp"].shift()
    new = ~same | (pause > gap)
    number = new.cumsum()
    if "alertId" in ordered:
        first = ordered["alertId"].astype("object").where(new).ffill()
    else:
        first = (ordered["sensorId"].astype(str) + "|" + ordered["rule"].astype(str) + "|"
                 + number.astype(str)).where(new).ffill()
    return first.reindex(alerts.index).rename("incidentId")


def incidents(alerts: pd.DataFrame, gap: timedelta | str = DEFAULT_GAP) -> pd.DataFrame:
    """Group an alerts frame (``read_alerts``, ``replay_rules``) into incidents.

    One row per incident, oldest first: ``incidentId`` (the first alert's id), ``sensorId``,
    ``location``, ``rule``, ``start`` and ``end`` (event times of its first and last alert),
    ``duration``, ``alerts`` (how many), ``severity`` (the worst), ``peak_temperature`` and
    ``peak_humidity`` (the highest values its alerts carried) and the first alert's ``reason``.
    An incident ends when no alert of its sensor and rule came for more than ``gap``.

    >>> incidents(read_alerts("-7d"), gap="30min")  # doctest: +SKIP
    """
    if alerts.empty:
        out = pd.DataFrame({c: pd.Series(dtype="object") for c in _COLUMNS})
        for c in ("start", "end"):
            out[c] = pd.Series(dtype="datetime64[us, UTC]")
        out["duration"] = pd.Series(dtype="timedelta64[us]")
        out["alerts"] = pd.Series(dtype="int64")
        out["peak_temperature"] = out["peak_humidity"] = pd.Series(dtype="float64")
        return out
    frame = _ordered(alerts).copy()
    frame["incidentId"] = incident_ids(frame, gap)
    frame["_rank"] = frame["severity"].map(_SEVERITY_RANK).fillna(0)
    for column in ("location", "reason", "temperature", "humidity"):
        if column not in frame:
            frame[column] = np.nan
    grouped = frame.groupby("incidentId", sort=False)
    out = grouped.agg(sensorId=("sensorId", "first"), location=("location", "first"),
                      rule=("rule", "first"), start=("timestamp", "min"),
                      end=("timestamp", "max"), alerts=("timestamp", "size"),
                      rank=("_rank", "max"), peak_temperature=("temperature", "max"),
                      peak_humidity=("humidity", "max"), reason=("reason", "first"))
    out["severity"] = out.pop("rank").map({2: "critical", 1: "warning"}).fillna("warning")
    out["duration"] = out["end"] - out["start"]
    out = out.reset_index()[_COLUMNS]
    out["alerts"] = out["alerts"].astype("int64")
    return out.sort_values(["start", "sensorId", "rule", "incidentId"],
                           kind="stable").reset_index(drop=True)


#: The SQL of the view ``incidents`` over the view ``alerts``: the same grouping as
#: :func:`incidents` with :data:`DEFAULT_GAP` (columns in snake case; ``start_time`` and
#: ``end_time`` for ``start``/``end``, which are SQL keywords).
INCIDENTS_SQL = """
WITH marked AS (
    SELECT *, CASE WHEN event_time - lag(event_time) OVER w <= INTERVAL '{gap_us} microseconds'
                   THEN 0 ELSE 1 END AS _new
    FROM {alerts}
    WINDOW w AS (PARTITION BY sensor_id, rule ORDER BY event_time, alert_id)
), numbered AS (
    SELECT *, sum(_new) OVER (PARTITION BY sensor_id, rule ORDER BY event_time, alert_id
                              ROWS UNBOUNDED PRECEDING) AS _n
    FROM marked
)
SELECT first(alert_id ORDER BY event_time, alert_id) AS incident_id,
       sensor_id,
       first(location ORDER BY event_time, alert_id) AS location,
       rule,
       min(event_time) AS start_time,
       max(event_time) AS end_time,
       max(event_time) - min(event_time) AS duration,
       count(*) AS alerts,
       CASE WHEN bool_or(severity = 'critical') THEN 'critical' ELSE 'warning' END AS severity,
       max(temperature) AS peak_temperature,
       max(humidity) AS peak_humidity,
       first(reason ORDER BY event_time, alert_id) AS reason
FROM numbered
GROUP BY sensor_id, rule, _n
"""


def add_incidents_view(con: Any, *, gap: timedelta | str = DEFAULT_GAP,
                       alerts: str = "alerts", name: str = "incidents") -> None:
    """Create the view ``incidents`` (see :data:`INCIDENTS_SQL`) over ``alerts`` on a DuckDB
    connection; :func:`incidents` gives the same rows from a frame."""
    gap_us = int(pd.Timedelta(gap) / pd.Timedelta(microseconds=1))
    con.execute(f"CREATE OR REPLACE VIEW {name} AS "
                + INCIDENTS_SQL.format(gap_us=gap_us, alerts=alerts))


# -- time in status ---------------------------------------------------------------------------


def _status_codes(temperature: np.ndarray, humidity: np.ndarray) -> np.ndarray:
    """0 normal, 1 warning, 2 critical: :func:`sensorlib.model.events.status_of`, vectorised."""
    critical = (temperature > 35) | (humidity > 90)
    warning = (temperature > 30) | (humidity > 80)
    return np.where(critical, 2, np.where(warning, 1, 0))


def _ns(values: pd.Series | pd.Timestamp) -> Any:
    if isinstance(values, pd.Timestamp):
        return values.tz_convert("UTC").as_unit("ns").value
    return pd.to_datetime(values, utc=True).dt.as_unit("ns").array.asi8


def time_in_status(readings: pd.DataFrame, start: Any = None, end: Any = None, *,
                   silent_after: timedelta | str = timedelta(seconds=30)) -> pd.DataFrame:
    """Each sensor's share of ``[start, end)`` spent normal, warning, critical and silent.

    A reading's dashboard status holds until the sensor's next reading; a pause longer than
    ``silent_after`` (the silent rule's default, 30 s) counts as silent as a whole, and so do
    the lead-in before a sensor's first reading and the time after its last one when they
    are that long. ``start``/``end`` default to the first and last reading of the frame.
    One row per sensor: ``sensorId``, the four shares (0–1, summing to 1) and ``hours``.
    """
    from sensorlib.replay.periods import to_utc

    columns = ["sensorId", *STATUSES, "hours"]
    if readings.empty:
        return pd.DataFrame({c: pd.Series(dtype="object" if c == "sensorId" else "float64")
                             for c in columns})
    limit = pd.Timedelta(silent_after).value
    ts_all = _ns(readings["timestamp"])
    t0 = _ns(to_utc(start)) if start is not None else int(ts_all.min())
    t1 = _ns(to_utc(end)) if end is not None else int(ts_all.max())
    keep = (ts_all >= t0) & (ts_all < t1) if end is not None else (ts_all >= t0)
    frame = readings.loc[keep, ["sensorId", "timestamp", "temperature", "humidity"]]
    frame = frame.sort_values(["sensorId", "timestamp"], kind="stable")
    rows = []
    for sensor, group in frame.groupby("sensorId", sort=True, observed=True):
        t = _ns(group["timestamp"])
        codes = _status_codes(group["temperature"].to_numpy(float),
                              group["humidity"].to_numpy(float))
        held = np.diff(np.append(t, max(t1, int(t[-1]))))  # each reading until the next / end
        totals = np.zeros(4)
        loud = held <= limit
        np.add.at(totals, codes[loud], held[loud])
        totals[3] += held[~loud].sum()
        lead = int(t[0]) - t0
        totals[codes[0] if lead <= limit else 3] += lead
        span = totals.sum()
        shares = totals / span if span > 0 else np.array([1.0, 0, 0, 0])
        rows.append([sensor, *shares, span / 3.6e12])
    return pd.DataFrame(rows, columns=columns)


# -- two periods ------------------------------------------------------------------------------


def compare_periods(current: tuple[pd.DataFrame, pd.DataFrame],
                    previous: tuple[pd.DataFrame, pd.DataFrame], *,
                    labels: tuple[str, str] = ("this period", "previous period"),
                    periods: tuple[tuple[Any, Any], tuple[Any, Any]] | None = None,
                    gap: timedelta | str = DEFAULT_GAP,
                    silent_after: timedelta | str = timedelta(seconds=30)) -> pd.DataFrame:
    """Two periods side by side, per sensor: a tidy frame, one row per sensor and measure.

    ``current`` and ``previous`` are ``(readings, alerts)`` pairs; ``periods`` their
    ``((start, end), (start, end))`` for the time-in-status shares (default: each frame's
    own first to last reading). Measures: mean/min/max temperature and humidity,
    ``alerts`` and ``incidents`` in total and per rule (``alerts: threshold``, …) and the
    time-in-status shares in percent (``% critical``, …). Columns ``sensorId``, ``measure``,
    the two labels and ``change`` (current − previous; NaN where either is missing).
    """
    def measures(readings: pd.DataFrame, alerts: pd.DataFrame, period: Any) -> pd.DataFrame:
        parts = []
        if not readings.empty:
            stats = readings.groupby("sensorId", observed=True)[["temperature", "humidity"]].agg(
                ["mean", "min", "max"])
            stats.columns = [f"{stat} {field}" for field, stat in stats.columns]
            parts.append(stats)
            shares = time_in_status(readings, *(period or (None, None)),
                                    silent_after=silent_after).set_index("sensorId")
            parts.append((shares[list(STATUSES)] * 100).add_prefix("% "))
        if not alerts.empty:
            found = incidents(alerts, gap)
            for name, frame in (("alerts", alerts), ("incidents", found)):
                counts = frame.groupby(["sensorId", "rule"], observed=True).size().unstack(
                    fill_value=0)
                counts.columns = [f"{name}: {rule}" for rule in counts.columns]
                counts.insert(0, name, counts.sum(axis=1))
                parts.append(counts)
        if not parts:
            return pd.DataFrame()
        wide = pd.concat(parts, axis=1)
        count_columns = [c for c in wide if c.startswith(("alerts", "incidents"))]
        wide[count_columns] = wide[count_columns].fillna(0)
        if not readings.empty:
            for c in ("alerts", "incidents"):
                if c not in wide:
                    wide[c] = 0.0
        wide.index.name = "sensorId"
        return wide.reset_index().melt(id_vars="sensorId", var_name="measure")

    a = measures(*current, periods[0] if periods else None)
    b = measures(*previous, periods[1] if periods else None)
    now, before = labels
    if a.empty and b.empty:
        return pd.DataFrame(columns=["sensorId", "measure", now, before, "change"])
    a = a.rename(columns={"value": now}) if not a.empty else pd.DataFrame(
        columns=["sensorId", "measure", now])
    b = b.rename(columns={"value": before}) if not b.empty else pd.DataFrame(
        columns=["sensorId", "measure", before])
    out = a.merge(b, on=["sensorId", "measure"], how="outer")
    # Counts absent on one side are zero there, when that side has readings of the sensor.
    for label, side in ((now, a), (before, b)):
        counted = out["measure"].str.startswith(("alerts", "incidents"))
        has = out["sensorId"].isin(set(side["sensorId"]))
        out.loc[counted & has & out[label].isna(), label] = 0.0
    out[[now, before]] = out[[now, before]].astype("float64")
    out["change"] = out[now] - out[before]
    order = {m: i for i, m in enumerate(_MEASURE_ORDER)}
    out["_o"] = out["measure"].map(lambda m: order.get(m.split(":")[0], len(order)))
    return (out.sort_values(["sensorId", "_o", "measure"], kind="stable").drop(columns="_o")
            .reset_index(drop=True))


_MEASURE_ORDER = ("mean temperature", "min temperature", "max temperature", "mean humidity",
                  "min humidity", "max humidity", *(f"% {s}" for s in STATUSES), "incidents",
                  "alerts")


# -- local days -------------------------------------------------------------------------------


def local_day(t: Any, tz: str = "UTC") -> pd.Timestamp:
    """The start (local midnight, as a UTC Timestamp) of the local day holding ``t``.

    >>> str(local_day("2026-03-29T12:00Z", "Europe/Berlin"))
    '2026-03-28 23:00:00+00:00'
    """
    from sensorlib.replay.periods import to_utc

    ts = to_utc(t)
    assert ts is not None
    return ts.tz_convert(tz).normalize().tz_convert("UTC")


def per_local_day(frame: pd.DataFrame, tz: str = "UTC", *, column: str = "start",
                  by: str = "sensorId") -> pd.DataFrame:
    """Rows of ``frame`` counted per local day of ``column`` (rows) and ``by`` (columns).

    Days are calendar days in ``tz`` (``SENSORLIB_TZ``): a day of 23 or 25 hours at a
    daylight-saving change is still one day. The index is the local date.
    """
    if frame.empty:
        return pd.DataFrame(index=pd.Index([], name=f"day ({tz})"))
    days = pd.to_datetime(frame[column], utc=True).dt.tz_convert(tz).dt.date
    table = (frame.assign(_day=days).groupby(["_day", by], observed=True).size()
             .unstack(fill_value=0).sort_index())
    table.index.name = f"day ({tz})"
    table.columns.name = None
    return table
