"""The processor killed with SIGKILL at random points, many times, under a steady stream:
no reading skipped, no alert lost or published twice for read_committed readers."""

from __future__ import annotations

import random
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from sensorlib.config import Settings
from tests.support import eventually, owns_partitions, read_topic

from .conftest import (
    Feeder,
    assert_acknowledged_stored_once,
    assert_alerts_as_offline,
    caught_up,
    is_probe,
    live_alerts,
    spiked_stream,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KILLS = 6


def test_processor_sigkilled_six_times_at_random_points(spawn, topics: Settings) -> None:
    readings = spiked_stream(3000, datetime.now(UTC) - timedelta(hours=2), probe_every=50)
    # About half a minute of steady production, so most kills land mid-stream.
    feeder = Feeder(topics, readings, batch=300, pause=0.5)
    feeder.start()
    rng = random.Random(2026)
    kills, mid_batch = 0, 0
    while feeder.is_alive() or kills < KILLS:
        if rng.random() < 0.6:
            # Killed while processing: once it owns partitions (the group waits out the
            # previous victim's session first), at a random moment of the stream.
            proc = spawn("processor", topics)
            eventually(lambda url=proc.url: owns_partitions(url), timeout=60)
            time.sleep(rng.uniform(0.0, 1.5))
            mid_batch += 1
        else:
            # Killed anywhere in start-up: joining the group, rebuilding state, back-filling.
            proc = spawn("processor", topics, wait=False)
            time.sleep(rng.uniform(0.5, 5.0))
        proc.kill(signal.SIGKILL)
        kills += 1
    feeder.join(timeout=60)
    assert feeder.crash is None and not feeder.errors, feeder.errors[:3] or repr(feeder.crash)
    stored = assert_acknowledged_stored_once(topics, feeder)
    assert len(stored) == len(readings)

    final = spawn("processor", topics)
    eventually(lambda: caught_up(topics), timeout=120)
    assert_alerts_as_offline(topics, stored)
    probes = sorted(r.sensor_id for r in readings if is_probe(r.sensor_id))
    alerted = sorted(a.sensor_id for a in live_alerts(topics)
                     if is_probe(a.sensor_id) and a.rule == "threshold")
    assert alerted == probes, "each probe reading raises exactly one alert"
    assert read_topic(topics, topics.topic_dlq) == [], "no valid reading was dead-lettered"
    assert final.process.poll() is None
    assert kills >= KILLS and mid_batch >= 1
