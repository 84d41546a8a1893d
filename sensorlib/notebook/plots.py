"""Figures of readings and alerts that stay readable and light from minutes to weeks.

Readings are aggregated on the server side before anything is drawn: each sensor's values
are put into time buckets sized to the figure's width (:func:`pick_bucket`), and a bucket
is drawn as its mean (a line) inside its min–max envelope (a band), so a spike of one
reading still shows at a week's scale while the figure holds a few thousand points
instead of millions. A bucket without a reading is a gap in the line and the band, never
interpolated across.

Alerts are summarised: counts per time bucket and severity (a bar chart under the
readings), and only the most severe ones (``top``) are marked, each on the figure of the
quantity it is about (:func:`alert_quantities`). Colours are fixed: sensors take colours
from :data:`SENSOR_PALETTE`, which has no red or amber; alerts are always critical red and
warning amber (:data:`SEVERITY_COLOURS`), whatever order the data comes in.

Times are shown in UTC and every axis names its unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from sensorlib.errors import UsageError
from sensorlib.notebook import colours

__all__ = [
    "ALL",
    "FIELDS",
    "HISTORY_GAP",
    "SENSOR_PALETTE",
    "SEVERITY_COLOURS",
    "Figure",
    "HistoryView",
    "LiveTail",
    "alert_counts",
    "alert_quantities",
    "bucket_label",
    "envelope",
    "history_view",
    "load",
    "pick_bucket",
    "readings_figure",
    "sensor_colours",
    "top_alerts",
    "typical_interval",
]

#: Alert marker and bar colours: the same whatever order severities appear in.
SEVERITY_COLOURS = colours.SEVERITY_COLOURS
#: Sensor line colours: Category10 without its red and orange, so no sensor looks like an alert.
SENSOR_PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#7f7f7f",
                  "#bcbd22", "#e377c2", "#393b79", "#637939")
#: The quantities a reading carries: (column, axis label, unit).
FIELDS = {"temperature": ("Temperature", "°C"), "humidity": ("Humidity", "%")}

_NICE = [pd.Timedelta(s) for s in (
    "1s", "2s", "5s", "10s", "15s", "30s", "1min", "2min", "5min", "10min", "15min", "30min",
    "1h", "2h", "3h", "6h", "12h", "1D", "2D", "7D")]
_TIME_LABEL = "time (UTC)"


# -- aggregation ---------------------------------------------------------------------------


def _nice_at_least(span: pd.Timedelta) -> pd.Timedelta:
    return next((step for step in _NICE if step >= span), _NICE[-1])


def pick_bucket(start: pd.Timestamp, end: pd.Timestamp, points: int = 600,
                interval: pd.Timedelta | None = None) -> pd.Timedelta:
    """A round bucket width giving at most about ``points`` buckets over ``[start, end)``.

    With ``interval`` (the sensors' typical time between readings) the bucket is at least
    twice that, so an ordinary bucket always holds a reading and an empty one is a real gap.

    >>> pick_bucket(pd.Timestamp("2026-01-01"), pd.Timestamp("2026-01-08"))
    Timedelta('0 days 00:30:00')
    >>> pick_bucket(pd.Timestamp("2026-01-01"), pd.Timestamp("2026-01-01 00:05"),
    ...             interval=pd.Timedelta("2s"))
    Timedelta('0 days 00:00:05')
    """
    if points < 1:
        raise UsageError(f"points must be positive (got {points})")
    span = max(pd.Timedelta(end - start), pd.Timedelta("1s"))
    bucket = _nice_at_least(span / points)
    if interval is not None and pd.notna(interval):
        bucket = max(bucket, _nice_at_least(2 * interval))
    return bucket


def bucket_label(bucket: pd.Timedelta) -> str:
    """``15 min``, ``1 h``, ``10 s`` — for titles and captions."""
    seconds = int(bucket.total_seconds())
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def typical_interval(readings: pd.DataFrame) -> pd.Timedelta | None:
    """The median time between consecutive readings of one sensor (None if unknown)."""
    if len(readings) < 2:
        return None
    sample = readings.iloc[-min(len(readings), 200_000):]
    ts = sample.sort_values(["sensorId", "timestamp"], kind="stable")
    gaps = ts["timestamp"].diff()[ts["sensorId"].eq(ts["sensorId"].shift())]
    gaps = gaps[gaps > pd.Timedelta(0)]
    return None if gaps.empty else pd.Timedelta(gaps.median())


def _naive(ts: pd.Series | pd.DatetimeIndex) -> Any:
    """UTC timestamps without their zone (Bokeh draws naive datetimes as given)."""
    return ts.dt.tz_convert(None) if isinstance(ts, pd.Series) else ts.tz_convert(None)


def envelope(readings: pd.DataFrame, field: str, bucket: pd.Timedelta,
             start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
             ) -> pd.DataFrame:
    """Per sensor and bucket: ``mean``, ``min``, ``max``, ``count`` of ``field``.

    Every bucket from ``start`` to ``end`` (default: the data's own range) is present for
    every sensor; a bucket without readings has ``count`` 0 and NaN values, which draws as
    a gap. ``timestamp`` is the bucket's start (UTC).
    """
    columns = ["sensorId", "timestamp", "mean", "min", "max", "count"]
    if readings.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns}).astype(
            {"sensorId": "str", "timestamp": "datetime64[us, UTC]", "count": "int64"})
    ts = readings["timestamp"]
    first = (ts.min() if start is None else start).floor(bucket)
    last = ts.max() if end is None else end - pd.Timedelta(1, "us")
    grid = pd.date_range(first, last.floor(bucket), freq=bucket, unit="us")
    keyed = readings.assign(timestamp=ts.dt.floor(bucket))
    stats = keyed.groupby(["sensorId", "timestamp"], sort=True)[field].agg(
        ["mean", "min", "max", "count"])
    sensors = sorted(readings["sensorId"].unique())
    full = pd.MultiIndex.from_product([sensors, grid], names=["sensorId", "timestamp"])
    out = stats.reindex(full)
    out["count"] = out["count"].fillna(0).astype("int64")
    return out.reset_index()


def alert_quantities(alerts: pd.DataFrame) -> pd.DataFrame:
    """Which quantity each alert is about: columns ``temperature`` and ``humidity`` (bool).

    Each rule says it (:meth:`sensorlib.rules.Rule.quantities_of`): a threshold alert is about
    the value(s) it names, a rate-of-change alert about temperature, an outlier about the
    value it names, a stuck sensor about both; a silent sensor is about neither (it has
    no new value), so it is counted but never marked on a value figure.
    """
    from sensorlib.rules import registry

    rule = alerts["rule"].astype("str")
    out = pd.DataFrame({"temperature": np.zeros(len(alerts), bool),
                        "humidity": np.zeros(len(alerts), bool)}, index=alerts.index)
    for name, cls in registry().items():  # each rule says what its own alerts are about
        mask = rule.eq(name).to_numpy()
        if mask.any():
            out.loc[mask] = cls.quantities_of(alerts.loc[mask]).to_numpy()
    return out


def top_alerts(alerts: pd.DataFrame, field: str, top: int = 20) -> pd.DataFrame:
    """The ``top`` most severe alerts about ``field``: critical first, then most extreme.

    "Most extreme" is the distance of the alert's value from the median of those alerts'
    values, so both hot spikes and cold drops rank high.
    """
    about = alerts.loc[alert_quantities(alerts)[field].to_numpy()] if not alerts.empty else alerts
    if about.empty or top <= 0:
        return about.iloc[:0]
    values = about[field].astype("float64")
    rank = pd.DataFrame({"critical": about["severity"].eq("critical").to_numpy(),
                         "distance": (values - values.median()).abs().to_numpy(),
                         "timestamp": about["timestamp"].to_numpy()}, index=about.index)
    order = rank.sort_values(["critical", "distance", "timestamp"],
                             ascending=[False, False, True], kind="stable").index
    return about.loc[order[:top]].sort_values("timestamp", kind="stable")


def alert_counts(alerts: pd.DataFrame, bucket: pd.Timedelta, start: pd.Timestamp,
                 end: pd.Timestamp) -> pd.DataFrame:
    """Alerts per bucket and severity: columns ``timestamp``, ``warning``, ``critical``."""
    grid = pd.date_range(start.floor(bucket), (end - pd.Timedelta(1, "us")).floor(bucket),
                         freq=bucket, unit="us")
    if alerts.empty:
        counts = pd.DataFrame(0, index=grid, columns=["warning", "critical"])
    else:
        counts = (alerts.assign(timestamp=alerts["timestamp"].dt.floor(bucket))
                  .groupby(["timestamp", "severity"]).size().unstack(fill_value=0)
                  .reindex(index=grid, columns=["warning", "critical"], fill_value=0))
    counts.index.name = "timestamp"
    return counts.astype("int64").reset_index()


# -- figures --------------------------------------------------------------------------------
#
# Plain Bokeh, not HoloViews/Panel: a figure then needs BokehJS and its widgets (1.6 MB,
# embedded once by :func:`load`) instead of Bokeh + Panel + WebGL (2.8 MB), which alone
# would make a rendered notebook too heavy to mail.

ALL = "all sensors"
_TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"


def sensor_colours(sensors: Sequence[str]) -> dict[str, str]:
    """A stable colour per sensor (sorted ids take the palette in turn)."""
    return {s: SENSOR_PALETTE[i % len(SENSOR_PALETTE)] for i, s in enumerate(sorted(sensors))}


def _period(readings: pd.DataFrame, alerts: pd.DataFrame, start: pd.Timestamp | None,
            end: pd.Timestamp | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    times = [f["timestamp"] for f in (readings, alerts) if not f.empty]
    lo = start if start is not None else min(t.min() for t in times)
    hi = end if end is not None else max(t.max() for t in times) + pd.Timedelta(1, "s")
    return lo, hi


def _source(frame: pd.DataFrame) -> Any:
    from bokeh.models import ColumnDataSource

    data = {c: frame[c].to_numpy() for c in frame.columns}
    return ColumnDataSource(data)


class Figure:
    """A Bokeh layout that shows itself in a notebook (after :func:`load`) and saves to HTML."""

    def __init__(self, model: Any, title: str) -> None:
        self.model = model
        self.title = title

    def _repr_html_(self) -> str:
        from bokeh.embed import components

        script, div = components(self.model)
        return f"{div}\n{script}"

    def __repr__(self) -> str:
        return f"<Figure {self.title!r}>"

    def save(self, path: str | Any, title: str | None = None) -> None:
        """A standalone HTML file (BokehJS embedded: opens offline)."""
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        html = file_html(self.model, INLINE, title=title or self.title)
        with open(path, "w", encoding="utf-8") as out:
            out.write(html)


class _BokehJS:
    def _repr_html_(self) -> str:
        from bokeh.resources import Resources

        scripts = Resources(mode="inline", components=["bokeh", "bokeh-widgets"]).js_raw
        # Notebook pages (nbconvert, classic Jupyter) load require.js; BokehJS would then
        # register as an AMD module instead of setting window.Bokeh, so hide it meanwhile.
        hide = ('<script type="text/javascript">window._sensorlibDefine = window.define; '
                "window.define = undefined;</script>")
        restore = ('<script type="text/javascript">window.define = window._sensorlibDefine;'
                   "</script>")
        return "\n".join([hide, *(f'<script type="text/javascript">{js}</script>'
                                   for js in scripts), restore])

    def __repr__(self) -> str:
        return "<BokehJS embedded>"


def load() -> _BokehJS:
    """BokehJS for the figures of this notebook, embedded so the notebook works offline.

    Display it once, before the first figure (the last expression of a cell).
    """
    return _BokehJS()


def _legend_outside(fig: Any, items: list[tuple[str, list[Any]]]) -> None:
    """A legend right of the plot; clicking an entry hides or shows its series."""
    from bokeh.core.properties import value
    from bokeh.models import Legend, LegendItem

    if items:  # value(): a label is text even when it names a data column ("mean", "max")
        fig.add_layout(Legend(items=[LegendItem(label=value(label), renderers=rs)
                                     for label, rs in items],
                              click_policy="hide", label_text_font_size="9pt", spacing=0),
                       "right")


def _time_axis(fig: Any) -> None:
    from bokeh.models import DatetimeTickFormatter

    fig.xaxis.axis_label = _TIME_LABEL
    fig.xaxis.formatter = DatetimeTickFormatter(
        seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M", hourmin="%H:%M",
        hours="%H:%M", days="%a %d %b", months="%b %Y", context=DatetimeTickFormatter(
            seconds="%d %b %Y", minsec="%d %b %Y", minutes="%d %b %Y", hourmin="%d %b %Y",
            hours="%d %b %Y", days="%Y", months="", years=""))


def _markers(fig: Any, rows: pd.DataFrame, field: str, tag: str, unit: str) -> list[Any]:
    from bokeh.models import HoverTool

    out = []
    for severity, marker in (("warning", "triangle"), ("critical", "x")):
        part = rows[rows["severity"] == severity]
        if part.empty:
            continue
        src = _source(pd.DataFrame({
            "timestamp": _naive(part["timestamp"]).to_numpy(),
            "value": part[field].to_numpy(), "sensorId": part["sensorId"].to_numpy(),
            "rule": part["rule"].to_numpy(), "reason": part["reason"].to_numpy()}))
        r = fig.scatter("timestamp", "value", source=src, marker=marker, size=11, line_width=2,
                        color=SEVERITY_COLOURS[severity], name=f"{severity} alert")
        r.tags = [tag]
        fig.add_tools(HoverTool(renderers=[r], formatters={"@timestamp": "datetime"}, tooltips=[
            ("alert", f"{severity} · @rule"), ("sensor", "@sensorId"),
            ("time", "@timestamp{%Y-%m-%d %H:%M:%S} UTC"), ("value", f"@value{{0.0}} {unit}"),
            ("reason", "@reason")]))
        out.append(r)
    return out


def _quantity(readings: pd.DataFrame, alerts: pd.DataFrame, field: str, lo: pd.Timestamp,
              hi: pd.Timestamp, bucket: pd.Timedelta, top: int, width: int, height: int,
              colours: dict[str, str], x_range: Any, sensors: list[str]) -> tuple[Any, dict]:
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    name, unit = FIELDS[field]
    per = bucket_label(bucket)
    fig = figure(width=width, height=height, x_axis_type="datetime", x_range=x_range,
                 tools=_TOOLS, active_scroll=None, y_axis_label=f"{name.lower()} ({unit})")
    _time_axis(fig)
    fig.y_range.only_visible = True
    env = envelope(readings, field, bucket, lo, hi)
    env["timestamp"] = _naive(env["timestamp"])
    lines = []
    for sensor in sensors:
        part = env[env["sensorId"] == sensor]
        src = _source(part)
        colour = colours[sensor]
        band = fig.varea("timestamp", "min", "max", source=src, color=colour, alpha=0.2,
                         visible=len(sensors) == 1)
        band.tags = [sensor]
        line = fig.line("timestamp", "mean", source=src, color=colour, line_width=1.6)
        line.tags = [ALL, sensor]
        lines.append(line)
    fig.add_tools(HoverTool(renderers=lines, mode="mouse", formatters={"@timestamp": "datetime"},
                            tooltips=[("sensor", "@sensorId"),
                                      (f"{per} from", "@timestamp{%Y-%m-%d %H:%M} UTC"),
                                      ("mean", f"@mean{{0.0}} {unit}"),
                                      ("min – max", f"@min{{0.0}} – @max{{0.0}} {unit}"),
                                      ("readings", "@count{0,0}")]))
    about = alerts[alert_quantities(alerts)[field].to_numpy()] if not alerts.empty else alerts
    titles = {}
    marked = top_alerts(about, field, top)
    shown = _markers(fig, marked, field, ALL, unit)
    legend = [(s, [line]) for s, line in zip(sensors, lines, strict=True)]
    legend += [(r.name, [r]) for r in shown]
    marks = (f"; the {len(marked)} most severe of {len(about):,} {name.lower()} alerts marked"
             if not alerts.empty else "")
    titles[ALL] = (f"{name} of {len(sensors)} sensor{'s' if len(sensors) != 1 else ''}, mean "
                   f"per {per}{marks}")
    for sensor in sensors:
        mine = top_alerts(about[about["sensorId"] == sensor], field, top)
        if len(sensors) > 1:
            for r in _markers(fig, mine, field, sensor, unit):
                r.visible = False
        n = int((about["sensorId"] == sensor).sum())
        marks = (f"; the {len(mine)} most severe of {n:,} {name.lower()} alerts marked"
                 if not alerts.empty else "")
        titles[sensor] = f"{name} of {sensor}: mean and min–max per {per}{marks}"
    fig.title.text = titles[ALL if len(sensors) > 1 else sensors[0]]
    _legend_outside(fig, legend)
    return fig, titles


def _counts(alerts: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp, width: int, height: int,
            x_range: Any, sensors: list[str]) -> tuple[Any, dict]:
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    bucket = max(pick_bucket(lo, hi, points=170), pd.Timedelta("1min"))
    per = bucket_label(bucket)
    fig = figure(width=width, height=height, x_axis_type="datetime", x_range=x_range,
                 tools=_TOOLS, active_scroll=None, y_axis_label=f"alerts per {per}")
    _time_axis(fig)
    titles = {}
    groups = [(ALL, alerts)] + ([(s, alerts[alerts["sensorId"] == s]) for s in sensors]
                                if len(sensors) > 1 else [])
    for tag, part in groups:
        counts = alert_counts(part, bucket, lo, hi)
        counts["timestamp"] = _naive(counts["timestamp"] + bucket / 2)
        src = _source(counts)
        bars = fig.vbar_stack(["warning", "critical"], x="timestamp", source=src,
                              width=bucket.total_seconds() * 1000 * 0.9,
                              color=[SEVERITY_COLOURS["warning"], SEVERITY_COLOURS["critical"]],
                              line_alpha=0)
        if tag == ALL:
            legend = [("critical", [bars[1]]), ("warning", [bars[0]])]
        for bar in bars:
            bar.tags = [tag]
            bar.visible = tag == ALL
        fig.add_tools(HoverTool(renderers=bars, formatters={"@timestamp": "datetime"},
                                tooltips=[("around", "@timestamp{%Y-%m-%d %H:%M} UTC"),
                                          ("critical", "@critical{0,0}"),
                                          ("warning", "@warning{0,0}")]))
        n = len(part)
        who = "all sensors" if tag == ALL else tag
        titles[tag] = (f"Alerts per {per} by severity, {who}: {n:,} "
                       f"({int(part['severity'].eq('critical').sum()):,} critical)")
    fig.y_range.start = 0
    fig.y_range.only_visible = True
    _whole_ticks(fig)
    fig.title.text = titles[ALL]
    _legend_outside(fig, legend)
    return fig, titles


def readings_figure(readings: pd.DataFrame, alerts: pd.DataFrame | None = None, *,
                    start: pd.Timestamp | None = None, end: pd.Timestamp | None = None,
                    top: int = 20, width: int = 1080, height: int = 260,
                    counts: bool = True) -> Figure:
    """Temperature over humidity (over alerts per bucket), one time axis, a sensor selector.

    "all sensors" shows each sensor's mean per bucket and the ``top`` most severe alerts;
    picking one sensor adds its min–max band and marks its own most severe alerts. Each
    alert is marked on the figure of the quantity it is about (:func:`alert_quantities`).
    Legend entries hide or show a series on click.
    """
    from bokeh.layouts import column
    from bokeh.models import CustomJS, Div, Range1d, Select

    if alerts is None:  # no alerts given: nothing to count either
        from sensorlib.replay.decode import empty_alerts

        alerts, counts = empty_alerts(), False
    if readings.empty and alerts.empty:
        return Figure(Div(text="<p>No readings and no alerts in this period.</p>"), "empty")
    lo, hi = _period(readings, alerts, start, end)
    sensors = sorted(set(readings["sensorId"].unique()))
    alerts = alerts[alerts["sensorId"].isin(sensors)] if sensors else alerts
    bucket = pick_bucket(lo, hi, interval=typical_interval(readings))
    colours = sensor_colours(sensors)
    x_range = Range1d(_naive(pd.DatetimeIndex([lo]))[0], _naive(pd.DatetimeIndex([hi]))[0])
    figs, titles = [], []
    if sensors:
        for field in FIELDS:
            fig, t = _quantity(readings, alerts, field, lo, hi, bucket, top, width, height,
                               colours, x_range, sensors)
            figs.append(fig)
            titles.append(t)
    if counts:
        fig, t = _counts(alerts, lo, hi, width, max(160, height * 2 // 3), x_range, sensors)
        figs.append(fig)
        titles.append(t)
    if len(sensors) > 1:
        select = Select(title="sensor", value=ALL, options=[ALL, *sensors], width=320)
        select.js_on_change("value", CustomJS(args={"figs": list(figs), "titles": titles}, code="""
            const pick = cb_obj.value;
            figs.forEach((fig, i) => {
                for (const r of fig.renderers) {
                    if (r.tags.length) { r.visible = r.tags.includes(pick); }
                }
                fig.title.text = titles[i].get ? titles[i].get(pick) : titles[i][pick];
            });
        """))
        figs.insert(0, select)
    return Figure(column(*figs), "readings")


def counts_figure(events: pd.DataFrame, by: str, *, start: pd.Timestamp, end: pd.Timestamp,
                  title: str, what: str = "records", width: int = 1080, height: int = 240,
                  colours: dict[str, str] | None = None) -> Figure:
    """Events (rows with a ``timestamp``) per time bucket, stacked by the ``by`` column."""
    from bokeh.models import HoverTool, Range1d
    from bokeh.plotting import figure

    bucket = max(pick_bucket(start, end, points=170), pd.Timedelta("1min"))
    per = bucket_label(bucket)
    grid = pd.date_range(start.floor(bucket), (end - pd.Timedelta(1, "us")).floor(bucket),
                         freq=bucket, unit="us")
    keys = sorted(map(str, events[by].unique())) if not events.empty else []
    counts = (events.assign(timestamp=events["timestamp"].dt.floor(bucket), **{by: events[by]
                                                                                .astype(str)})
              .groupby(["timestamp", by]).size().unstack(fill_value=0)
              .reindex(index=grid, columns=keys, fill_value=0)) if keys else \
        pd.DataFrame(index=grid)
    counts.index = _naive(counts.index + bucket / 2)
    names = [f"c{i}" for i in range(len(keys))]  # column names safe for Bokeh's field syntax
    data = counts.set_axis(names, axis=1).reset_index(names="timestamp")
    fig = figure(width=width, height=height, x_axis_type="datetime", tools=_TOOLS,
                 active_scroll=None, y_axis_label=f"{what} per {per}",
                 x_range=Range1d(_naive(pd.DatetimeIndex([start]))[0],
                                 _naive(pd.DatetimeIndex([end]))[0]),
                 title=f"{title} ({len(events):,} in all, per {per})")
    _time_axis(fig)
    fig.y_range.start = 0
    _whole_ticks(fig)
    if keys:
        palette = colours or {k: SENSOR_PALETTE[i % len(SENSOR_PALETTE)]
                              for i, k in enumerate(keys)}
        bars = fig.vbar_stack(names, x="timestamp", source=_source(data),
                              width=bucket.total_seconds() * 1000 * 0.9, line_alpha=0,
                              color=[palette[k] for k in keys])
        for bar, key, name in zip(bars, keys, names, strict=True):
            fig.add_tools(HoverTool(renderers=[bar], formatters={"@timestamp": "datetime"},
                                    tooltips=[("", html_label(key)),
                                              ("around", "@timestamp{%Y-%m-%d %H:%M} UTC"),
                                              (what, f"@{name}{{0,0}}")]))
        _legend_outside(fig, [(k, [b]) for k, b in zip(keys, bars, strict=True)])
    return Figure(fig, title)


def html_label(text: str) -> str:
    """``text`` escaped for a Bokeh tooltip's label (tooltips are HTML templates)."""
    import html

    return html.escape(text, quote=True)


def lines_figure(series: dict[str, pd.Series], *, title: str, ylabel: str,
                 start: pd.Timestamp, end: pd.Timestamp, width: int = 1080, height: int = 260,
                 step: bool = True, dashed: Sequence[str] = (), colours: Sequence[str] = (),
                 integers: bool = False) -> Figure:
    """One line per named series (index: UTC bucket starts), with a legend; for comparisons.

    Series named in ``dashed`` are drawn dashed; ``colours`` gives each series its colour
    in order (default: the sensor palette); ``integers`` keeps the y ticks whole.
    """
    from bokeh.models import HoverTool, Range1d
    from bokeh.plotting import figure

    fig = figure(width=width, height=height, x_axis_type="datetime", tools=_TOOLS,
                 active_scroll=None, y_axis_label=ylabel, title=title,
                 x_range=Range1d(_naive(pd.DatetimeIndex([start]))[0],
                                 _naive(pd.DatetimeIndex([end]))[0]))
    _time_axis(fig)
    items = []
    for i, (label, values) in enumerate(series.items()):
        src = _source(pd.DataFrame({"timestamp": _naive(pd.DatetimeIndex(values.index)),
                                    "value": values.to_numpy(dtype="float64")}))
        colour = colours[i] if i < len(colours) else SENSOR_PALETTE[i % len(SENSOR_PALETTE)]
        dash = "dashed" if label in dashed else "solid"
        r = (fig.step("timestamp", "value", source=src, mode="after", color=colour,
                      line_width=1.8, line_dash=dash) if step else
             fig.line("timestamp", "value", source=src, color=colour, line_width=1.8,
                      line_dash=dash))
        fig.add_tools(HoverTool(renderers=[r], formatters={"@timestamp": "datetime"},
                                tooltips=[("", html_label(label)),
                                          ("from", "@timestamp{%Y-%m-%d %H:%M} UTC"),
                                          (ylabel, "@value{0,0.[00]}")]))
        items.append((label, [r]))
    if integers:
        _whole_ticks(fig)
    _legend_outside(fig, items)
    return Figure(fig, title)


def _whole_ticks(fig: Any) -> None:
    """Counts have whole ticks (no 0.5 alerts)."""
    from bokeh.models import BasicTicker

    fig.yaxis.ticker = BasicTicker(min_interval=1)


# -- zoomable history (the dashboard's History tab and the notebooks) ----------------------

#: The History view's tools: the wheel and drag move the time axis only (box zoom: both).
_HISTORY_TOOLS = ["xpan", "xwheel_zoom", "box_zoom", "reset", "save"]
#: A gap between two readings of a sensor longer than this breaks its line (a silence).
HISTORY_GAP = pd.Timedelta("30s")
#: What a zoomed-out draw shows (:attr:`HistoryView.algorithm`).
BANDED = "mean line, min–max band"


class Drawn(NamedTuple):
    """What is drawn of one sensor: ``time``, ``value`` (the reading, or the bucket's
    mean), ``low``/``high`` (the bucket's min and max; the reading itself when raw) and
    ``n``, the readings the range holds. NaN breaks the line (a silence, an empty bucket)."""

    time: Any
    value: Any
    low: Any
    high: Any
    n: int


def _bucketed(x: Any, y: Any, edges: Any) -> tuple[Any, Any, Any, Any]:
    """Mean, min and max of ``y`` per bucket ``[edges[k], edges[k+1])`` (``x`` sorted,
    int64 ns), with NaN for an empty bucket; times are the buckets' middles."""
    import numpy as np

    bounds = np.searchsorted(x, edges, "left")
    counts = np.diff(bounds)
    filled = counts > 0
    starts = bounds[:-1][filled]
    y = y[: bounds[-1]]
    nb = len(edges) - 1
    mean = np.full(nb, np.nan)
    low = np.full(nb, np.nan)
    high = np.full(nb, np.nan)
    if len(starts):
        mean[filled] = np.add.reduceat(y, starts) / counts[filled]
        low[filled] = np.minimum.reduceat(y, starts)
        high[filled] = np.maximum.reduceat(y, starts)
    middles = (edges[:-1] + (edges[1] - edges[0]) // 2).view("datetime64[ns]")
    return middles, mean, low, high


class HistoryView:
    """Readings of any period, one series per sensor, redrawn for the visible range.

    Every sensor's readings are kept once in memory (numpy, sorted by time); each draw (the
    first, and each zoom or pan: a :class:`holoviews.streams.RangeX` stream, or a Bokeh
    ``RangesUpdate`` in :meth:`figure`) slices the visible range with a binary search.
    Zoomed out (more than ``2 × points`` readings per sensor in view) each sensor is drawn
    as its **mean line inside a min–max band** over round time buckets
    (:func:`pick_bucket`, about ``points / 2`` of them, on a fixed grid so a pan does not
    shift them): a month stays readable and a one-reading spike still reaches the band's
    edge. Zoomed in, every reading is drawn (with a marker once few enough are in view). A
    silence longer than :data:`HISTORY_GAP` (zoomed in) or an empty bucket (zoomed out)
    breaks the line. :attr:`resolution` says what the last draw showed (:meth:`summary`
    as text).
    """

    def __init__(self, readings: pd.DataFrame, field: str = "temperature", *,
                 width: int = 1200, height: int = 380, title: str | None = None,
                 points: int | None = None) -> None:
        import holoviews as hv
        import numpy as np

        if "bokeh" not in hv.Store.renderers or hv.Store.current_backend != "bokeh":
            hv.extension("bokeh", logo=False)  # the options below are Bokeh's

        if field not in FIELDS:
            raise UsageError(f"field must be one of {', '.join(FIELDS)}, got {field!r}")
        self.field = field
        self.width = width
        self.height = height
        self.points = points or width  # raw readings per sensor at most; buckets: half
        self.algorithm = BANDED
        self.title = title
        #: sensor -> (times as datetime64[ns], values, where a silence breaks the line:
        #: the index of each reading that follows one)
        self.series: dict[str, tuple[Any, Any, Any]] = {}
        if not readings.empty:
            # numpy, not groupby: a month is millions of rows (replay frames are time-sorted).
            ids = readings["sensorId"]
            if isinstance(ids.dtype, pd.CategoricalDtype):  # the archive's frames: no factorize
                codes, names = ids.cat.codes.to_numpy(), ids.cat.categories
            else:
                codes, names = pd.factorize(ids)
            stamps = readings["timestamp"]
            if not (isinstance(stamps.dtype, pd.DatetimeTZDtype) or stamps.dtype.kind == "M"):
                stamps = pd.to_datetime(stamps, utc=True)
            unit = (stamps.dtype.unit if isinstance(stamps.dtype, pd.DatetimeTZDtype)
                    else np.datetime_data(stamps.dtype)[0])
            ticks = stamps.array.asi8  # UTC (naive times are taken as UTC), no copy
            to_ns = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
            values = readings[field].to_numpy("float64")
            present = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(names)))
            if len(present) <= 32:  # a mask per sensor: cheaper than sorting millions of rows
                parts = {k: codes == k for k in present}
            else:
                order = np.argsort(codes, kind="stable")
                bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
                parts = {k: order[bounds[k]:bounds[k + 1]] for k in present}
            for k in sorted(present.tolist(), key=lambda k: str(names[k])):
                rows = parts[k]
                x = ticks[rows] * to_ns if to_ns != 1 else ticks[rows]
                y = values[rows]
                step = np.diff(x)
                if len(x) > 1 and (step < 0).any():
                    by_time = np.argsort(x, kind="stable")
                    x, y = x[by_time], y[by_time]
                    step = np.diff(x)
                breaks = np.flatnonzero(step > HISTORY_GAP.value) + 1
                self.series[str(names[k])] = (x.view("datetime64[ns]"), y, breaks)
        self.colours = sensor_colours(list(self.series))
        self.total = int(sum(len(s[0]) for s in self.series.values()))
        self.resolution: dict[str, Any] = {}
        self.on_draw: list[Any] = []
        self.range = hv.streams.RangeX()
        self.plot = hv.DynamicMap(self._draw, streams=[self.range])

    @property
    def band_alpha(self) -> float:
        """The bands' opacity: faint when several sensors overlap (a sensor whose faults
        reach far would otherwise cover the others' lines), clear for one."""
        return 0.25 if len(self.series) <= 1 else 0.25 / min(len(self.series), 4) + 0.02

    @property
    def period(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """First and last reading time held (UTC), None without readings."""
        if not self.series:
            return None
        lo = min(s[0][0] for s in self.series.values())
        hi = max(s[0][-1] for s in self.series.values())
        return pd.Timestamp(lo, tz="UTC"), pd.Timestamp(hi, tz="UTC")

    @staticmethod
    def _naive_ns(value: Any) -> Any:
        import numpy as np

        ts = pd.Timestamp(value)
        return np.datetime64(ts.tz_convert(None) if ts.tzinfo is not None else ts, "ns")

    def _bounds(self, x_range: tuple[Any, Any] | None) -> tuple[Any, Any] | None:
        if x_range is None or x_range[0] is None or x_range[1] is None:
            return None
        return self._naive_ns(x_range[0]), self._naive_ns(x_range[1])

    def visible(self, sensor: str, x_range: tuple[Any, Any] | None) -> tuple[Any, Any, Any]:
        """One sensor's readings inside ``x_range`` (all without a range), with one more
        beyond each edge so a line reaches the border of the plot, and where a silence
        breaks the line (indices into the slice)."""
        import numpy as np

        x, y, breaks = self.series[sensor]
        bounds = self._bounds(x_range)
        if bounds is None:
            return x, y, breaks
        i = max(0, int(np.searchsorted(x, bounds[0], "left")) - 1)
        j = min(len(x), int(np.searchsorted(x, bounds[1], "right")) + 1)
        inside = breaks[np.searchsorted(breaks, i, "right"):np.searchsorted(breaks, j, "left")]
        return x[i:j], y[i:j], inside - i

    def bucket(self, x_range: tuple[Any, Any] | None) -> pd.Timedelta:
        """The bucket width of a zoomed-out draw of ``x_range``: a round width giving about
        ``points / 2`` buckets (at least 2 × the sensors' 2-s interval)."""
        bounds = self._bounds(x_range)
        if bounds is None:
            period = self.period
            if period is None:
                return pd.Timedelta("1min")
            bounds = (period[0].tz_convert(None), period[1].tz_convert(None))
        return pick_bucket(pd.Timestamp(bounds[0]), pd.Timestamp(bounds[1]),
                           points=max(1, self.points // 2), interval=pd.Timedelta("2s"))

    def _edges(self, x_range: tuple[Any, Any] | None, bucket: pd.Timedelta) -> Any:
        """Bucket edges (int64 ns) over the range, on the bucket's grid from the epoch."""
        import numpy as np

        bounds = self._bounds(x_range)
        if bounds is None:
            period = self.period
            assert period is not None
            lo, hi = period[0].tz_convert(None), period[1].tz_convert(None)
            bounds = (self._naive_ns(lo), self._naive_ns(hi))
        step = bucket.value
        first = int(bounds[0].astype("int64")) // step * step
        last = -(-(int(bounds[1].astype("int64")) + 1) // step) * step
        return np.arange(first, last + step, step, dtype=np.int64)

    def sample(self, sensor: str, x_range: tuple[Any, Any] | None, *,
               banded: bool | None = None) -> Drawn:
        """What is drawn of one sensor in ``x_range``: every reading, or (``banded``; by
        default when it holds more than ``2 × points`` readings) each bucket's mean, min
        and max (see :class:`Drawn`)."""
        import numpy as np

        x, y, breaks = self.visible(sensor, x_range)
        n = len(x)
        if n and x_range is not None and x_range[0] is not None:  # not the edge readings
            lo, hi = self._bounds(x_range) or (x[0], x[-1])
            n = int(np.searchsorted(x, hi, "right") - np.searchsorted(x, lo, "left"))
        if banded is None:
            banded = n > 2 * self.points
        if banded:
            edges = self._edges(x_range, self.bucket(x_range))
            t, mean, low, high = _bucketed(x.view("int64"), y.astype("float64", copy=False),
                                           edges)
            return Drawn(t, mean, low, high, n)
        y = y.astype("float64", copy=False)
        if len(breaks):
            x = np.insert(x, breaks, x[breaks - 1])
            y = np.insert(y, breaks, np.nan)
        return Drawn(x, y, y, y, n)

    def compute(self, x_range: tuple[Any, Any] | None = None
                ) -> tuple[dict[str, Drawn], bool, bool]:
        """What to draw for ``x_range`` (None: everything): per sensor a :class:`Drawn`,
        whether it is banded (zoomed out) and whether single readings get markers. Sets
        :attr:`resolution`, calls :attr:`on_draw`."""
        counts = {s: len(self.visible(s, x_range)[0]) for s in self.series}
        banded = any(n > 2 * self.points for n in counts.values())
        out = {s: self.sample(s, x_range, banded=banded) for s in self.series}
        visible = sum(d.n for d in out.values())
        drawn = sum(int((~_isnan(d.value)).sum()) for d in out.values())
        lo, hi = x_range if x_range and x_range[0] is not None else (
            self.period if self.period else (None, None))
        span = (pd.Timestamp(hi) - pd.Timestamp(lo)) if lo is not None else pd.Timedelta(0)
        bucket = self.bucket(x_range) if banded else None
        self.resolution = {
            "visible": visible, "drawn": drawn, "raw": not banded,
            "span_seconds": span.total_seconds(),
            "per_point_seconds": bucket.total_seconds() if bucket is not None else 0.0,
            "bucket": bucket_label(bucket) if bucket is not None else None,
            "algorithm": BANDED if banded else "none", "sensors": len(self.series),
        }
        for hook in self.on_draw:
            hook(self.resolution)
        return out, banded, not banded and visible <= 3000

    # -- Bokeh (the dashboard: a zoom updates the data sources, nothing else) --------------

    def figure(self, *, server: bool = True) -> Any:
        """A Bokeh figure of the view whose data follow its time range: on each zoom or pan
        (a ``RangesUpdate`` event, once the gesture ends) :meth:`set_range` redraws. The
        callback runs in a Bokeh/Panel server; a static page keeps the first draw."""
        from bokeh.events import RangesUpdate
        from bokeh.models import ColumnDataSource, DataRange1d, HoverTool, Range1d
        from bokeh.plotting import figure

        label, unit = FIELDS[self.field]
        period = self.period
        x_range = (Range1d(period[0].tz_convert(None), period[1].tz_convert(None))
                   if period else Range1d(0, 1))
        fig = figure(height=self.height, sizing_mode="stretch_width", x_axis_type="datetime",
                     x_range=x_range, y_range=DataRange1d(only_visible=True),
                     tools=",".join(_HISTORY_TOOLS), active_scroll="xwheel_zoom",
                     active_drag="xpan", title=self.title or f"{label} ({unit})",
                     output_backend="canvas")
        _time_axis(fig)
        fig.yaxis.axis_label = f"{label} ({unit})"
        self._sources: dict[str, tuple[Any, Any, Any]] = {}
        items, lines = [], []
        for sensor in self.series:
            colour = self.colours[sensor]
            band_src = ColumnDataSource({"time": [], "low": [], "high": []})
            line_src = ColumnDataSource({"time": [], "value": [], "low": [], "high": [],
                                         "sensor": []})
            mark_src = ColumnDataSource({"time": [], "value": [], "sensor": []})
            band = fig.varea("time", "low", "high", source=band_src, color=colour,
                             alpha=self.band_alpha)
            line = fig.line("time", "value", source=line_src, color=colour, line_width=1.6)
            marks = fig.scatter("time", "value", source=mark_src, color=colour, size=4)
            self._sources[sensor] = (band_src, line_src, mark_src)
            items.append((sensor, [band, line, marks]))
            lines.append(line)
        _legend_outside(fig, items)
        # @sensor is data: Bokeh escapes it in the tooltip.
        self._hover = HoverTool(renderers=lines, formatters={"@time": "datetime"})
        fig.add_tools(self._hover)
        self._figure = fig
        self.set_range(None)

        def on_ranges(event: Any) -> None:
            self.set_range((pd.Timestamp(event.x0, unit="ms"), pd.Timestamp(event.x1, unit="ms")))

        if server:  # a Python callback: only a server (Panel, Bokeh) can run it
            fig.on_event(RangesUpdate, on_ranges)
        return fig

    def _tooltips(self, banded: bool) -> list[tuple[str, str]]:
        label, unit = FIELDS[self.field]
        if not banded:
            return [("sensor", "@sensor"), ("time (UTC)", "@time{%F %T}"),
                    (f"{label} ({unit})", "@value{0.00}")]
        per = self.resolution.get("bucket") or ""
        return [("sensor", "@sensor"), (f"{per} around (UTC)", "@time{%F %H:%M}"),
                (f"mean ({unit})", "@value{0.00}"),
                (f"min – max ({unit})", "@low{0.00} – @high{0.00}")]

    def set_range(self, x_range: tuple[Any, Any] | None) -> None:
        """Redraw the Bokeh figure's sources for ``x_range`` (naive UTC times)."""
        data, banded, marked = self.compute(x_range)
        for sensor, d in data.items():
            band_src, line_src, mark_src = self._sources[sensor]
            names = [sensor] * len(d.time)
            band_src.data = ({"time": d.time, "low": d.low, "high": d.high} if banded else
                             {"time": d.time[:0], "low": d.low[:0], "high": d.high[:0]})
            line_src.data = {"time": d.time, "value": d.value, "low": d.low, "high": d.high,
                             "sensor": names}
            mark_src.data = ({"time": d.time, "value": d.value, "sensor": names} if marked else
                             {"time": d.time[:0], "value": d.value[:0], "sensor": []})
        tooltips = self._tooltips(banded)
        if self._hover.tooltips != tooltips:
            self._hover.tooltips = tooltips

    # -- HoloViews (notebooks: a DynamicMap on a RangeX stream) ----------------------------

    def _draw(self, x_range: tuple[Any, Any] | None = None) -> Any:
        import holoviews as hv

        label, unit = FIELDS[self.field]
        ydim = hv.Dimension(self.field, label=label, unit=unit)
        y2dim = hv.Dimension(f"{self.field}_high", label=label, unit=unit)
        xdim = hv.Dimension("time", label=_TIME_LABEL)
        data, banded, marked = self.compute(x_range)
        # Always one band, one curve and one scatter per sensor (empty when not shown): a
        # DynamicMap's overlay cannot gain elements later.
        elements: list[Any] = []
        for sensor, d in data.items():
            colour = self.colours[sensor]
            band = (d.time, d.low, d.high) if banded else (d.time[:0], d.low[:0], d.high[:0])
            elements.append(hv.Area(band, xdim, [ydim, y2dim], label=sensor).opts(
                color=colour, alpha=self.band_alpha, line_alpha=0))
            elements.append(hv.Curve((d.time, d.value), xdim, ydim, label=sensor).opts(
                color=colour))
            shown = (d.time, d.value) if marked else (d.time[:0], d.value[:0])
            elements.append(hv.Scatter(shown, xdim, ydim, label=sensor).opts(color=colour,
                                                                               size=4))
        if not elements:
            elements = [hv.Curve([], xdim, ydim)]
        return hv.Overlay(elements).opts(
            hv.opts.Curve(line_width=1.6, tools=["hover"], default_tools=_HISTORY_TOOLS),
            hv.opts.Scatter(default_tools=_HISTORY_TOOLS),
            hv.opts.Area(default_tools=_HISTORY_TOOLS),
            hv.opts.Overlay(height=self.height, responsive=True, show_grid=True,
                            legend_position="right", title=self.title or f"{label} ({unit})",
                            active_tools=["xwheel_zoom", "xpan"],
                            default_tools=_HISTORY_TOOLS),
        )

    def summary(self) -> str:
        """What the last draw shows, as text (no untrusted strings in it)."""
        r = self.resolution
        if not r:
            return "Nothing drawn yet."
        if not r["visible"]:
            return "No readings in this range."
        shown = (f"every reading drawn ({r['visible']:,})" if r["raw"] else
                 f"{r['visible']:,} readings in view: mean line and min–max band per "
                 f"{r['bucket']} ({r['drawn']:,} points drawn; zoom in for single readings)")
        return f"{r['sensors']} sensor{'s' if r['sensors'] != 1 else ''} · {shown}"


def _isnan(values: Any) -> Any:
    import numpy as np

    return np.isnan(np.asarray(values, dtype="float64"))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def history_view(readings: pd.DataFrame, field: str = "temperature", **options: Any
                 ) -> HistoryView:
    """The zoomable history of ``readings`` (a :func:`sensorlib.replay.reader.read_readings`
    frame): one line per sensor, downsampled to what is visible, every reading when zoomed
    in. Show ``view.plot`` in a notebook (``hv.extension("bokeh")`` first) or in Panel; the
    dashboard's History tab draws the same view."""
    return HistoryView(readings, field, **options)


class LiveTail:
    """A live chart of the readings topic: a :class:`holoviews.streams.Buffer` fed by
    :meth:`update`, which polls a consumer kept open at the end of the topic (no group,
    nobody's offsets move). In JupyterLab :meth:`start` calls it periodically (a Panel
    periodic callback) and the chart moves; headless (papermill, nbval) call :meth:`update`
    a bounded number of times instead.
    """

    def __init__(self, settings: Any, field: str = "temperature", *,
                 since: pd.DataFrame | None = None, keep: int = 20_000,
                 height: int = 320) -> None:
        import holoviews as hv
        import holoviews.plotting.bokeh

        if hv.Store.current_backend != "bokeh":
            hv.Store.set_current_backend("bokeh")
        self.settings = settings
        self.field = field
        self.updates = 0
        self.received = 0
        self._consumer: Any = None
        empty = pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns]"),
                              "sensorId": pd.Series([], dtype=object),
                              field: pd.Series([], dtype="float64")})
        self.buffer = hv.streams.Buffer(empty, length=keep, index=False)
        label, unit = FIELDS[field]
        ydim = hv.Dimension(field, label=label, unit=unit)

        def draw(data: pd.DataFrame) -> Any:
            sensors = sorted(data["sensorId"].unique()) if len(data) else []
            colours = sensor_colours(sensors)
            curves = [hv.Curve(data[data["sensorId"] == s], hv.Dimension("time", label=_TIME_LABEL),
                               ydim, label=str(s)).opts(color=colours[s]) for s in sensors]
            return hv.Overlay(curves or [hv.Curve(data, "time", ydim)]).opts(
                hv.opts.Curve(line_width=1.5, tools=["hover"]),
                hv.opts.Overlay(height=height, responsive=True, show_grid=True,
                                legend_position="right", framewise=True,
                                title=f"{label} ({unit}), live"))

        self.plot = hv.DynamicMap(draw, streams=[self.buffer])
        if since is not None and not since.empty:
            self._send(since)

    def snapshot(self) -> Any:
        """What the chart holds now, as a static Bokeh figure (the History view's drawing):
        for an exported page, which loads no HoloViews scripts and works offline."""
        data = self.buffer.data
        if data is None or not len(data):
            from IPython.display import HTML

            return HTML("No readings arrived while the live chart polled.")
        frame = pd.DataFrame({"timestamp": pd.to_datetime(data["time"]).dt.tz_localize("UTC"),
                              "sensorId": data["sensorId"].astype(str),
                              self.field: data[self.field].astype("float64")})
        view = history_view(frame, self.field, width=900)
        return Figure(view.figure(server=False), "live")

    def _send(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        rows = pd.DataFrame({"time": frame["timestamp"].dt.tz_convert(None)
                             .astype("datetime64[ns]").to_numpy(),
                             "sensorId": frame["sensorId"].astype(str).to_numpy(),
                             self.field: frame[self.field].to_numpy("float64")})
        self.buffer.send(rows.sort_values("time", kind="stable").reset_index(drop=True))
        self.received += len(rows)

    def _open(self) -> Any:
        from kafka import TopicPartition

        from sensorlib.kafka.clients import make_consumer

        consumer = make_consumer(self.settings, client_id="sensorlib-live-tail")
        topic = self.settings.topic_readings
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                          or ())]
        consumer.assign(parts)
        consumer.seek_to_end(*parts)
        for tp in parts:
            consumer.position(tp)  # resolve now: only what arrives from here on
        return consumer

    def update(self, timeout_ms: int = 500) -> int:
        """Poll what arrived since the last update into the chart; returns how many readings."""
        from sensorlib.replay.decode import decode_readings

        if self._consumer is None:
            self._consumer = self._open()
        values = [r.value for records in self._consumer.poll(timeout_ms=timeout_ms).values()
                  for r in records]
        self.updates += 1
        if not values:
            return 0
        decoded = decode_readings(values)
        valid = decoded[decoded["_reason"].isna()]
        self._send(valid)
        return len(valid)

    def start(self, every_ms: int = 2000, count: int | None = None) -> Any:
        """Update every ``every_ms`` in a live kernel (``count`` times, None: until
        :meth:`stop`); returns Panel's periodic callback."""
        import panel as pn

        self._callback = pn.state.add_periodic_callback(lambda: self.update(timeout_ms=100),
                                                        period=every_ms, count=count)
        return self._callback

    def stop(self) -> None:
        """Stop updating and close the consumer."""
        callback = getattr(self, "_callback", None)
        if callback is not None:
            callback.stop()
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
