"""The report's tables and sections: what the notebooks (and the report notebook) call.

:func:`format_table` shows every value from Kafka as text (escaped HTML), numbers aligned
and statuses coloured like the dashboard; the summaries, views and counts are built on
it. :func:`check_period` turns an empty period into :class:`EmptyReport`,
:func:`write_alerts` writes the full alert list beside a report. Running the report
notebook (papermill, HTML export, the reports folder) is :mod:`sensorlib.notebook.runner`;
the live tail's read is :mod:`sensorlib.notebook.live`; figures are
:mod:`sensorlib.notebook.plots`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from sensorlib.config import Settings
from sensorlib.errors import EmptyReport, ReportError
from sensorlib.notebook import colours

__all__ = [
    "STATUS_COLOURS",
    "EmptyReport",
    "ReportError",
    "alert_summary",
    "alerts_by_rule",
    "check_period",
    "comparison_view",
    "describe_period",
    "format_table",
    "html_text",
    "incidents_by_rule",
    "incidents_view",
    "parameters_table",
    "settings_for",
    "style_status",
    "summary_table",
    "summary_view",
    "time_in_status_view",
    "write_alerts",
]

#: Background colours of the statuses (the dashboard's) and severities (the figures').
STATUS_COLOURS = colours.STATUS_COLOURS


# -- notebook helpers -----------------------------------------------------------------------


def settings_for(bootstrap_servers: str | None = None, readings_topic: str | None = None,
                 alerts_topic: str | None = None, dlq_topic: str | None = None) -> Settings:
    """``Settings.from_env()`` with a notebook's parameter overrides applied (None = keep)."""
    settings = Settings.from_env()
    changes: dict[str, Any] = {}
    if bootstrap_servers:
        changes.update(bootstrap_servers=bootstrap_servers, external=True)
    if readings_topic:
        changes["topic_readings"] = readings_topic
    if alerts_topic:
        changes["topic_alerts"] = alerts_topic
    if dlq_topic:
        changes["topic_dlq"] = dlq_topic
    return settings.replace(**changes) if changes else settings


def html_text(value: object) -> str:
    """``value`` as HTML text: whatever came from Kafka can never become markup."""
    return html.escape(str(value), quote=True)


def check_period(readings: pd.DataFrame, sensors: Iterable[str] | str | None,
                 start: pd.Timestamp | None, end: pd.Timestamp | None) -> None:
    """Raise :class:`EmptyReport` for a period without readings or a sensor that sent none.

    The message says what was asked for and what there is, e.g. ``no readings from
    'sensor-9' between … — the period has readings from sensor-01, sensor-02``.
    """
    period = describe_period(start, end)
    topic = readings.attrs.get("topic", "the readings topic")
    if isinstance(sensors, str):
        sensors = [sensors]
    wanted = list(dict.fromkeys(sensors)) if sensors is not None else []
    present = set(readings["sensorId"].unique())
    missing = [s for s in wanted if s not in present]
    # Sensors the read came across before filtering by sensor (when the reader says).
    seen = sorted(set(readings.attrs.get("seen_sensors") or ()) | present)
    hint = "".join(f"; {w}" for w in readings.attrs.get("warnings", ())
                   if "event times" in str(w))
    if readings.empty and not wanted:
        raise EmptyReport(f"no readings on {topic} in {period}: nothing to report "
                          f"(is the producer running? is the period right?){hint}")
    if missing:
        raise EmptyReport(f"no readings from {', '.join(map(repr, missing))} on {topic} in "
                          f"{period}; the sensors there are "
                          f"{_some(seen) if seen else 'none at all'}")


def _some(items: list[str], n: int = 8) -> str:
    head = ", ".join(items[:n])
    return head + (f" and {len(items) - n} more" if len(items) > n else "")


