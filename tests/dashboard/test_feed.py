"""The dashboard feed against the real broker: back-fill, hand-over, commits, bad records."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from sensorlib.config import Settings
from sensorlib.dashboard.feed import Feed
from sensorlib.dashboard.kafka_view import GroupLag, KafkaMonitor, shown_topics
from sensorlib.kafka.admin import group_lag
from sensorlib.kafka.clients import make_producer
from sensorlib.kafka.ruletable import write_layer
from sensorlib.model.events import Reading
from tests.support import eventually

pytestmark = pytest.mark.kafka


def publish(settings: Settings, n: int, start: int = 0) -> None:
    producer = make_producer(settings)
    now = datetime.now(UTC)
    for i in range(start, start + n):
        sid = f"sensor-0{i % 5 + 1}"
        reading = Reading(sensor_id=sid, temperature=20.0 + i * 0.01, humidity=50.0,
                          location="Lab", timestamp=now + timedelta(milliseconds=i))
        producer.send(settings.topic_readings, key=sid, value=reading.to_json())
    producer.flush()
    producer.close()


def test_backfill_then_live_without_gap_or_duplicate(topics: Settings) -> None:
    publish(topics, 40)
    bad = make_producer(topics)
    bad.send(topics.topic_readings, key="sensor-01", value=b"{not json")
    bad.flush()
    bad.close()
    feed = Feed(topics).start()
    try:
        assert feed.wait_backfilled(30)
        eventually(lambda: feed.state.counts().readings_total == 40)
        publish(topics, 25, start=40)
        eventually(lambda: feed.state.counts().readings_total == 65)
        time.sleep(1.0)
        counts = feed.state.counts()
        assert counts.readings_total == 65  # nothing read twice across the hand-over
        assert counts.invalid == 1 and counts.sensors == 5

        # Progress is committed under the dashboard's group, so its lag is visible.
        def caught_up() -> bool:
            lag = group_lag(topics, topics.dashboard_readings_group, topics.topic_readings)
            return all(p["committed"] == p["end"] for p in lag.values())

        eventually(caught_up)
    finally:
        feed.stop()


def _clean_poll(monitor: KafkaMonitor):
    def poll():
        snap = monitor.poll_once()
        return snap if snap.error is None else None
    return poll


def test_monitor_snapshot_and_message_browser(topics: Settings) -> None:
    publish(topics, 10)
    monitor = KafkaMonitor(topics)
    try:
        # A fresh broker answers "coordinator not available" to the first group lookups.
        snap = eventually(_clean_poll(monitor), timeout=30)
        assert snap.error is None and snap.brokers
        assert {t.name for t in snap.topics} == set(shown_topics(topics))  # rules, faults too
        readings = next(t for t in snap.topics if t.name == topics.topic_readings)
        assert readings.partitions == topics.partitions and readings.messages == 10
        roles = {g.role: g for g in snap.groups}
        assert roles["processor"].total_lag == 10  # never committed: everything is lag
        # Every group of the project, the archiver's on both of its topics (issue 24).
        assert {"archiver readings", "archiver alerts"} <= set(roles)
        assert roles["archiver alerts"].topic == topics.topic_alerts
        # A commit read after the end offsets is no negative lag.
        ahead = GroupLag(group="g", role="r", topic="t", state="Empty", members=0,
                         committed={0: 12}, end={0: 7})
        assert ahead.lag(0) == 0 and ahead.total_lag == 0
        records = monitor.latest_records(topics.topic_readings, sensor="SENSOR-02")
        assert len(records) == 2 and all(r.key == "sensor-02" for r in records)
        assert records[0].timestamp >= records[1].timestamp
        with pytest.raises(ValueError):
            monitor.latest_records("somebody-elses-topic")
        # The rules table is browsable too: a tombstone (a deleted layer) is an empty value.
        write_layer(topics, "sensor:<b>x</b>", {"outlier_z": 5})
        write_layer(topics, "sensor:<b>x</b>", None)
        table = monitor.latest_records(topics.topic_rules, max_age=0)
        assert [r.value for r in table] == ["", '{"outlier_z":5.0}'], table
        assert table[0].key == "sensor:<b>x</b>"  # plain data: the tab's cells are plaintext
    finally:
        monitor.stop()
