"""A group member joins a just-created topic's group once, and owns it at once.

kafka-python's group leader assigns from its own metadata and rebalances again whenever the
metadata it learns later differs from what it assigned from. A member that joined before it
had the topic's metadata was assigned nothing (the processor then idled 30 s: a CI failure
of round 3); one that fetched the metadata before subscribing was always assigned twice (a
second rebalance: the state rebuilt twice). :func:`sensorlib.kafka.clients.subscribe` is
what the processor, the archiver and the notifier join with.
"""

from __future__ import annotations

import time

import pytest

from sensorlib.config import Settings
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.clients import RebalanceQueue, make_consumer, subscribe

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("attempt", range(6))
def test_a_member_of_a_new_group_is_assigned_once_at_once(settings: Settings, attempt: int) -> None:
    fresh = settings
    ensure_topics(fresh)  # created just now, as `sensorlib up` does before the processor
    consumer = make_consumer(fresh, group_id=fresh.processor_group, session_timeout_ms=10000,
                             heartbeat_interval_ms=2000)
    events = RebalanceQueue()
    try:
        subscribe(consumer, [fresh.topic_readings], listener=events)
        assignments, owned_at = [], None
        start = time.monotonic()
        while time.monotonic() - start < 6.0:  # long enough for a second rebalance to show
            consumer.poll(timeout_ms=200)
            assignments += [got for _, got in events.drain() if got]
            if owned_at is None and consumer.assignment():
                owned_at = time.monotonic() - start
        assert owned_at is not None, "never assigned: the leader joined without metadata"
        assert len(assignments) == 1, f"assigned {len(assignments)} times: {assignments}"
        assert len(assignments[0]) == fresh.partitions
    finally:
        consumer.close()