def summary_table(readings: pd.DataFrame, alerts: pd.DataFrame) -> pd.DataFrame:
    """One row per sensor: reading count, temperature/humidity statistics, alerts, status.

    ``worst_status`` is the worst dashboard status any reading of the period had
    (critical > warning > normal), not the latest one; ``critical_alerts`` and
    ``warning_alerts`` count the period's alerts. Sensors that only appear in ``alerts``
    get a row too (with no statistics).
    """
    from sensorlib.notebook.analysis import statuses

    stats = readings.groupby("sensorId").agg(
        location=("location", "last"),
        readings=("temperature", "size"),
        first=("timestamp", "min"),
        last=("timestamp", "max"),
        temp_mean=("temperature", "mean"),
        temp_min=("temperature", "min"),
        temp_max=("temperature", "max"),
        humidity_mean=("humidity", "mean"),
        humidity_min=("humidity", "min"),
        humidity_max=("humidity", "max"),
    )
    # The status is monotone in both values, so the worst reading's status is the
    # status of the period's maxima.
    stats["worst_status"] = pd.Series(statuses(stats["temp_max"], stats["humidity_max"]),
                                      index=stats.index, dtype="str")
    counts = (alerts.groupby(["sensorId", "severity"]).size().unstack(fill_value=0)
              .reindex(columns=["critical", "warning"], fill_value=0).add_suffix("_alerts"))
    table = stats.join(counts, how="outer")
    for column in ("readings", "critical_alerts", "warning_alerts"):
        table[column] = table[column].fillna(0).astype("int64")
    table.index.name = "sensorId"
    return table.sort_index()


def describe_period(start: pd.Timestamp | None, end: pd.Timestamp | None) -> str:
    """``2026-01-01 00:00 → 2026-01-02 00:00 UTC (end excluded)`` for headings."""
    def show(t: pd.Timestamp | None, open_end: str) -> str:
        if t is None:
            return open_end
        return f"{t:%Y-%m-%d %H:%M}" if t.second == 0 and t.microsecond == 0 else \
            f"{t:%Y-%m-%d %H:%M:%S}"

    return f"{show(start, 'the beginning')} → {show(end, 'now')} UTC (end excluded)"


def _status_css(value: object) -> str:
    bg = STATUS_COLOURS.get(str(value))
    return f"background-color: {bg}; color: white; font-weight: bold" if bg else ""


_TABLE_CSS = [
    {"selector": "", "props": "border-collapse: collapse; font-size: 12.5px; "
                              "font-variant-numeric: tabular-nums;"},
    {"selector": "th, td", "props": "padding: 2px 7px; white-space: nowrap;"},
    {"selector": "th.col_heading", "props": "text-align: center;"},
]


def format_table(frame: pd.DataFrame, *, status: Iterable[str] = ("status", "worst_status",
                                                                  "severity"),
                 decimals: int = 1, time_format: str = "%Y-%m-%d %H:%M:%S",
                 hide_index: bool = False, wrap: Iterable[str] = ()) -> Any:
    """A pandas Styler for reading: every value escaped as HTML text, numbers aligned.

    Floats get ``decimals`` places and thousands separators, integers thousands
    separators, UTC timestamps ``time_format``; the ``status`` columns (by last header
    level) are coloured like the dashboard. Values from Kafka (sensor ids, locations,
    reasons) are escaped, in cells, the index and the headers, so they show as text.
    ``wrap`` names text columns that may wrap (e.g. reasons) instead of widening the table.
    """
    def leaf(column: object) -> str:
        return str(column[-1] if isinstance(column, tuple) else column)

    formats: dict[Any, Any] = {}
    for column in frame.columns:
        dtype = frame[column].dtype
        if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(dtype):
            formats[column] = (lambda t, f=time_format: "" if pd.isna(t) else
                               html_text(t.strftime(f)))
        elif pd.api.types.is_float_dtype(dtype):
            formats[column] = (lambda v, d=decimals: "" if pd.isna(v) else f"{v:,.{d}f}")
        elif pd.api.types.is_integer_dtype(dtype):
            formats[column] = (lambda v: "" if pd.isna(v) else f"{v:,d}")
        else:
            formats[column] = (lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v))
                               else html_text(v))
    styler = frame.style.format(formats, na_rep="")
    styler = styler.format_index(html_text, axis=0).format_index(html_text, axis=1)
    coloured = [c for c in frame.columns if leaf(c) in set(status)]
    if coloured:
        styler = styler.map(_status_css, subset=coloured)
    # Column rules by position (Styler's col<j> classes), so they beat the table-wide ones.
    css = list(_TABLE_CSS)
    wrap = set(wrap)
    for j, column in enumerate(frame.columns):
        dtype = frame[column].dtype
        if not (pd.api.types.is_numeric_dtype(dtype)
                or pd.api.types.is_datetime64_any_dtype(dtype)):
            css.append({"selector": f"td.col{j}", "props": "text-align: left;"})
        if leaf(column) in wrap:
            css.append({"selector": f"td.col{j}",
                        "props": "white-space: normal; min-width: 14em; max-width: 40em;"})
    if not pd.api.types.is_numeric_dtype(frame.index.dtype):
        css.append({"selector": "th.row_heading", "props": "text-align: left;"})
    styler = styler.set_table_styles(css)
    if hide_index:
        styler = styler.hide(axis="index")
    return styler


