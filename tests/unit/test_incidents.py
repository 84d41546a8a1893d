"""Incidents, time in status, two periods compared, local days (sensorlib.notebook.incidents)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorlib.config import Settings
from sensorlib.errors import ConfigError
from sensorlib.notebook.analysis import (
    compare_periods,
    incident_ids,
    incidents,
    local_day,
    per_local_day,
    statuses,
    time_in_status,
)

T0 = pd.Timestamp("2026-03-28T00:00:00Z")


def alerts_frame(rows: list[tuple[str, str, int, str, float]]) -> pd.DataFrame:
    """(sensor, rule, second after T0, severity, temperature) -> an alerts frame."""
    return pd.DataFrame({
        "alertId": [f"id-{i:04d}" for i in range(len(rows))],
        "sensorId": [r[0] for r in rows], "location": "Hall",
        "temperature": [r[4] for r in rows], "humidity": 50.0,
        "timestamp": pd.to_datetime([T0 + pd.Timedelta(seconds=r[2]) for r in rows],
                                    utc=True).as_unit("us"),
        "rule": [r[1] for r in rows], "severity": [r[3] for r in rows],
        "reason": [f"reason {i}" for i in range(len(rows))],
    })


ALERT_ROWS = st.lists(st.tuples(st.sampled_from(["s1", "s2", "<b>s3</b>"]),
                                st.sampled_from(["threshold", "silent", "stuck"]),
                                st.integers(0, 6 * 3600),
                                st.sampled_from(["warning", "critical"]),
                                st.floats(-50, 150)), max_size=80)


@settings(max_examples=150, deadline=None)
@given(ALERT_ROWS, st.integers(1, 3600))
def test_every_alert_is_in_exactly_one_incident_and_incidents_never_overlap(rows, gap_s) -> None:
    alerts = alerts_frame(rows)
    gap = timedelta(seconds=gap_s)
    found = incidents(alerts, gap=gap)
    ids = incident_ids(alerts, gap=gap)
    assert ids.notna().all() and len(ids) == len(alerts)
    assert int(found["alerts"].sum()) == len(alerts)
    assert found["incidentId"].is_unique
    assert set(found["incidentId"]) == set(ids)
    by_id = found.set_index("incidentId")
    for (i, alert), incident in zip(alerts.iterrows(), ids, strict=True):
        row = by_id.loc[incident]
        assert (row["sensorId"], row["rule"]) == (alert["sensorId"], alert["rule"]), i
        assert row["start"] <= alert["timestamp"] <= row["end"]
        assert row["peak_temperature"] >= alert["temperature"]
        if alert["severity"] == "critical":
            assert row["severity"] == "critical"
    for _, group in found.groupby(["sensorId", "rule"]):
        group = group.sort_values("start")
        # Never overlapping, and separated by more than the gap (else they would be one).
        assert (group["start"].iloc[1:].to_numpy() - group["end"].iloc[:-1].to_numpy()
                > np.timedelta64(gap_s, "s")).all()
    # Within an incident no pause is longer than the gap.
    for incident, members in alerts.groupby(ids):
        pauses = members["timestamp"].sort_values().diff().dropna()
        assert (pauses <= pd.Timedelta(gap)).all(), incident


def test_a_flood_becomes_one_incident_with_its_peak_and_worst_severity() -> None:
    rows = [("s1", "threshold", 60 * i, "critical" if i == 30 else "warning", 30.0 + i / 10)
            for i in range(120)]
    rows += [("s1", "threshold", 60 * 200, "warning", 31.0)]  # 80 minutes later: a new one
    rows += [("s1", "silent", 60 * 5, "warning", 20.0)]  # another rule: its own
    found = incidents(alerts_frame(rows))  # the default gap: 10 minutes
    assert list(found["rule"]) == ["threshold", "silent", "threshold"]
    first = found.iloc[0]
    assert first["alerts"] == 120 and first["severity"] == "critical"
    assert first["start"] == T0 and first["end"] == T0 + pd.Timedelta(minutes=119)
    assert first["duration"] == pd.Timedelta(minutes=119)
    assert first["peak_temperature"] == pytest.approx(41.9)
    assert first["incidentId"] == "id-0000" and first["reason"] == "reason 0"
    assert found.iloc[2]["alerts"] == 1


def test_no_alerts_no_incidents() -> None:
    empty = alerts_frame([])
    found = incidents(empty)
    assert found.empty and "peak_temperature" in found and "start" in found


def readings_frame(sensor: str, seconds: list[int], temps: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"sensorId": sensor, "location": "Hall",
                         "temperature": temps, "humidity": 50.0,
                         "timestamp": [T0 + pd.Timedelta(seconds=s) for s in seconds]})


def test_time_in_status_holds_each_status_until_the_next_reading_and_long_gaps_are_silent() -> None:
    # 0-10 s normal, 10-20 s critical, 20-30 s warning, 30-130 s silent (a 100 s gap), then
    # normal to the end at 140 s.
    readings = readings_frame("s1", [0, 10, 20, 30, 130], [20.0, 40.0, 31.0, 20.0, 20.0])
    shares = time_in_status(readings, T0, T0 + pd.Timedelta(seconds=140)).set_index("sensorId")
    assert shares.loc["s1", "normal"] == pytest.approx(20 / 140)
    assert shares.loc["s1", "critical"] == pytest.approx(10 / 140)
    assert shares.loc["s1", "warning"] == pytest.approx(10 / 140)
    assert shares.loc["s1", "silent"] == pytest.approx(100 / 140)
    assert shares.loc["s1", "hours"] == pytest.approx(140 / 3600)


def test_time_in_status_counts_a_long_lead_in_and_tail_as_silent() -> None:
    readings = readings_frame("s1", [100, 110], [20.0, 20.0])
    shares = time_in_status(readings, T0, T0 + pd.Timedelta(seconds=200)).iloc[0]
    assert shares["silent"] == pytest.approx(190 / 200)  # 0-100 s before, 110-200 s after
    assert shares["normal"] == pytest.approx(10 / 200)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3600), st.floats(-20, 60), st.floats(0, 100)),
                min_size=1, max_size=60))
def test_time_in_status_shares_sum_to_one_and_match_the_dashboard_status(points) -> None:
    seconds = sorted({p[0] for p in points})
    temps = [points[0][1]] * len(seconds)
    hums = [points[0][2]] * len(seconds)
    readings = readings_frame("s1", seconds, temps).assign(humidity=hums)
    shares = time_in_status(readings, T0, T0 + pd.Timedelta(seconds=3601)).iloc[0]
    assert sum(shares[s] for s in ("normal", "warning", "critical", "silent")) == \
        pytest.approx(1.0)
    status = statuses(temps[:1], hums[:1])[0]
    if len(seconds) > 1 and max(np.diff(seconds)) <= 30 and seconds[0] <= 30 \
            and 3601 - seconds[-1] <= 30:
        assert shares[status] == pytest.approx(1.0)


def test_two_periods_side_by_side() -> None:
    now_r = readings_frame("s1", list(range(0, 600, 2)), [40.0] * 300)
    before_r = readings_frame("s1", list(range(0, 600, 2)), [20.0] * 300)
    now_a = alerts_frame([("s1", "threshold", 60 * i, "critical", 40.0) for i in range(10)])
    table = compare_periods((now_r, now_a), (before_r, alerts_frame([])),
                            labels=("this week", "last week"))
    assert list(table.columns) == ["sensorId", "measure", "this week", "last week", "change"]
    row = table.set_index("measure")
    assert row.loc["mean temperature", "change"] == pytest.approx(20.0)
    assert row.loc["alerts", "this week"] == 10 and row.loc["alerts", "last week"] == 0
    assert row.loc["incidents", "this week"] == 1 and row.loc["incidents: threshold", "change"] == 1
    assert row.loc["% critical", "this week"] == pytest.approx(100.0)
    assert row.loc["% normal", "last week"] == pytest.approx(100.0)


def test_local_days_follow_sensorlib_tz_and_daylight_saving() -> None:
    # Berlin switches to summer time on 2026-03-29: that local day has 23 hours.
    assert local_day("2026-03-29T12:00Z", "Europe/Berlin") == pd.Timestamp("2026-03-28T23:00Z")
    frame = pd.DataFrame({"sensorId": ["a", "a", "b"],
                          "start": pd.to_datetime(["2026-03-28T22:30Z", "2026-03-28T23:30Z",
                                                   "2026-03-29T21:59Z"], utc=True)})
    utc = per_local_day(frame, "UTC")
    berlin = per_local_day(frame, "Europe/Berlin")
    assert utc["a"].tolist() == [2, 0] and berlin["a"].tolist() == [1, 1]
    assert berlin.index.name == "day (Europe/Berlin)"
    assert [str(d) for d in berlin.index] == ["2026-03-28", "2026-03-29"]


@pytest.mark.parametrize("bad", ["Mars/Olympus", "+01:00", "../../etc/passwd", "CEST"])
def test_sensorlib_tz_must_be_an_iana_zone_and_the_error_names_it(bad: str) -> None:
    with pytest.raises(ConfigError, match="SENSORLIB_TZ"):
        Settings.from_env({"SENSORLIB_TZ": bad})


def test_sensorlib_tz_defaults_to_utc_and_reaches_subprocesses() -> None:
    assert Settings.from_env({}).tz == "UTC"
    berlin = Settings.from_env({"SENSORLIB_TZ": "Europe/Berlin"})
    assert berlin.tz == "Europe/Berlin"
    assert Settings.from_env(berlin.to_env()).tz == "Europe/Berlin"


def test_the_report_tables_show_sensor_ids_and_reasons_as_text() -> None:
    from sensorlib.notebook.report import (
        comparison_view,
        incidents_by_rule,
        incidents_view,
        time_in_status_view,
    )

    hostile = "<img src=x onerror=alert(1)>"
    alerts = alerts_frame([(hostile, "threshold", 60 * i, "critical", 40.0) for i in range(5)])
    alerts["reason"] = "<script>alert(2)</script>"
    found = incidents(alerts)
    readings = readings_frame(hostile, list(range(0, 600, 2)), [40.0] * 300)
    pages = [incidents_view(found, tz="Europe/Berlin").to_html(),
             time_in_status_view(time_in_status(readings)).to_html(),
             comparison_view(compare_periods((readings, alerts), (readings, alerts))).to_html(),
             incidents_by_rule(found).to_html()]
    for page in pages[:3]:
        assert "<img src=x" not in page and "&lt;img src=x" in page
    assert "<script>alert" not in pages[0] and "&lt;script&gt;" in pages[0]
    assert ">5<" in pages[2] and ">5.0<" not in pages[2]  # counts as integers
