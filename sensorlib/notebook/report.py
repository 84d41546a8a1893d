"""Reports: per-sensor summaries and tables of a period, and scheduled papermill runs.

:func:`run_report` executes ``notebooks/04_report.ipynb`` with papermill for a period
and writes the executed notebook, an HTML export and the period's full alert list
(Parquet, CSV) next to each other, named by the period, and an ``index.html`` of the
folder. ``sensorlib report --start yesterday --end today --out reports/`` does the same
from cron or a systemd timer. The table helpers (:func:`format_table` and the summaries
built on it) are what the notebooks call; they show every value from Kafka as text.
Figures are in :mod:`sensorlib.notebook.plots`.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from sensorlib.config import Settings
from sensorlib.errors import EmptyReport, KafkaUnavailable, ReportError
from sensorlib.notebook import colours
from sensorlib.replay.periods import TimeLike, resolve_period

__all__ = [
    "REPORT_NOTEBOOK",
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
    "live_period",
    "notebooks_dir",
    "parameters_table",
    "prune_reports",
    "run_report",
    "settings_for",
    "style_status",
    "summary_table",
    "summary_view",
    "time_in_status_view",
    "write_alerts",
    "write_index",
]

REPORT_NOTEBOOK = "04_report.ipynb"
#: Background colours of the statuses (the dashboard's) and severities (the figures').
STATUS_COLOURS = colours.STATUS_COLOURS
_KERNEL = "python3"
_STATUS_RANK = {"normal": 0, "warning": 1, "critical": 2}
#: Cells a spreadsheet would run as a formula begin with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")




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


def _read_newest(settings: Settings, since: pd.Timestamp, seconds: float, max_records: int
                 ) -> tuple[list[bytes | None], list[int], int]:
    """Values that arrived from ``since`` on (newest ``max_records`` of them), then ``seconds``
    more of tailing; and how many had arrived since ``since`` when the call began."""
    import math

    from sensorlib.kafka.fetch import CONSUMER_OPTIONS
    from sensorlib.kafka.reader import TopicReader

    topic = settings.topic_readings
    since_ms = max(0, int(since.timestamp() * 1000))
    with TopicReader(settings, topic, since_ms=since_ms, client_id="sensorlib-live",
                     **CONSUMER_OPTIONS) as probe:
        if not probe.exists:
            raise ReportError(f"topic {topic!r} does not exist at {settings.bootstrap_servers}")
        begin, end, available = dict(probe.begin), probe.end, probe.total
    if available > max_records:  # keep the newest, in proportion per partition
        for p, first in list(begin.items()):
            share = math.ceil(max_records * (end[p] - first) / available)
            begin[p] = max(first, end[p] - share)
    values: list[bytes | None] = []
    times: list[int] = []
    with TopicReader(settings, topic, offsets=begin, follow=seconds, client_id="sensorlib-live",
                     **CONSUMER_OPTIONS) as reader:
        for _, records in reader:
            values.extend(r.value for r in records)
            times.extend(r.timestamp for r in records)
    return values, times, available


def live_period(settings: Settings, *, since: TimeLike = "5min ago", seconds: float = 5.0,
                max_records: int = 100_000) -> tuple[pd.DataFrame, str]:
    """Readings of the live period (event time from ``since``) and an HTML note on what was read.

    Reads what arrived on the readings topic from ``since`` on (the newest ``max_records``
    of it), tails ``seconds`` more, keeps the valid readings whose event time is from
    ``since`` on (a back-fill arrives now with old event times), and says honestly what
    the frame is: how many readings, which were left out, and whether the cap cut the
    read short ("the last 100,000 of 1,234,567"). No consumer group.
    """
    from sensorlib.replay.decode import decode_readings
    from sensorlib.replay.periods import to_utc

    live_from = to_utc(since)
    if live_from is None:
        raise ReportError("since must be a time, e.g. '5min ago'")
    from sensorlib.kafka.fetch import accept_of

    values, times, available = _read_newest(settings, live_from, seconds, max_records)
    decoded = decode_readings(values, record_ms=times, accept=accept_of(settings))
    invalid = int(decoded["_reason"].notna().sum())
    valid = decoded[decoded["_reason"].isna()].drop(columns="_reason")
    recent = (valid[valid["timestamp"] >= live_from].sort_values("timestamp", kind="stable")
              .reset_index(drop=True))
    recent.attrs.update(live_from=live_from, invalid=invalid, available=available)
    older = len(valid) - len(recent)
    lines = [(f"<b>{len(recent):,}</b> readings from <b>{recent['sensorId'].nunique():,}</b> "
             f"sensors with event times since {live_from:%Y-%m-%d %H:%M:%S} UTC")]
    if available > max_records:
        lines.append(f"<b>capped</b>: the last {max_records:,} of the {available:,} records "
                     "that had arrived since then were read, plus what came in while "
                     "listening; raise <code>max_records</code> or shorten <code>since</code> "
                     "to see all")
    if older:
        lines.append(f"{older:,} readings that arrived in this time carry older event times "
                     "(back-fills, late sensors) and are left out")
    if invalid:
        lines.append(f"{invalid:,} invalid records skipped (see 06_dead_letters)")
    return recent, "<br>".join(lines)


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


def _neutralise(value: object) -> object:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_alerts(alerts: pd.DataFrame, base: str | Path) -> list[Path]:
    """The full alert list beside a report: ``<base>.parquet`` and ``<base>.csv``.

    Parquet keeps types and values as they are. In the CSV, text cells that begin with
    ``= + - @`` (or a tab / carriage return) get a leading ``'`` so a spreadsheet shows
    them instead of running them as formulas; timestamps are ISO-8601 UTC.
    """
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    parquet, csv = base.with_name(base.name + ".parquet"), base.with_name(base.name + ".csv")
    alerts.to_parquet(parquet, index=False)
    safe = alerts.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column].dtype):
            safe[column] = safe[column].map(_neutralise)
    safe.to_csv(csv, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    return [parquet, csv]


def parameters_table(**parameters: object) -> Any:
    """The parameters a report ran with, as a two-column table (secrets never passed)."""
    rows = pd.DataFrame({"parameter": list(parameters),
                         "value": ["(from the environment)" if v is None else
                                   ", ".join(map(str, v)) if isinstance(v, (list, tuple))
                                   else str(v) for v in parameters.values()]})
    return format_table(rows, hide_index=True)


# -- running the report notebook ----------------------------------------------------------


def notebooks_dir() -> Path:
    """The ``notebooks/`` folder: ``$SENSORLIB_NOTEBOOKS``, else next to the package."""
    override = os.environ.get("SENSORLIB_NOTEBOOKS", "").strip()
    folder = Path(override).expanduser() if override else (
        Path(__file__).resolve().parent.parent / "notebooks")
    if not (folder / REPORT_NOTEBOOK).is_file():
        raise ReportError(f"{REPORT_NOTEBOOK} not found in {folder}; set SENSORLIB_NOTEBOOKS "
                          "to the folder holding the sensorlib notebooks")
    return folder


def _kernel_name() -> str:
    """A kernelspec that runs this interpreter, installed into sys.prefix when missing."""
    from jupyter_client.kernelspec import KernelSpecManager

    if _KERNEL not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix",
                        "--name", _KERNEL], check=True, capture_output=True)
    return _KERNEL


def _kernel_config(sockets: Path) -> Any:
    """Kernel over Unix sockets in a private folder: no TCP port, no plain-text warning.

    Over TCP, ipykernel warns on every start that it runs "over TCP without encryption",
    which would land in every cron log; the report's kernel only ever talks to this
    process, so local sockets (mode 700 folder) are the right transport anyway.
    """
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = str(sockets / "kernel")
    # jupyter_client interrupts a kernel before shutting it down; when that lands while the
    # kernel handles a message, it logs "KeyboardInterrupt caught in kernel" to stderr
    # (the cron log) although the report succeeded. Drop that one record, nothing else.
    quiet = ("__import__('ipykernel.kernelapp').kernelapp.IPKernelApp.instance().log.addFilter("
             "lambda r: 'KeyboardInterrupt caught' not in r.getMessage())")
    config.NotebookClient.extra_arguments = [f"--IPKernelApp.exec_lines={quiet}"]
    return config


def _stamp(t: pd.Timestamp | None) -> str:
    return "beginning" if t is None else t.strftime("%Y%m%dT%H%M%SZ")


#: nbconvert's lab template without what it loads from a CDN (require.js, MathJax,
#: Mermaid, the widget manager): a report opens offline. Its figures need none of them
#: (BokehJS is embedded inline by ``plots.load()``; tables are plain HTML).
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""


def _export_html(notebook: Path, html_path: Path, title: str) -> None:
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True,
                            extra_loaders=[DictLoader({"sensorlib_offline.html.j2":
                                                       OFFLINE_TEMPLATE})],
                            template_file="sensorlib_offline.html.j2")
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata["title"] = title
    for cell in nb.cells:  # outputs with nothing to show (e.g. JS-only loaders) are noise
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if o.get("output_type") != "display_data" or o.get("data")]
    body, _ = exporter.from_notebook_node(nb)
    html_path.write_text(body, encoding="utf-8")


#: The files of one report, by suffix after its name.
_REPORT_FILES = (".ipynb", ".html", "_alerts.parquet", "_alerts.csv")


def _reports(out: Path) -> list[str]:
    """Names (``report_<start>_<end>``) of the reports in ``out``, oldest period first."""
    return sorted(p.name[: -len(".html")] for p in out.glob("report_*.html")
                  if not p.name.endswith("_alerts.html"))


def prune_reports(out_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest reports (by period) in ``out_dir``; returns what went.

    Only files named like a report (``report_*.ipynb/.html/_alerts.parquet/_alerts.csv``)
    are touched; ``index.html`` and anything else in the folder stay.
    """
    if keep < 1:
        raise ReportError(f"--keep must be at least 1 (got {keep})")
    out = Path(out_dir)
    removed = []
    for name in _reports(out)[:-keep]:
        for suffix in _REPORT_FILES:
            path = out / f"{name}{suffix}"
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
    return removed