def style_status(frame: pd.DataFrame, column: str = "status") -> Any:
    """:func:`format_table` with ``column`` coloured (kept for older notebooks)."""
    return format_table(frame, status=(column,))


def summary_view(summary: pd.DataFrame) -> Any:
    """:func:`summary_table` as a compact, two-level-header table that fits 1,280 px."""
    columns = {
        ("sensor", "location"): "location",
        ("readings", "count"): "readings",
        ("readings", "last (UTC)"): "last",
        **{(heading, stat): f"{prefix}_{stat}"
           for heading, prefix in (("temperature (°C)", "temp"), ("humidity (%)", "humidity"))
           for stat in ("mean", "min", "max")},
        ("alerts", "critical"): "critical_alerts",
        ("alerts", "warning"): "warning_alerts",
        ("status", "worst"): "worst_status",
    }
    view = pd.DataFrame({("sensor", "id"): summary.index.to_numpy(),
                         **{k: summary[v].to_numpy() for k, v in columns.items()}})
    view.columns = pd.MultiIndex.from_tuples(list(view.columns))
    return format_table(view, status=("worst",), time_format="%Y-%m-%d %H:%M", hide_index=True)


def alerts_by_rule(alerts: pd.DataFrame) -> pd.DataFrame:
    """Alert counts, sensor (rows) × rule (columns), with totals."""
    if alerts.empty:
        return pd.DataFrame(columns=["total"], dtype="int64")
    table = alerts.pivot_table(index="sensorId", columns="rule", values="alertId",
                               aggfunc="count", fill_value=0).astype("int64")
    table["total"] = table.sum(axis=1)
    table.loc["all sensors"] = table.sum()
    table.index.name = "sensor"
    table.columns.name = None
    return table


def incidents_by_rule(found: pd.DataFrame) -> pd.DataFrame:
    """Incidents and the alerts folded into them, sensor (rows) × rule (column groups).

    ``found`` is :func:`sensorlib.notebook.analysis.incidents`' frame; a total per sensor and a row
    for all sensors.
    """
    if found.empty:
        return pd.DataFrame(columns=pd.MultiIndex.from_tuples([("total", "incidents")]),
                            dtype="int64")
    table = found.pivot_table(index="sensorId", columns="rule", values="alerts",
                              aggfunc=["size", "sum"], fill_value=0).astype("int64")
    table = table.rename(columns={"size": "incidents", "sum": "alerts"}, level=0)
    table = table.swaplevel(0, 1, axis=1).sort_index(axis=1, level=0, sort_remaining=False)
    table[("total", "incidents")] = table.xs("incidents", axis=1, level=1).sum(axis=1)
    table[("total", "alerts")] = table.xs("alerts", axis=1, level=1).sum(axis=1)
    table.loc["all sensors"] = table.sum()
    table.index.name = "sensor"
    table.columns.names = [None, None]
    return table


def incidents_view(found: pd.DataFrame, *, top: int = 20, tz: str = "UTC") -> Any:
    """The ``top`` incidents to look at first: critical before warning, then the longest.

    Times are shown in ``tz`` (``SENSORLIB_TZ``); every text from Kafka is escaped.
    """
    columns = {"start": f"start ({tz})", "end": "end", "duration": "lasted",
               "sensorId": "sensor", "rule": "rule", "alerts": "alerts",
               "severity": "severity", "peak_temperature": "peak °C",
               "peak_humidity": "peak %", "reason": "first alert"}
    if found.empty:
        return format_table(pd.DataFrame(columns=list(columns.values())), hide_index=True)
    order = found.assign(_rank=found["severity"].map({"critical": 0}).fillna(1))
    order = order.sort_values(["_rank", "duration", "alerts", "start"],
                              ascending=[True, False, False, True], kind="stable").head(top)
    view = order[list(columns)].rename(columns=columns)
    start = view[f"start ({tz})"].dt.tz_convert(tz)
    end = view["end"].dt.tz_convert(tz)
    view[f"start ({tz})"] = start
    # The end's date only when it differs from the start's: the table fits 1,280 px.
    view["end"] = [f"{e:%H:%M}" if e.date() == s.date() else f"{e:%m-%d %H:%M}"
                   for s, e in zip(start, end, strict=True)]
    view["lasted"] = view["lasted"].map(_duration_text)
    return format_table(view.reset_index(drop=True), hide_index=True,
                        time_format="%Y-%m-%d %H:%M", wrap=("first alert", "sensor"))


