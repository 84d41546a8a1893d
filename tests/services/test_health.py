"""Honest health (issue 12): the conditions behind a 503, and the stuck-consumer exit."""

from __future__ import annotations

import time

import pytest

from sensorlib.config import Settings
from sensorlib.errors import RebalanceStuck
from sensorlib.kafka.admin import group_unowned_partitions
from sensorlib.kafka.clients import make_consumer
from sensorlib.processor.loop import HEALTH_GRACE, STALL_AFTER, Processor
from tests.support import eventually


def healthy_processor(settings: Settings) -> Processor:
    processor = Processor(settings)
    processor._healthy = True  # as after the first poll of a session
    processor.stats.session_started = time.time()
    return processor


def test_a_running_processor_with_nothing_wrong_has_no_problems(settings: Settings) -> None:
    assert healthy_processor(settings).problems() == []
    assert Processor(settings).problems() == [
        "the processing loop is not running (starting, or restarting after an error)"]


def test_a_recent_session_error_is_a_problem_for_the_grace_period(settings: Settings) -> None:
    p = healthy_processor(settings)
    p.stats.last_error, p.stats.last_error_at = "OverflowError: date value out of range", time.time()
    [problem] = p.problems()
    assert "ended in an error" in problem and "OverflowError" in problem
    assert p.problems(now=time.time() + HEALTH_GRACE + 1) == []


def test_owning_nothing_while_the_group_leaves_partitions_is_a_problem(settings: Settings) -> None:
    p = healthy_processor(settings)
    p.stats.unassigned_since, p.stats.unowned = time.time(), 3
    assert p.problems() == []  # a rebalance takes a moment
    [problem] = p.problems(now=time.time() + HEALTH_GRACE + 1)
    assert "owns no partition" in problem and "3 partition(s) unowned" in problem
    p.stats.unowned = 0  # more members than partitions: nothing to own is fine
    assert p.problems(now=time.time() + HEALTH_GRACE + 1) == []


def test_waiting_readings_without_a_commit_is_a_stall(settings: Settings) -> None:
    p = healthy_processor(settings)
    p.stats.lag = 120
    assert p.problems() == []
    [problem] = p.problems(now=time.time() + STALL_AFTER + 1)
    assert "no transaction committed" in problem and "120 reading(s) wait" in problem
    p.stats.lag = 0  # nothing to do is not a stall
    assert p.problems(now=time.time() + STALL_AFTER + 1) == []


@pytest.mark.kafka
def test_a_consumer_that_owns_nothing_while_partitions_are_unowned_is_replaced(topics: Settings) -> None:
    group = topics.processor_group
    assert group_unowned_partitions(topics, group, topics.topic_readings) == 0  # no group yet
    member = make_consumer(topics, topics.topic_readings, group_id=group)  # clients.subscribe
    eventually(lambda: member.poll(timeout_ms=200) is not None and member.assignment(), timeout=90)
    assert group_unowned_partitions(topics, group, topics.topic_readings) == 0
    member.close()
    assert group_unowned_partitions(topics, group, topics.topic_readings) == topics.partitions

    # A session whose consumer never got an assignment, past the grace period.
    p = healthy_processor(topics)
    idle = make_consumer(topics)  # owns nothing
    try:
        p._watch(idle)
        p.stats.unassigned_since = time.time() - HEALTH_GRACE - 1
        with pytest.raises(RebalanceStuck, match="starting a fresh consumer"):
            p._watch(idle)
        assert p.stats.unowned == topics.partitions
        assert any("owns no partition" in problem for problem in p.problems())
    finally:
        idle.close()
