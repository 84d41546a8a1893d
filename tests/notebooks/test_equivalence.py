"""Offline equals live: run_frame over a replayed frame raises what the live pipeline raises."""

from __future__ import annotations

import pandas as pd
import pytest
from kafka import TopicPartition

from sensorlib.engine.detect import RuleConfig
from sensorlib.engine.pipeline import Pipeline, aggregates_to_frame, alerts_to_frame, run_frame
from sensorlib.kafka.clients import make_consumer
from sensorlib.model.events import Reading, parse_reading
from sensorlib.replay.reader import compare_rules, read_readings, replay_rules

from .conftest import Seeded

pytestmark = pytest.mark.kafka


def consume_parsed(settings) -> list[Reading]:
    """Every reading on the topic through the live path: raw consumer + parse_reading."""
    consumer = make_consumer(settings, client_id="test-live-path")
    topic = settings.topic_readings
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    ends = consumer.end_offsets(parts)
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    out: list[Reading] = []
    while any(consumer.position(tp) < ends[tp] for tp in parts):
        for records in consumer.poll(timeout_ms=500).values():
            out.extend(parse_reading(r.value) for r in records)
    consumer.close()
    return out


def live_alerts(readings: list[Reading], rules: RuleConfig | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feed readings in event-time order to one Pipeline (process + ticks), like the processor."""
    ordered = sorted(readings, key=lambda r: r.timestamp)  # stable: ties keep arrival order
    pipeline = Pipeline(rules=rules or RuleConfig(), clock="event")
    alerts = list(pipeline.replay(ordered))
    return aggregates_to_frame(pipeline.aggregates()), alerts_to_frame(alerts)


def test_run_frame_over_replay_equals_live_pipeline(seeded: Seeded) -> None:
    frame = read_readings(settings=seeded.settings)
    offline_aggregates, offline_alerts = run_frame(frame)
    live_aggregates, live = live_alerts(consume_parsed(seeded.settings))
    assert not live.empty
    assert offline_alerts["alertId"].tolist() == live["alertId"].tolist()
    pd.testing.assert_frame_equal(offline_alerts.reset_index(drop=True),
                                  live.reset_index(drop=True))
    pd.testing.assert_frame_equal(offline_aggregates, live_aggregates)
    # ...and both equal what the rules raised on the readings before they were sent.
    assert sorted(offline_alerts["alertId"]) == sorted(a.alert_id for a in seeded.alerts)


def test_other_thresholds_offline(seeded: Seeded) -> None:
    frame = read_readings(settings=seeded.settings)
    lower = RuleConfig(temperature_threshold=33.0)
    _, live = live_alerts(consume_parsed(seeded.settings), lower)
    assert replay_rules(frame, lower)["alertId"].tolist() == live["alertId"].tolist()
    counts = compare_rules(frame, {"35": RuleConfig(), "33": lower, "30": RuleConfig(
        temperature_threshold=30.0)})
    assert list(counts.columns) == ["35", "33", "30"]
    threshold = counts.loc["threshold"]
    assert threshold["35"] <= threshold["33"] <= threshold["30"]
    assert counts.loc["total"].tolist() == counts.drop(index="total").sum().tolist()
