"""Replay from a real broker: counts, filters, order, empty topics, concurrent writers, bad records."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from sensorlib.cli import build_parser
from sensorlib.config import Settings
from sensorlib.kafka.admin import end_offsets
from sensorlib.kafka.clients import make_producer
from sensorlib.model.events import Reading
from sensorlib.replay.export import ExportError
from sensorlib.replay.reader import (
    ALERT_DTYPES,
    READ_READING_DTYPES,
    ReplayError,
    read_alerts,
    read_readings,
    tail_readings,
)

from .conftest import Seeded, publish

pytestmark = pytest.mark.kafka


def dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {c: str(t) for c, t in frame.dtypes.items()}


def key(r: Reading) -> tuple[str, datetime]:
    return (r.sensor_id, r.timestamp)


def test_reads_everything_once_in_timestamp_order(seeded: Seeded) -> None:
    frame = read_readings(settings=seeded.settings)
    assert len(frame) == len(seeded.readings)
    assert dtypes(frame) == READ_READING_DTYPES
    assert frame["timestamp"].is_monotonic_increasing
    assert not frame.duplicated(["partition", "offset"]).any()
    assert frame.attrs["invalid"] == 0
    sent = sorted(key(r) for r in seeded.readings)
    got = sorted(zip(frame["sensorId"], frame["timestamp"].dt.to_pydatetime(), strict=True))
    assert got == sent
    one = seeded.readings[0]
    row = frame[(frame["sensorId"] == one.sensor_id) & (frame["timestamp"] == one.timestamp)]
    assert row[["temperature", "humidity", "location"]].iloc[0].tolist() == [
        one.temperature, one.humidity, one.location]


def test_start_end_and_sensor_filters(seeded: Seeded) -> None:
    times = sorted({r.timestamp for r in seeded.readings})
    start, end = times[len(times) // 4], times[3 * len(times) // 4]
    wanted = {"sensor-01", "sensor-03"}
    expected = sorted(key(r) for r in seeded.readings
                      if start <= r.timestamp < end and r.sensor_id in wanted)
    # The same period as a datetime, a naive ISO string (UTC) and a pandas Timestamp.
    naive = end.replace(tzinfo=None).isoformat()
    frame = read_readings(start, naive, sorted(wanted), settings=seeded.settings)
    got = sorted(zip(frame["sensorId"], frame["timestamp"].dt.to_pydatetime(), strict=True))
    assert got == expected
    assert frame["timestamp"].min() >= start and frame["timestamp"].max() < end
    just_end = read_readings(pd.Timestamp(end), None, "sensor-01", settings=seeded.settings)
    assert just_end["timestamp"].min() >= end  # start inclusive, end exclusive
    assert set(just_end["sensorId"]) == {"sensor-01"}


def test_alerts_round_trip(seeded: Seeded) -> None:
    alerts = read_alerts(settings=seeded.settings)
    assert dtypes(alerts) == ALERT_DTYPES
    assert sorted(alerts["alertId"]) == sorted(a.alert_id for a in seeded.alerts)
    assert alerts["timestamp"].is_monotonic_increasing
    threshold = alerts[alerts["rule"] == "threshold"]
    assert set(threshold["severity"]) <= {"warning", "critical"}


def test_empty_topic_gives_typed_empty_frames(topics: Settings) -> None:
    readings = read_readings(settings=topics)
    alerts = read_alerts("1h ago", "now", settings=topics)
    assert readings.empty and alerts.empty
    assert dtypes(readings) == READ_READING_DTYPES
    assert dtypes(alerts) == ALERT_DTYPES
    assert readings.attrs["invalid"] == 0


def test_missing_topic_and_empty_period_are_errors(topics: Settings) -> None:
    with pytest.raises(ReplayError, match="does not exist"):
        read_readings(settings=topics.replace(topic_readings="no-such-topic-here"))
    with pytest.raises(ReplayError, match="not after"):
        read_readings("2026-01-02", "2026-01-01", settings=topics)


def test_invalid_records_are_counted_not_raised(topics: Settings) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    good = [Reading(sensor_id=f"sensor-0{i % 5 + 1}", temperature=20.0 + i, humidity=50.0,
                    location="Hall", timestamp=t0 + timedelta(seconds=i)) for i in range(20)]
    producer = make_producer(topics, client_id="test-bad")
    too_wet = b'{"sensorId": "x", "temperature": 20, "humidity": 120, "timestamp": "2026-01-01T00:00:00Z"}'
    too_hot = b'{"sensorId": "x", "temperature": 999, "humidity": 1, "timestamp": "2026-01-01T00:00:00Z"}'
    bad = [b"\x00\x01garbage", too_wet, b"[]", b"", None, too_hot]
    pascal = (b"{\"SensorId\": \"dotnet\", \"Temperature\": 21.5, \"Humidity\": 40,"
              b" \"Location\": \"Lab\", \"Timestamp\": \"2026-01-01T00:00:30.1234567Z\"}")
    for i, r in enumerate(good):
        producer.send(topics.topic_readings, key=r.sensor_id, value=r.to_json())
        if i < len(bad):
            producer.send(topics.topic_readings, key="bad", value=bad[i])
    producer.send(topics.topic_readings, key="dotnet", value=pascal)
    producer.flush()
    producer.close()
    frame = read_readings(settings=topics, slack=None)
    assert frame.attrs["invalid"] == len(bad)
    assert len(frame) == len(good) + 1
    assert len(frame.attrs["invalid_examples"]) == 5
    dotnet = frame[frame["sensorId"] == "dotnet"].iloc[0]
    assert (dotnet["temperature"], dotnet["location"]) == (21.5, "Lab")
    assert dotnet["timestamp"] == pd.Timestamp("2026-01-01T00:00:30.123456Z")


def test_a_topic_being_written_is_read_promptly(seeded: Seeded) -> None:
    settings = seeded.settings
    before = sum(end_offsets(settings, settings.topic_readings).values())
    stop = threading.Event()

    def writer() -> None:
        producer = make_producer(settings, client_id="test-writer", linger_ms=1)
        t = datetime.now(UTC)
        i = 0
        while not stop.is_set():
            r = Reading(sensor_id="sensor-live", temperature=20.0, humidity=50.0,
                        location="Live", timestamp=t + timedelta(milliseconds=i))
            producer.send(settings.topic_readings, key=r.sensor_id, value=r.to_json())
            i += 1
            if i % 50 == 0:
                producer.flush()
        producer.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)  # the writer is busy before and during the read
        frame = read_readings(settings=settings, timeout=60)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert len(frame) >= before
    assert {r.sensor_id for r in seeded.readings} <= set(frame["sensorId"])
    assert frame.attrs["invalid"] == 0
    assert frame[["sensorId", "temperature", "humidity", "timestamp"]].notna().all().all()
    assert len(frame) <= sum(end_offsets(settings, settings.topic_readings).values())


def test_transactional_alerts_and_duplicates(topics: Settings, seeded_alert_bytes: list[bytes]
                                             ) -> None:
    """Commit markers do not stall the read; aborted alerts are not read; re-sends count once."""
    producer = make_producer(topics, client_id="test-tx", transactional_id=f"tx-{topics.topic_alerts}")
    producer.begin_transaction()
    for value in seeded_alert_bytes:
        producer.send(topics.topic_alerts, key="s", value=value)
    producer.commit_transaction()
    producer.begin_transaction()
    producer.send(topics.topic_alerts, key="s", value=seeded_alert_bytes[0].replace(b"a-0", b"aborted"))
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(topics.topic_alerts, key="s", value=seeded_alert_bytes[1])  # a re-publish
    producer.commit_transaction()
    producer.close()
    alerts = read_alerts(settings=topics, timeout=30)
    assert sorted(alerts["alertId"]) == sorted(f"a-{i}" for i in range(len(seeded_alert_bytes)))
    assert alerts.attrs["duplicates"] == 1


@pytest.fixture
def seeded_alert_bytes() -> list[bytes]:
    import json

    return [json.dumps({"alertId": f"a-{i}", "sensorId": "s", "location": "L",
                        "temperature": 40.0 + i, "humidity": 50.0,
                        "timestamp": f"2026-01-01T00:00:0{i}Z",
                        "detectedAt": f"2026-01-01T00:00:0{i}Z", "rule": "threshold",
                        "severity": "warning", "reason": "High temperature"}).encode()
            for i in range(5)]


def test_tail_shows_recent_history_and_new_records(seeded: Seeded) -> None:
    late = [Reading(sensor_id="sensor-new", temperature=25.0, humidity=50.0, location="X",
                    timestamp=datetime.now(UTC))]
    timer = threading.Timer(1.0, publish, args=(seeded.settings, late))
    timer.start()
    try:
        frame = tail_readings(seeded.settings, seconds=4.0, since="1h ago")
    finally:
        timer.join()
    assert len(frame) == len(seeded.readings) + 1
    assert set(frame["sensorId"]) == {r.sensor_id for r in seeded.readings} | {"sensor-new"}
    quiet = tail_readings(seeded.settings, seconds=0.5)  # nothing new arrives
    assert quiet.empty and list(quiet.columns) == list(frame.columns)


def test_cli_writes_parquet_and_csv(seeded: Seeded, tmp_path: Path) -> None:
    parser = build_parser()
    for name in ("out.parquet", "out.csv"):
        args = parser.parse_args(["replay", "--start", "1h ago", "--sensor", "sensor-02",
                                  "--out", str(tmp_path / name)])
        assert args.handler(args, seeded.settings) == 0
    parquet = pd.read_parquet(tmp_path / "out.parquet")
    expected = sum(r.sensor_id == "sensor-02" for r in seeded.readings)
    assert len(parquet) == expected
    assert dtypes(parquet)["timestamp"] == "datetime64[us, UTC]"
    assert len(pd.read_csv(tmp_path / "out.csv")) == expected
    again = parser.parse_args(["replay", "--start", "1h ago", "--out", str(tmp_path / "out.csv")])
    with pytest.raises(ExportError, match="already exists"):
        again.handler(again, seeded.settings)
    forced = parser.parse_args(["replay", "--start", "1h ago", "--force",
                                "--out", str(tmp_path / "out.csv")])
    assert forced.handler(forced, seeded.settings) == 0
    assert len(pd.read_csv(tmp_path / "out.csv")) == len(seeded.readings)


def test_the_old_argument_order_still_works_with_a_deprecation_warning(seeded: Seeded) -> None:
    with pytest.warns(DeprecationWarning, match="settings= as a keyword"):
        old = read_readings(seeded.settings, "1h ago", "now", ["sensor-01"])
    new = read_readings("1h ago", "now", ["sensor-01"], settings=seeded.settings)
    assert len(old) == len(new) > 0
    with pytest.raises(TypeError, match="positional"):
        read_readings("1h ago", "now", None, "extra")


def test_a_bare_duration_is_an_error_not_year_one(topics: Settings) -> None:
    with pytest.raises(ReplayError, match="'-1h' or '1h ago'"):
        read_readings("1h", settings=topics)