def _duration_text(value: pd.Timedelta) -> str:
    """``3 h 05 min``, ``12 min``, ``40 s`` (what an incident lasted)."""
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def time_in_status_view(shares: pd.DataFrame) -> Any:
    """:func:`sensorlib.notebook.analysis.time_in_status` in percent, the headers coloured by status."""
    from sensorlib.notebook.incidents import STATUSES

    view = shares.set_index("sensorId")[list(STATUSES)] * 100
    view.columns = [f"% {s}" for s in STATUSES]
    view["hours"] = shares.set_index("sensorId")["hours"]
    view.index.name = "sensor"
    styler = format_table(view)
    css = [{"selector": f"th.col_heading.col{j}",
            "props": f"background-color: {STATUS_COLOURS.get(s, STATUS_COLOURS['stale'])}; color: white;"}
           for j, s in enumerate(STATUSES)]
    return styler.set_table_styles(css, overwrite=False)


def comparison_view(table: pd.DataFrame, measures: Iterable[str] | None = (
        "mean temperature", "max temperature", "mean humidity", "max humidity",
        "% critical", "% silent", "incidents", "alerts")) -> Any:
    """:func:`sensorlib.notebook.analysis.compare_periods` as a table, sensor and measure as rows."""
    if measures is not None:
        table = table[table["measure"].isin(list(measures))]
    view = table.set_index(["sensorId", "measure"])
    view.index.names = ["sensor", "measure"]
    view = view.round(1) + 0.0  # no "-0.0"
    counts = [key for key in view.index if key[1].startswith(("alerts", "incidents"))]
    return format_table(view).format(lambda v: "" if pd.isna(v) else f"{v:,.0f}",
                                     subset=pd.IndexSlice[counts, :])


def alert_summary(alerts: pd.DataFrame, top: int = 20, freq: str = "1h") -> pd.DataFrame:
    """The busiest (sensor, rule, hour) groups: critical ones first, then by count.

    Columns ``hour`` (UTC start), ``sensorId``, ``rule``, ``alerts``, ``critical``,
    ``warning`` and ``example`` (the reason of the group's first critical alert, else
    its first alert). At most ``top`` rows.
    """
    cols = ["hour", "sensorId", "rule", "alerts", "critical", "warning", "example"]
    if alerts.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    frame = alerts.sort_values("timestamp", kind="stable").reset_index(drop=True)
    frame = frame.assign(hour=frame["timestamp"].dt.floor(freq),
                         critical=frame["severity"].eq("critical").astype("int64"),
                         rank=frame["severity"].map({"critical": 0}).fillna(1))
    keys = ["hour", "sensorId", "rule"]
    grouped = frame.groupby(keys, sort=False)
    table = grouped.agg(alerts=("alertId", "size"), critical=("critical", "sum"))
    table["warning"] = table["alerts"] - table["critical"]
    examples = frame.sort_values(["rank", "timestamp"], kind="stable").groupby(keys).head(1)
    table["example"] = examples.set_index(keys)["reason"]
    table = table.reset_index().sort_values(["critical", "alerts", "hour"],
                                            ascending=[False, False, True], kind="stable")
    return table.head(top)[cols].reset_index(drop=True)


def write_alerts(alerts: pd.DataFrame, base: str | Path) -> list[Path]:
    """The full alert list beside a report: ``<base>.parquet`` and ``<base>.csv``.

    Written by :func:`sensorlib.replay.export.write_frame` (replacing a previous run's
    files, never through a symlink): Parquet keeps types and values as they are; in the
    CSV, text cells that begin with ``= + - @`` (or a tab / carriage return) get a leading
    ``'`` so a spreadsheet shows them instead of running them as formulas; timestamps are
    ISO-8601 UTC.
    """
    from sensorlib.replay.export import write_frame

    base = Path(base)
    return [write_frame(alerts, base.with_name(base.name + suffix), force=True)
            for suffix in (".parquet", ".csv")]


def parameters_table(**parameters: object) -> Any:
    """The parameters a report ran with, as a two-column table (secrets never passed)."""
    rows = pd.DataFrame({"parameter": list(parameters),
                         "value": ["(from the environment)" if v is None else
                                   ", ".join(map(str, v)) if isinstance(v, (list, tuple))
                                   else str(v) for v in parameters.values()]})
    return format_table(rows, hide_index=True)

