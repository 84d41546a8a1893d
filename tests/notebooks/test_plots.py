"""Figures and tables without a broker: aggregation, gaps, alerts, colours, number formats."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from sensorlib.engine.detect import Detector
from sensorlib.engine.pipeline import alerts_to_frame
from sensorlib.engine.windows import SensorWindow
from sensorlib.model.events import Reading
from sensorlib.notebook import plots
from sensorlib.notebook.report import (
    alert_summary,
    alerts_by_rule,
    format_table,
    summary_table,
    summary_view,
    write_alerts,
)
from sensorlib.notebook.runner import prune_reports, write_index

T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def frame(rows: list[tuple[str, float, float, pd.Timestamp]]) -> pd.DataFrame:
    return pd.DataFrame({
        "sensorId": pd.Series([r[0] for r in rows], dtype="str"),
        "temperature": [r[1] for r in rows], "humidity": [r[2] for r in rows],
        "location": pd.Series(["Room"] * len(rows), dtype="str"),
        "timestamp": pd.Series([r[3] for r in rows], dtype="datetime64[us, UTC]")})


def steady(sensor: str, start: pd.Timestamp, seconds: int, every: int = 2,
           temperature: float = 21.0) -> list[tuple[str, float, float, pd.Timestamp]]:
    return [(sensor, temperature + (i % 3) * 0.1, 50.0, start + pd.Timedelta(seconds=i))
            for i in range(0, seconds, every)]


def test_buckets_are_round_and_never_finer_than_twice_the_reading_interval() -> None:
    week = plots.pick_bucket(T0, T0 + pd.Timedelta("7D"))
    assert week == pd.Timedelta("30min")
    assert (pd.Timedelta("7D") / week) <= 600
    assert plots.pick_bucket(T0, T0 + pd.Timedelta("5min"), interval=pd.Timedelta("2s")) \
        == pd.Timedelta("5s")
    with pytest.raises(ValueError, match="points"):
        plots.pick_bucket(T0, T0 + pd.Timedelta("1h"), points=0)


def test_envelope_keeps_spikes_and_leaves_gaps_empty() -> None:
    rows = steady("s1", T0, 600) + [("s1", 48.0, 50.0, T0 + pd.Timedelta(seconds=301))]
    rows += steady("s1", T0 + pd.Timedelta("15min"), 600)  # 5 minutes of silence between
    env = plots.envelope(frame(rows), "temperature", pd.Timedelta("1min"))
    assert env["max"].max() == 48.0  # one reading's spike survives the bucket
    quiet = env[(env["timestamp"] >= T0 + pd.Timedelta("10min"))
                & (env["timestamp"] < T0 + pd.Timedelta("15min"))]
    assert len(quiet) == 5
    assert (quiet["count"] == 0).all() and quiet["mean"].isna().all()  # a gap, not a line
    busy = env[env["count"] > 0]
    assert busy["mean"].notna().all() and len(busy) == 20


def test_every_sensor_gets_every_bucket() -> None:
    rows = steady("a", T0, 120) + steady("b", T0 + pd.Timedelta("1min"), 60)
    env = plots.envelope(frame(rows), "humidity", pd.Timedelta("30s"))
    assert env.groupby("sensorId").size().to_dict() == {"a": 4, "b": 4}
    assert env.loc[env["sensorId"] == "b", "count"].tolist() == [0, 0, 15, 15]


def detector_alerts() -> pd.DataFrame:
    """Alerts as the real rules word them: each rule, each quantity."""
    d = Detector()
    w = SensorWindow()
    t = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    def feed(sensor: str, temp: float, hum: float, seconds: float) -> None:
        r = Reading(sensor_id=sensor, temperature=temp, humidity=hum, location="x",
                    timestamp=t + timedelta(seconds=seconds))
        out.extend(d.observe(r, w))
        w.add(r)
    feed("hot", 36.0, 50.0, 0)        # threshold, temperature only
    feed("wet", 20.0, 95.0, 0)        # threshold, humidity only
    feed("both", 41.0, 96.0, 0)       # threshold, both (critical)
    feed("jump", 20.0, 50.0, 0)
    feed("jump", 30.0, 50.0, 10)      # rate of change: temperature
    for i in range(12):               # stuck: both
        feed("stuck", 22.0, 55.0, 100 + i)
    return alerts_to_frame(out)


def test_each_alert_is_about_the_quantity_its_reason_names() -> None:
    alerts = detector_alerts()
    about = plots.alert_quantities(alerts).set_axis(alerts["sensorId"] + "/" + alerts["rule"])
    assert about.loc["hot/threshold"].tolist() == [True, False]
    assert about.loc["wet/threshold"].tolist() == [False, True]
    assert about.loc["both/threshold"].tolist() == [True, True]
    assert about.loc["jump/rate_of_change"].tolist() == [True, False]
    assert about.loc["stuck/stuck"].tolist() == [True, True]
    silent = pd.DataFrame({"rule": ["silent"], "reason": ["Silent: no reading for 40s"]})
    assert plots.alert_quantities(silent).to_numpy().tolist() == [[False, False]]
    outliers = pd.DataFrame({"rule": ["outlier", "outlier"], "reason": [
        "Outlier: temperature 30.0°C is 5.0σ from window mean 20.0°C",
        "Outlier: humidity 80.0% is 5.0σ from window mean 50.0%"]})
    assert plots.alert_quantities(outliers).to_numpy().tolist() == [[True, False], [False, True]]


def test_top_alerts_put_critical_first_and_humidity_alerts_on_humidity() -> None:
    alerts = detector_alerts()
    top = plots.top_alerts(alerts, "humidity", top=2)
    assert len(top) == 2
    assert "both" in set(top["sensorId"])  # the critical one is always kept
    assert not (set(top["sensorId"]) & {"hot", "jump"})  # temperature-only alerts never


def test_severity_colours_are_fixed_and_no_sensor_line_uses_them() -> None:
    from sensorlib.notebook.colours import STATUS_COLOURS  # one table: dashboard, report, figures

    assert plots.SEVERITY_COLOURS == {"critical": STATUS_COLOURS["critical"],
                                      "warning": STATUS_COLOURS["warning"]}
    assert not set(plots.SEVERITY_COLOURS.values()) & set(plots.SENSOR_PALETTE)
    colours = plots.sensor_colours([f"s{i}" for i in range(25)])
    assert not set(colours.values()) & set(plots.SEVERITY_COLOURS.values())
    assert plots.sensor_colours(["b", "a"]) == plots.sensor_colours(["a", "b"])


def test_a_weeks_figure_stays_small(tmp_path) -> None:
    rng = np.random.default_rng(1)
    n = 300_000  # five sensors, a week at 10 s
    start = T0
    ts = start + pd.to_timedelta(np.arange(n) // 5 * 10, unit="s")
    readings = pd.DataFrame({
        "sensorId": pd.Series([f"sensor-0{i % 5 + 1}" for i in range(n)], dtype="str"),
        "temperature": 20 + rng.normal(0, 1, n), "humidity": 50 + rng.normal(0, 3, n),
        "location": pd.Series(["x"] * n, dtype="str"),
        "timestamp": pd.Series(ts, dtype="datetime64[us, UTC]")})
    fig = plots.readings_figure(readings, detector_alerts().iloc[:0])
    html = fig._repr_html_()
    assert len(html) < 600_000, len(html)  # the figure's data, without BokehJS
    out = tmp_path / "fig.html"
    fig.save(out)
    assert out.stat().st_size < 2_500_000


def test_tables_round_to_one_decimal_with_thousands_separators() -> None:
    readings = frame([("sensor-01", 21.23456, 55.55555, T0 + pd.Timedelta(seconds=i))
                      for i in range(1234)])
    alerts = detector_alerts()
    summary = summary_table(readings, alerts)
    html = summary_view(summary).to_html()
    assert "1,234" in html and "21.2" in html and "55.6" in html
    assert "21.23" not in html and "55.55" not in html
    assert re.search(r">2026-01-01 00:20<", html)  # compact time: minutes, no microseconds
    table = format_table(pd.DataFrame({"x": [1234567.891], "n": [1234567]}), decimals=2).to_html()
    assert "1,234,567.89" in table and "1,234,567<" in table


def test_the_summary_shows_the_worst_status_of_the_period_not_the_latest() -> None:
    rows = [("s1", 36.5, 50.0, T0), ("s1", 21.0, 50.0, T0 + pd.Timedelta("1min")),
            ("s2", 20.0, 85.0, T0), ("s2", 20.0, 50.0, T0 + pd.Timedelta("1min")),
            ("s3", 20.0, 50.0, T0)]
    summary = summary_table(frame(rows), detector_alerts().iloc[:0])
    assert summary["worst_status"].to_dict() == {"s1": "critical", "s2": "warning",
                                                 "s3": "normal"}


def test_alerts_are_summarised_by_sensor_rule_and_hour() -> None:
    base = detector_alerts()
    many = pd.concat([base.assign(timestamp=base["timestamp"] + pd.Timedelta(minutes=m),
                                  alertId=base["alertId"] + str(m)) for m in range(90)])
    top = alert_summary(many, top=5)
    assert len(top) == 5
    assert top.iloc[0]["critical"] > 0  # critical groups first
    assert (top["alerts"] == top["critical"] + top["warning"]).all()
    pivot = alerts_by_rule(many)
    assert pivot.loc["all sensors", "total"] == len(many)


def test_the_full_alert_list_is_written_and_csv_formulas_are_neutralised(tmp_path) -> None:
    alerts = detector_alerts()
    alerts.loc[0, "sensorId"] = "=HYPERLINK(\"http://evil.example\")"
    alerts.loc[1, "reason"] = "@SUM(A1)"
    parquet, csv = write_alerts(alerts, tmp_path / "r_alerts")
    assert pd.read_parquet(parquet)["sensorId"].iloc[0].startswith("=HYPERLINK")
    text = csv.read_text(encoding="utf-8")
    assert "'=HYPERLINK" in text and "'@SUM" in text
    assert not re.search(r"(^|,)[=@]", text, re.MULTILINE)


def test_index_lists_reports_and_keep_prunes_the_oldest(tmp_path) -> None:
    days = ["20260101", "20260102", "20260103"]
    for i, day in enumerate(days):
        name = f"report_{day}T000000Z_{day}T235959Z"
        for suffix in (".ipynb", ".html", "_alerts.csv", "_alerts.parquet"):
            (tmp_path / f"{name}{suffix}").write_text(str(i))
    (tmp_path / "notes.txt").write_text("mine")
    index = write_index(tmp_path).read_text()
    assert index.index("20260103") < index.index("20260101")  # newest first
    assert "2026-01-02 00:00" in index and "alerts CSV" in index
    removed = prune_reports(tmp_path, keep=2)
    assert len(removed) == 4 and all("20260101" in p.name for p in removed)
    assert (tmp_path / "notes.txt").exists()
    assert "20260101" not in write_index(tmp_path).read_text()
    with pytest.raises(Exception, match="at least 1"):
        prune_reports(tmp_path, keep=0)
