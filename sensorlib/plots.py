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
from typing import Any

import pandas as pd

from sensorlib import colours

__all__ = [
    "ALL",
    "FIELDS",
    "SENSOR_PALETTE",
    "SEVERITY_COLOURS",
    "Figure",
    "alert_counts",
    "alert_quantities",
    "bucket_label",
    "envelope",
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
        raise ValueError(f"points must be positive (got {points})")
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

    From the rule and its reason (see :mod:`sensorlib.detect`): a threshold alert is about
    the value(s) it names, a rate-of-change alert about temperature, an outlier about the
    value it names, a stuck sensor about both; a silent sensor is about neither (it has
    no new value), so it is counted but never marked on a value figure.
    """
    rule = alerts["rule"].astype("str")
    reason = alerts["reason"].astype("str").str.lower()
    stuck = rule.eq("stuck")
    temperature = ((rule.eq("threshold") & reason.str.contains("high temperature", regex=False))
                   | rule.eq("rate_of_change")
                   | (rule.eq("outlier") & reason.str.startswith("outlier: temperature"))
                   | stuck)
    humidity = ((rule.eq("threshold") & reason.str.contains("high humidity", regex=False))
                | (rule.eq("outlier") & reason.str.startswith("outlier: humidity"))
                | stuck)
    return pd.DataFrame({"temperature": temperature.to_numpy(), "humidity": humidity.to_numpy()},
                        index=alerts.index)


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
        from sensorlib.decode import empty_alerts

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
