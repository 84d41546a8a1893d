"""Backtests: how good are the rules? Score their alerts against known, injected faults.

The simulator records every fault it injects (:class:`~sensorlib.ingest.simulate.FaultLabel`:
kind, sensor, start and end of event time). :func:`backtest` runs the rules offline over
the readings (:func:`sensorlib.engine.pipeline.run_frame_variants`: the columnar path, the
live processor's alerts) and scores each rule of each rule configuration against those
labels. Pure: no Kafka, no clock, the same table on every run.

An alert *detects* a fault when it is about the fault's sensor and raised (``detectedAt``,
event time) between the fault's start and its end plus ``tolerance`` (a silence is only
noticed ``silent_after`` into it; a spike's echo, when values come back, still counts);
when several faults of the sensor hold it, it is about a quick one (spike, stuck, silent)
rather than a drift, then the one that began last (a spike inside a drift explains its own
alerts). An alert that detects no fault is a *false alert*.

>>> from datetime import UTC, datetime
>>> readings, labels = simulated_history(days=0.25, seed=3, start=datetime(2026, 1, 1, tzinfo=UTC))
>>> table = backtest(readings, labels)
>>> list(table.columns[:4])
['variant', 'rule', 'fault', 'faults']
>>> table.query("rule == 'any' and fault == 'spike'")["recall"].item()
1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from sensorlib.config import Settings
from sensorlib.engine.detect import RuleConfig
from sensorlib.engine.pipeline import DEFAULT_TICK, run_frame_variants
from sensorlib.engine.windows import DEFAULT_WINDOW
from sensorlib.errors import UsageError
from sensorlib.ingest.simulate import (
    FAULT_KINDS,
    REFERENCE_FLEET,
    FaultLabel,
    FaultRates,
    SensorSpec,
    Simulator,
    labels_to_frame,
)
from sensorlib.model.events import Reading

__all__ = ["ANY", "BACKTEST_FAULTS", "COLUMNS", "backtest", "backtest_archive", "fault_figure",
           "render", "score", "scores_figure", "simulated_history"]

#: The ``rule`` (every rule together: the fleet's view) and ``fault`` (every kind) of the
#: pooled rows of :func:`backtest`'s table.
ANY = "any"

#: The faults of a backtest's simulated history at one reading every 10 s: the live
#: defaults (a probability per reading), but drifts about 5 times a week across the
#: reference fleet instead of one a fortnight per sensor, so that a week scores them.
BACKTEST_FAULTS = FaultRates(drift=2e-5)

#: The columns of :func:`backtest`'s table, in order.
COLUMNS = ("variant", "rule", "fault", "faults", "detected", "recall", "delay_median_s",
           "delay_p95_s", "alerts", "false_alerts", "precision", "false_per_sensor_day")

_DAY_US = 86_400 * 1_000_000


def simulated_history(days: float, *, seed: int | None = 0, interval: float = 10.0,
                      faults: FaultRates = BACKTEST_FAULTS,
                      fleet: Sequence[SensorSpec] = REFERENCE_FLEET,
                      start: datetime | None = None) -> tuple[pd.DataFrame, list[FaultLabel]]:
    """``days`` of a simulated fleet in memory: ``(readings frame, fault labels)``.

    The readings as :meth:`Simulator.frame` makes them (``run_frame``'s columns); the
    labels of the faults injected, with those planned past the end cut at it. ``start``
    defaults to ``days`` before now, rounded down to the minute.
    """
    if days <= 0:
        raise UsageError(f"days must be positive (got {days})")
    if start is None:
        now = pd.Timestamp.now(tz="UTC").floor("min")
        start = (now - pd.Timedelta(days=days)).to_pydatetime()
    sim = Simulator(fleet, seed=seed, faults=faults, interval=interval, start=start)
    readings = sim.frame(days * 86_400)
    end = sim.start + timedelta(seconds=days * 86_400)
    labels = [label if label.end <= end else replace(label, end=end)
              for label in sim.labels if label.start < end]
    return readings, labels


def _readings_frame(readings: pd.DataFrame | Iterable[Reading]) -> pd.DataFrame:
    if isinstance(readings, pd.DataFrame):
        return readings
    rows = [(r.sensor_id, r.temperature, r.humidity, r.location, r.timestamp) for r in readings]
    return pd.DataFrame(rows, columns=["sensorId", "temperature", "humidity", "location",
                                       "timestamp"])


def _labels_frame(labels: pd.DataFrame | Sequence[FaultLabel]) -> pd.DataFrame:
    frame = labels if isinstance(labels, pd.DataFrame) else labels_to_frame(list(labels))
    missing = {"kind", "sensorId", "start", "end"} - set(frame.columns)
    if missing:
        raise UsageError(f"the labels have no column(s) {sorted(missing)}")
    return frame


def _variants(rules: RuleConfig | Mapping[str, RuleConfig] | None) -> dict[str, RuleConfig]:
    if rules is None:
        return {"shipped": RuleConfig()}
    if isinstance(rules, RuleConfig):
        return {"rules": rules}
    variants = dict(rules)
    if not variants:
        raise UsageError("no rule configuration to backtest")
    return variants


def _us(values: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(values, utc=True)
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")).to_numpy(np.int64)


def backtest(readings: pd.DataFrame | Iterable[Reading],
             labels: pd.DataFrame | Sequence[FaultLabel] | None = None,
             rules: RuleConfig | Mapping[str, RuleConfig] | None = None, *,
             tolerance: timedelta = timedelta(minutes=1),
             window: timedelta = DEFAULT_WINDOW,
             tick_every: timedelta | None = DEFAULT_TICK,
             settings: Settings | None = None) -> pd.DataFrame:
    """Run the rules over ``readings`` offline and score them against the fault ``labels``.

    Args:
        readings: a readings frame (``sensorId``, ``temperature``, ``humidity``,
            ``timestamp``, optionally ``location``) or Readings (e.g. ``Simulator.stream``'s).
        labels: the faults injected: :class:`FaultLabel` objects (``Simulator.labels``)
            or a frame of them (:func:`~sensorlib.ingest.simulate.labels_to_frame`).
            None: the labels the archive holds for the readings' period (the ``faults``
            table: what the simulator published on ``sensor-faults``,
            :func:`sensorlib.history.faults.read_faults`; ``settings`` says where the
            archive is, default ``Settings.from_env()``).
        rules: a :class:`RuleConfig` (variant ``"rules"``), several by name (e.g.
            ``{"shipped": RuleConfig(), "tuned": …}``), or None: the shipped defaults
            (variant ``"shipped"``).
        tolerance: how long after a fault's end an alert still detects it.
        window, tick_every: as :func:`~sensorlib.engine.pipeline.run_frame`.

    Returns:
        A tidy frame (:data:`COLUMNS`), one row per variant, rule (each rule the
        variant runs, and :data:`ANY`: all of them together) and fault kind (each of
        :data:`~sensorlib.ingest.simulate.FAULT_KINDS`, and :data:`ANY`): ``faults`` of
        that kind, how many the rule ``detected``, ``recall``, the detection delay
        (``delay_median_s``, ``delay_p95_s``: seconds from the fault's start to the
        first alert that detects it; NaN when none did); and the rule's own ``alerts``,
        ``false_alerts``, ``precision`` (NaN without alerts) and ``false_per_sensor_day``
        (the same on each of the rule's rows).
    """
    frame = _readings_frame(readings)
    variants = _variants(rules)
    if frame.empty:
        raise UsageError("no readings to backtest")
    if labels is None:
        from sensorlib.history.faults import read_faults

        stamps = pd.to_datetime(frame["timestamp"], utc=True)
        labels = read_faults(settings, stamps.min(), stamps.max() + pd.Timedelta(1, "us"))
    labelled = _labels_frame(labels)
    runs = run_frame_variants(frame, list(variants.values()), window=window,
                              tick_every=tick_every)
    ts = _us(frame["timestamp"])
    days = max(float(ts.max() - ts.min()) / _DAY_US, 1e-9)
    sensors = int(frame["sensorId"].nunique())
    tables = [score(alerts, labelled, rules=sorted(config.rules), sensors=sensors, days=days,
                    tolerance=tolerance).assign(variant=name)
              for (name, config), alerts in zip(variants.items(), runs, strict=True)]
    return pd.concat(tables, ignore_index=True)[list(COLUMNS)]


def backtest_archive(start: object, end: object,
                     rules: RuleConfig | Mapping[str, RuleConfig] | None = None, *,
                     settings: Settings | None = None,
                     tolerance: timedelta = timedelta(minutes=1),
                     window: timedelta = DEFAULT_WINDOW,
                     tick_every: timedelta | None = DEFAULT_TICK) -> pd.DataFrame:
    """:func:`backtest` over archived history: the readings of ``[start, end)``
    (:func:`~sensorlib.replay.reader.read_readings`, the archive plus the Kafka tail) scored
    against the fault labels the archive holds for them (the ``faults`` table). ``start`` and
    ``end`` as ``read_readings`` takes them (``"2026-01-05"``, ``"-7d"``, a datetime).

    >>> backtest_archive("-7d", "now")   # doctest: +SKIP
    """
    from sensorlib.replay.reader import read_readings

    settings = Settings.from_env() if settings is None else settings
    readings = read_readings(start, end, settings=settings)
    return backtest(readings, None, rules, tolerance=tolerance, window=window,
                    tick_every=tick_every, settings=settings)


def _attribute(a_sensor: np.ndarray, a_at: np.ndarray, l_sensor: np.ndarray,
               l_kind: np.ndarray, l_start: np.ndarray, l_end: np.ndarray) -> np.ndarray:
    """The label each alert is about (index), or -1: among the faults of its sensor whose
    span (end plus tolerance) holds the alert, a quick one (spike, stuck, silent) before
    a slow drift, then the one that began last. A spike or a stuck spell in the middle of
    a drift explains the alerts it raises (and a silence those after a spike's); the drift
    only those left over."""
    owner = np.full(len(a_at), -1, dtype=np.int64)
    for sensor in np.unique(a_sensor):
        labels = np.flatnonzero(l_sensor == sensor)
        if not len(labels):
            continue
        # Preferred first: quick faults before drifts, then the latest start first.
        labels = labels[np.lexsort((-l_start[labels], l_kind[labels] == "drift"))]
        starts, ends = l_start[labels], l_end[labels]
        alerts = np.flatnonzero(a_sensor == sensor)
        for chunk in np.array_split(alerts, max(1, len(alerts) // 2048)):
            at = a_at[chunk][:, None]
            holds = (starts[None, :] <= at) & (at <= ends[None, :])
            best = np.argmax(holds, axis=1)  # the first (preferred) label that holds it
            owner[chunk] = np.where(holds.any(axis=1), labels[best], -1)
    return owner


def score(alerts: pd.DataFrame, labels: pd.DataFrame | Sequence[FaultLabel], *,
          rules: Sequence[str] | None = None, sensors: int, days: float,
          tolerance: timedelta = timedelta(minutes=1)) -> pd.DataFrame:
    """:func:`backtest`'s scores of one set of alerts (``sensorId``, ``rule``,
    ``detectedAt``) over ``sensors`` sensors and ``days`` days (no ``variant`` column).

    ``rules``: the rules to give rows to, alerts or not (default: those with alerts).
    """
    labelled = _labels_frame(labels)
    rule_names = sorted(set(alerts["rule"])) if rules is None else list(rules)
    tol = tolerance // timedelta(microseconds=1)
    l_sensor = labelled["sensorId"].astype(str).to_numpy()
    l_kind = labelled["kind"].astype(str).to_numpy()
    l_start, l_end = _us(labelled["start"]), _us(labelled["end"]) + tol
    a_sensor = alerts["sensorId"].astype(str).to_numpy()
    a_rule = alerts["rule"].astype(str).to_numpy()
    a_at = _us(alerts["detectedAt"])
    owner = _attribute(a_sensor, a_at, l_sensor, l_kind, l_start, l_end)
    true_alert = owner >= 0
    exposure = max(sensors, 1) * days
    rows = []
    for rule in [*rule_names, ANY]:
        chosen = np.ones(len(alerts), dtype=bool) if rule == ANY else a_rule == rule
        n_alerts = int(chosen.sum())
        n_false = int((chosen & ~true_alert).sum())
        # Per label: the first alert of this rule that it explains, if any.
        delay = np.full(len(labelled), np.nan)
        mine = chosen & true_alert
        if mine.any():
            lag = (a_at[mine] - l_start[owner[mine]]) / 1e6
            firsts = pd.Series(lag).groupby(owner[mine]).min()
            delay[firsts.index.to_numpy()] = firsts.to_numpy()
        for fault in [*FAULT_KINDS, ANY]:
            of_kind = np.ones(len(labelled), dtype=bool) if fault == ANY else l_kind == fault
            delays = delay[of_kind]
            found = delays[~np.isnan(delays)]
            n_faults = int(of_kind.sum())
            rows.append({
                "rule": rule, "fault": fault, "faults": n_faults, "detected": len(found),
                "recall": len(found) / n_faults if n_faults else np.nan,
                "delay_median_s": float(np.median(found)) if len(found) else np.nan,
                "delay_p95_s": float(np.percentile(found, 95)) if len(found) else np.nan,
                "alerts": n_alerts, "false_alerts": n_false,
                "precision": (n_alerts - n_false) / n_alerts if n_alerts else np.nan,
                "false_per_sensor_day": n_false / exposure,
            })
    return pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "variant"]).astype(
        {"faults": "int64", "detected": "int64", "alerts": "int64", "false_alerts": "int64"})


def _duration(seconds: float) -> str:
    if math.isnan(seconds):  # never detected
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render(table: pd.DataFrame) -> str:
    """:func:`backtest`'s table as text for a terminal: per variant, the detection of each
    fault kind by each rule (recall, delays), then each rule's alerts (precision, false
    alerts per sensor per day)."""
    out: list[str] = []
    for variant, rows in table.groupby("variant", sort=False):
        detection = rows[rows["fault"] != ANY].assign(
            recall=lambda f: ["–" if math.isnan(r) else f"{r:.0%}" for r in f["recall"]],
            median=lambda f: [_duration(x) for x in f["delay_median_s"]],
            p95=lambda f: [_duration(x) for x in f["delay_p95_s"]])
        wide = detection.pivot(index="rule", columns="fault", values="recall")
        delays = detection.pivot(index="rule", columns="fault", values="median")
        p95 = detection.pivot(index="rule", columns="fault", values="p95")
        kinds = [k for k in FAULT_KINDS if k in wide.columns]
        order = list(dict.fromkeys(rows["rule"]))
        found = detection.groupby("fault")["faults"].first()
        lines = pd.DataFrame(index=pd.Index(order, name="rule"))
        for kind in kinds:
            lines[f"{kind} ({found[kind]})"] = [
                f"{wide.loc[r, kind]} {delays.loc[r, kind]}/{p95.loc[r, kind]}"
                if wide.loc[r, kind] not in ("0%", "–") else wide.loc[r, kind]
                for r in order]
        own = rows[rows["fault"] == ANY].set_index("rule").loc[order]
        alerts = pd.DataFrame({
            "alerts": own["alerts"],
            "false": own["false_alerts"],
            "precision": ["–" if math.isnan(p) else f"{p:.1%}" for p in own["precision"]],
            "false/sensor/day": [f"{x:.2f}" for x in own["false_per_sensor_day"]],
        })
        out += [f"{variant}: faults detected (recall, delay median/p95 from the fault's start)",
                lines.to_string(), "",
                f"{variant}: alerts", alerts.to_string(), ""]
    return "\n".join(out).rstrip() + "\n"


# -- figures (Bokeh, like sensorlib.notebook.plots; shown after plots.load()) -------------

def _bars(rows: pd.DataFrame, value: str, category: str, variants: list[str], *, title: str,
          xlabel: str, fmt: str, log: bool = False, width: int = 350, height: int = 230
          ) -> object:
    from bokeh.models import ColumnDataSource, HoverTool, Range1d
    from bokeh.plotting import figure
    from bokeh.transform import dodge

    from sensorlib.notebook.plots import SENSOR_PALETTE

    categories = list(dict.fromkeys(rows[category]))
    values = rows[value].to_numpy(dtype="float64")
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if len(finite) else 1.0
    if log:
        low = max(float(finite[finite > 0].min()) / 2 if (finite > 0).any() else 1.0, 0.1)
        x_range = Range1d(low, max(top * 3, low * 10))
    else:
        x_range = Range1d(0, max(top * 1.15, 1e-9 if top == 0 else 0) or 1.0)
    fig = figure(y_range=categories[::-1], x_range=x_range, width=width, height=height,
                 title=title, x_axis_type="log" if log else "linear", toolbar_location=None,
                 x_axis_label=xlabel)
    band = 0.8 / max(len(variants), 1)
    for i, variant in enumerate(variants):
        mine = rows[rows["variant"] == variant].set_index(category).reindex(categories)
        shown = mine[value].to_numpy(dtype="float64")
        base = x_range.start if log else 0.0
        src = ColumnDataSource({
            "category": categories, "value": np.where(np.isfinite(shown), shown, base),
            "base": [base] * len(categories),
            "text": ["never" if not np.isfinite(v) else format(v, fmt) for v in shown],
            "variant": [variant] * len(categories)})
        offset = -0.4 + band * (i + 0.5)
        r = fig.hbar(y=dodge("category", -offset, range=fig.y_range), left="base",
                     right="value", height=band * 0.9, source=src,
                     color=SENSOR_PALETTE[i % len(SENSOR_PALETTE)], legend_label=variant)
        fig.add_tools(HoverTool(renderers=[r], tooltips=[("", "@variant"),
                                                         (category, "@category"),
                                                         (xlabel, "@text")]))
    legend = fig.legend[0]  # above the bars, in a row: it never hides one
    legend.orientation = "horizontal"
    legend.label_text_font_size = "8pt"
    legend.spacing = 8
    fig.add_layout(legend, "above")
    fig.ygrid.grid_line_color = None
    return fig


def scores_figure(table: pd.DataFrame, rule: str = ANY) -> object:
    """Three panels comparing the variants of :func:`backtest`'s table, for ``rule`` (by
    default all rules together): recall per fault kind, median detection delay per fault
    kind (log scale; "never" when none was detected), false alerts per sensor per day
    per rule. A :class:`sensorlib.notebook.plots.Figure` (display it after ``plots.load()``).
    """
    from bokeh.layouts import row

    from sensorlib.notebook.plots import Figure

    variants = list(dict.fromkeys(table["variant"]))
    by_kind = table[(table["rule"] == rule) & (table["fault"] != ANY)].assign(
        recall_pct=lambda f: f["recall"] * 100,
        delay_min=lambda f: f["delay_median_s"] / 60)
    per_rule = table[table["fault"] == ANY]
    who = "all rules" if rule == ANY else rule.replace("_", " ")
    return Figure(row(
        _bars(by_kind, "recall_pct", "fault", variants, title=f"Faults detected ({who})",
              xlabel="recall (%)", fmt=".0f"),
        _bars(by_kind, "delay_min", "fault", variants, log=True,
              title=f"Median delay to the first alert ({who})", xlabel="minutes", fmt=".1f"),
        _bars(per_rule, "false_per_sensor_day", "rule", variants,
              title="False alerts per sensor per day", xlabel="false alerts", fmt=".2f"),
    ), "backtest scores")


def fault_figure(readings: pd.DataFrame, label: FaultLabel, alerts: Mapping[str, pd.DataFrame],
                 *, margin: timedelta = timedelta(hours=1), width: int = 1080,
                 height: int = 300) -> object:
    """One fault up close: its sensor's temperature from ``margin`` before to ``margin``
    after it, the fault's span shaded, and each variant's alerts on that sensor marked, one
    row of triangles per variant above the line (``alerts``: variant -> alerts frame, e.g.
    :func:`~sensorlib.engine.pipeline.run_frame`'s)."""
    from bokeh.models import BoxAnnotation, ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    from sensorlib.notebook.plots import SENSOR_PALETTE, Figure, html_label

    lo = pd.Timestamp(label.start) - pd.Timedelta(margin)
    hi = pd.Timestamp(label.end) + pd.Timedelta(margin)
    ts = pd.to_datetime(readings["timestamp"], utc=True)
    mine = readings[(readings["sensorId"].astype(str) == label.sensor_id)
                    & (ts >= lo) & (ts <= hi)]
    what = f"{label.kind} of {label.sensor_id}"
    if label.kind == "drift":
        what += f" ({label.detail:+g} °C per hour)"
    fig = figure(width=width, height=height, x_axis_type="datetime", title=what,
                 y_axis_label="temperature (°C)", tools="xpan,xwheel_zoom,box_zoom,reset,save",
                 active_scroll=None, x_axis_label="event time (UTC)")
    naive = pd.DatetimeIndex(pd.to_datetime(mine["timestamp"], utc=True)).tz_localize(None)
    fig.line(naive, mine["temperature"].to_numpy(), color="#555555", line_width=1.2,
             legend_label="temperature")
    fig.add_layout(BoxAnnotation(left=pd.Timestamp(label.start).tz_localize(None),
                                 right=pd.Timestamp(label.end).tz_localize(None),
                                 fill_color="#f5a623", fill_alpha=0.15))
    top = float(mine["temperature"].max()) if len(mine) else 0.0
    step = max(1.0, (top - float(mine["temperature"].min())) / 12) if len(mine) else 1.0
    for i, (variant, frame) in enumerate(alerts.items()):
        at = pd.to_datetime(frame["detectedAt"], utc=True)
        hits = frame[(frame["sensorId"].astype(str) == label.sensor_id) & (at >= lo)
                     & (at <= hi)]
        if hits.empty:
            continue
        src = ColumnDataSource({
            "x": pd.DatetimeIndex(pd.to_datetime(hits["detectedAt"], utc=True)).tz_localize(None),
            "y": [top + step * (i + 1)] * len(hits),
            "reason": [html_label(str(r)) for r in hits["reason"]],
            "rule": [html_label(str(r)) for r in hits["rule"]]})
        r = fig.scatter("x", "y", source=src, size=9, marker="triangle",
                        color=SENSOR_PALETTE[i % len(SENSOR_PALETTE)],
                        legend_label=f"{variant}: alerts")
        fig.add_tools(HoverTool(renderers=[r], formatters={"@x": "datetime"},
                                tooltips=[("", "@rule"), ("", "@reason"),
                                          ("at", "@x{%Y-%m-%d %H:%M:%S} UTC")]))
    fig.legend.location = "top_left"
    fig.legend.click_policy = "hide"
    return Figure(fig, what)
