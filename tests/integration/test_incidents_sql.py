"""The SQL view ``incidents`` over the archive's alerts equals ``analysis.incidents``.

The alerts are the live rules' over a simulated day of the fleet with faults (thousands of
alerts), appended to a real Iceberg table in a temporary warehouse; the view is read with
``history.sql`` (no Kafka: ``tail=False``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from sensorlib.config import Settings
from sensorlib.history import query as history
from sensorlib.ingest.simulate import FaultRates, Simulator
from sensorlib.notebook.analysis import incidents, replay_rules

START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pd.DataFrame]:
    sim = Simulator(seed=25, interval=10.0, start=START,
                    faults=FaultRates(spike=0.01, stuck=0.002, silent=0.002))
    rows = [{"sensorId": r.sensor_id, "location": r.location, "temperature": r.temperature,
             "humidity": r.humidity, "timestamp": r.timestamp}
            for r in sim.stream(duration=86_400)]
    readings = pd.DataFrame(rows)
    readings["timestamp"] = pd.to_datetime(readings["timestamp"], utc=True)
    alerts = replay_rules(readings)
    assert len(alerts) > 300, len(alerts)
    settings = Settings.from_env().replace(warehouse_dir=tmp_path_factory.mktemp("warehouse"))
    table = history.open_table(settings, history.ALERTS)
    data = {}
    for name, dtype, frame_name in history.ALERTS.columns:
        data[name] = (pa.Array.from_pandas(alerts[frame_name]).cast(dtype)
                      if frame_name in alerts else pa.nulls(len(alerts), dtype))
    table.append(pa.table(data, schema=history.ALERTS.arrow_schema))
    return settings, alerts


def test_the_incidents_view_equals_the_library_function(archived) -> None:
    settings, alerts = archived
    view = history.sql("select * from incidents", settings=settings, tail=False)
    expected = incidents(alerts)
    assert len(expected) < len(alerts)  # runs of alerts fold into incidents
    assert int(view["alerts"].sum()) == len(alerts)
    view = view.rename(columns={"incident_id": "incidentId", "sensor_id": "sensorId",
                                "start_time": "start", "end_time": "end"})
    key = ["incidentId"]
    got = view.sort_values(key).reset_index(drop=True)
    want = expected.sort_values(key).reset_index(drop=True)
    assert list(got["incidentId"]) == list(want["incidentId"])
    for column in ("sensorId", "location", "rule", "severity", "reason"):
        assert got[column].astype(str).tolist() == want[column].astype(str).tolist(), column
    for column in ("start", "end"):
        assert (pd.to_datetime(got[column], utc=True) == pd.to_datetime(want[column], utc=True)
                ).all(), column
    assert got["alerts"].astype(int).tolist() == want["alerts"].tolist()
    for column in ("peak_temperature", "peak_humidity"):
        pd.testing.assert_series_equal(got[column].astype(float), want[column].astype(float),
                                       check_names=False)
    seconds = pd.to_timedelta(got["duration"]).dt.total_seconds()
    assert seconds.tolist() == want["duration"].dt.total_seconds().tolist()


def test_the_view_groups_by_sql_as_an_analyst_would(archived) -> None:
    settings, alerts = archived
    per_rule = history.sql("select rule, count(*) as incidents, sum(alerts) as alerts "
                           "from incidents group by rule order by rule", settings=settings,
                           tail=False)
    assert per_rule["alerts"].sum() == len(alerts)
    assert (per_rule["incidents"] <= per_rule["alerts"]).all()


def test_no_alerts_archived_gives_an_empty_view(tmp_path: Path) -> None:
    settings = Settings.from_env().replace(warehouse_dir=tmp_path)
    view = history.sql("select * from incidents", settings=settings, tail=False)
    assert view.empty and "peak_temperature" in view
