"""``sensorlib status`` shows true lag: 0 for the dashboard's alerts group once it read every
alert a processor published in transactions (the commit markers at the end of a partition
are not lag), and "never committed" rather than the whole topic for a group that never
committed (issue 25 item 5)."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta

import pytest

from sensorlib.config import Settings
from sensorlib.dashboard.feed import Feed
from sensorlib.kafka.admin import group_lag
from sensorlib.kafka.clients import make_producer
from sensorlib.model.events import Reading
from tests.support import eventually, read_alerts, running_processor

pytestmark = pytest.mark.kafka


def _hot_readings(settings: Settings, n: int) -> None:
    producer = make_producer(settings)
    start = datetime.now(UTC) - timedelta(minutes=2)
    for i in range(n):
        sid = f"sensor-0{i % 3 + 1}"
        reading = Reading(sensor_id=sid, temperature=45.0 + i % 7, humidity=50.0,
                          location="Lab", timestamp=start + timedelta(seconds=i))
        producer.send(settings.topic_readings, key=sid, value=reading.to_json())
    producer.flush()
    producer.close()


def test_alerts_group_lag_is_zero_after_the_feed_read_every_alert(topics: Settings) -> None:
    from sensorlib.cli import status as cli_status

    # Never committed: no number, and status says so.
    fresh = group_lag(topics, topics.dashboard_alerts_group, topics.topic_alerts)
    assert fresh and all(p["committed"] is None and p["lag"] is None for p in fresh.values())

    # The feed follows first, so the alerts and their commit markers arrive while it polls
    # (a back-fill reads to the end offsets, markers included, and would hide the bug).
    feed = Feed(topics, alerts_backfill=timedelta(hours=1)).start()
    try:
        assert feed.wait_backfilled(30)
        _hot_readings(topics, 60)
        with running_processor(topics):
            eventually(lambda: len(read_alerts(topics)) >= 3, timeout=60)
        published = len(read_alerts(topics))
        ends = group_lag(topics, topics.dashboard_alerts_group, topics.topic_alerts)
        # Transactions leave commit markers: the end offsets are beyond the last alert.
        assert sum(p["end"] for p in ends.values()) > published
        eventually(lambda: feed.state.counts().alerts_total >= published, timeout=30)

        def caught_up() -> dict | None:
            lag = group_lag(topics, topics.dashboard_alerts_group, topics.topic_alerts)
            touched = {p: v for p, v in lag.items() if v["end"] > 0}
            ok = touched and all(v["committed"] == v["end"] and v["lag"] == 0
                                 for v in touched.values())
            return lag if ok else None

        eventually(caught_up, timeout=30)
    finally:
        feed.stop()

    # What `sensorlib status` prints for the alerts group and a group never committed.
    lags = cli_status._group_lags(topics, [(topics.dashboard_alerts_group, topics.topic_alerts),
                                    ("never-used-group", topics.topic_alerts)])
    touched = {p: v for p, v in lags[(topics.dashboard_alerts_group, topics.topic_alerts)].items()
               if v["end"] > 0}
    assert all(v["lag"] == 0 for v in touched.values())
    assert all(v["lag"] is None for v in lags[("never-used-group", topics.topic_alerts)].values())
    doc = {"kafka": {"bootstrapServers": "x", "status": "up", "reachable": True},
           "services": [], "viewers": [], "archive": {"warehouse": "w", "tables": None},
           "consumerGroups": [{"group": "never-used-group", "topic": topics.topic_alerts,
                               "lag": None, "partitions": {"0": {"lag": None}}}]}
    out = io.StringIO()
    with redirect_stdout(out):
        cli_status._print_status(doc)
    assert "never committed" in out.getvalue()
