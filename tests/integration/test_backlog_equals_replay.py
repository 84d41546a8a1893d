"""Live = offline over a backlog: the processor publishes exactly the alerts an offline
replay raises, rule by rule, id for id — whatever the size of its polls.

A day of the reference fleet (one reading per sensor every 2 s: 43,200 readings, with the
simulator's spikes, stuck and silent spells) is back-filled, then consumed as a backlog by a
real processor on a real broker (polls of 20,000 records spanning about 11 hours of event
time each). Before ticks ran on event time inside a poll, the processor saw a silence only
once per poll and published a fraction of the silent alerts a replay raises (issue 25).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from sensorlib.config import Settings
from sensorlib.engine.pipeline import Pipeline
from sensorlib.ingest.produce import ReadingProducer
from sensorlib.ingest.simulate import Simulator
from tests.support import eventually, read_alerts, running_processor

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.mark.parametrize("poll", [20_000, 777])
def test_a_backlog_publishes_the_replays_alerts_id_for_id(topics: Settings, poll: int) -> None:
    days = 1 if poll == 20_000 else 0.25  # small polls: six hours are enough
    start = (datetime.now(UTC) - timedelta(days=days, minutes=10)).replace(microsecond=0)
    sim = Simulator(seed=11, interval=2.0, start=start)
    readings = list(sim.stream(duration=days * 86_400))
    with ReadingProducer(topics) as out:
        for reading in readings:
            out.send(reading)

    offline = Pipeline(clock="event")
    expected = list(offline.replay(sorted(readings, key=lambda r: r.timestamp)))
    by_rule = Counter(a.rule for a in expected)
    assert by_rule["silent"] > 50 * days, by_rule  # the spells make real silences to find

    with running_processor(topics, max_records=poll) as processor:
        eventually(lambda: processor.stats.processed >= len(readings), timeout=600)
    published = read_alerts(topics)
    assert Counter(a.rule for a in published) == by_rule
    assert sorted(a.alert_id for a in published) == sorted(a.alert_id for a in expected)
    assert len({a.alert_id for a in published}) == len(published)  # exactly once
