"""A 3-broker KRaft cluster (replication factor 3, min.insync.replicas 2): one broker
killed during production with acks=all loses nothing acknowledged, and the processor
carries on publishing alerts."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.clients import make_admin
from tests.support import eventually

from .conftest import (
    Feeder,
    assert_acknowledged_stored_once,
    assert_alerts_as_offline,
    caught_up,
    is_probe,
    key_of,
    live_alerts,
    private_settings,
    spiked_stream,
    start_kafka,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _leaders(settings: Settings, topic: str) -> dict[int, tuple[int, list[int]]]:
    """``{partition: (leader, replicas)}`` of ``topic``."""
    admin = make_admin(settings)
    try:
        [described] = admin.describe_topics([topic])
    finally:
        admin.close()
    return {p["partition_index"]: (p["leader_id"], sorted(p["replica_nodes"]))
            for p in described["partitions"]}


def test_one_of_three_brokers_killed_during_production(base_settings: Settings, spawn,
                                                       tmp_path: Path) -> None:
    kafka = start_kafka(tmp_path / "cluster", base_settings, nodes=3)
    try:
        settings = private_settings(base_settings, kafka.bootstrap_servers, replication_factor=3)
        ensure_topics(settings)
        leaders = _leaders(settings, settings.topic_readings)
        assert all(replicas == [1, 2, 3] for _, replicas in leaders.values()), leaders
        assert "min.insync.replicas=2" in kafka.nodes[0].properties_file.read_text()

        processor = spawn("processor", settings)
        readings = spiked_stream(1500, datetime.now(UTC) - timedelta(hours=1), probe_every=40)
        feeder = Feeder(settings, readings, batch=50, pause=0.05)
        feeder.start()
        eventually(lambda: len(feeder.acked) >= len(readings) // 3, timeout=60)
        # Kill the broker leading most readings partitions: its leaderships must move.
        victim = Counter(leader for leader, _ in leaders.values()).most_common(1)[0][0]
        acked_before_kill = len(feeder.acked)
        kafka.kill_node(kafka.nodes[victim - 1], signal.SIGKILL)
        feeder.join(timeout=180)
        assert not feeder.is_alive() and feeder.crash is None, repr(feeder.crash)
        assert len(feeder.acked) == len(readings), f"not acknowledged: {feeder.errors[:3]}"
        stored = assert_acknowledged_stored_once(settings, feeder)
        moved = _leaders(settings, settings.topic_readings)
        assert victim not in {leader for leader, _ in moved.values()}, moved

        # The processor keeps going: the readings sent after the kill raise their alerts.
        after_kill = {key_of(r)[0] for r in feeder.acked[acked_before_kill:] if is_probe(r.sensor_id)}
        assert after_kill
        try:
            eventually(lambda: after_kill <= {a.sensor_id for a in live_alerts(settings)},
                       timeout=120)
            eventually(lambda: caught_up(settings), timeout=120)
        except AssertionError:
            health = httpx.get(processor.url + "/health", timeout=10).text
            raise AssertionError(f"the processor stalled after the kill: {health}\n"
                                 f"{processor.log_text()[-3000:]}") from None
        assert_alerts_as_offline(settings, stored)
        assert processor.process.poll() is None, processor.log_text()[-2000:]
    finally:
        kafka.stop()