def _period_of(name: str) -> str:
    try:
        _, a, b = name.split("_", 2)
        t0 = "the beginning" if a == "beginning" else pd.Timestamp(a)
        t1 = pd.Timestamp(b)
    except ValueError:
        return name
    return describe_period(None if isinstance(t0, str) else t0, t1)


def write_index(out_dir: str | Path) -> Path:
    """``index.html`` in ``out_dir``: every report there, newest period first, with its files."""
    out = Path(out_dir)
    rows = []
    for name in reversed(_reports(out)):
        links = [f'<a href="{html_text(name)}.html">report</a>']
        for suffix, label in (("_alerts.csv", "alerts CSV"), ("_alerts.parquet", "alerts Parquet"),
                              (".ipynb", "notebook")):
            if (out / f"{name}{suffix}").is_file():
                links.append(f'<a href="{html_text(name + suffix)}">{label}</a>')
        size = (out / f"{name}.html").stat().st_size
        rows.append(f"<tr><td>{html_text(_period_of(name))}</td><td>{' · '.join(links)}</td>"
                    f"<td style='text-align:right'>{size / 1e6:,.1f} MB</td></tr>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sensorlib reports</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse}}td,th{{padding:4px 12px;border-bottom:1px solid #ddd;
text-align:left}}</style></head><body>
<h1>sensorlib reports</h1>
<p>{len(rows)} report{"s" if len(rows) != 1 else ""}, newest period first.
Written by <code>sensorlib report</code> on {pd.Timestamp.now(tz="UTC"):%Y-%m-%d %H:%M} UTC.</p>
<table><thead><tr><th>period</th><th>files</th><th>size</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def run_report(
    start: TimeLike,
    end: TimeLike,
    out_dir: str | Path = "reports/",
    sensors: Iterable[str] | None = None,
    settings: Settings | None = None,
    *,
    timeout: float = 600.0,
    keep: int | None = None,
) -> Path:
    """Execute the report notebook for ``start <= t < end``; returns the executed .ipynb.

    Writes ``report_<start>_<end>.ipynb`` and ``.html`` into ``out_dir``, the period's
    full alert list beside them (``…_alerts.parquet`` / ``.csv``), and refreshes
    ``index.html``; with ``keep`` only the ``keep`` newest reports stay. The notebook gets
    the bootstrap servers and topic names as papermill parameters (credentials stay in the
    environment, which the kernel inherits, so they never land in a file).

    Raises:
        ReplayError: a malformed or empty period (end not after start).
        EmptyReport: no readings in the period, or none from a sensor asked for (nothing
            is written).
        KafkaUnavailable: Kafka does not answer (checked before starting a kernel).
        ReportError: the notebook failed; the message names the cell and the error.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from sensorlib.kafka.admin import kafka_reachable, wait_for_kafka

    if keep is not None and keep < 1:
        raise ReportError(f"--keep must be at least 1 (got {keep})")
    settings = Settings.from_env() if settings is None else settings
    t0, t1 = resolve_period(start, end)
    if t1 is None:
        t1 = pd.Timestamp.now(tz="UTC")
    if not kafka_reachable(settings):  # fail at once, before a kernel starts
        raise KafkaUnavailable(settings.bootstrap_servers, "nothing listens there")
    wait_for_kafka(settings, timeout=10)
    folder = notebooks_dir()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"report_{_stamp(t0)}_{_stamp(t1)}"
    executed = out / f"{name}.ipynb"
    parameters = {
        "bootstrap_servers": settings.bootstrap_servers,
        "start": None if t0 is None else t0.isoformat(),
        "end": t1.isoformat(),
        "sensors": None if sensors is None else list(sensors),
        "readings_topic": settings.topic_readings,
        "alerts_topic": settings.topic_alerts,
        "alerts_file": str((out / f"{name}_alerts").resolve()),
    }
    sockets = Path(tempfile.mkdtemp(prefix="sensorlib-kernel-"))
    try:
        papermill.execute_notebook(
            str(folder / REPORT_NOTEBOOK), str(executed), parameters=parameters,
            kernel_name=_kernel_name(), cwd=str(folder), progress_bar=False,
            request_save_on_cell_execute=False, execution_timeout=int(timeout),
            config=_kernel_config(sockets),
        )
    except PapermillExecutionError as exc:
        if exc.ename == EmptyReport.__name__:
            for suffix in _REPORT_FILES:
                (out / f"{name}{suffix}").unlink(missing_ok=True)
            raise EmptyReport(f"no report: {exc.evalue}") from None
        first = (exc.source or "").strip().splitlines()
        where = f"cell {exc.cell_index}" + (f" ({first[0][:60]!r})" if first else "")
        raise ReportError(f"the report notebook failed in {where}: {exc.ename}: {exc.evalue} "
                          f"— the partly executed notebook is {executed}") from None
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    _export_html(executed, executed.with_suffix(".html"),
                 f"Sensor report · {describe_period(t0, t1)}")
    if keep is not None:
        prune_reports(out, keep)
    write_index(out)
    return executed


# -- command line -------------------------------------------------------------------------
