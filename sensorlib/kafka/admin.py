"""Topics and consumer groups: the design's topics created (idempotent, leaders awaited),
partitions and end offsets, whether Kafka answers, and each group's lag and unowned partitions."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

from kafka import TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
)

from sensorlib.config import Settings
from sensorlib.errors import KafkaUnavailable
from sensorlib.kafka.clients import make_admin, make_consumer


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The topics of the design with their partitions and retention (readings, alerts, dead
    letters and the simulator's fault labels), and the rule-settings table
    (``Settings.topic_rules``): one partition, compacted, kept forever (a layer lives until a
    tombstone deletes it)."""
    retention = str(settings.retention_hours * 3600 * 1000)
    rf = settings.replication_factor
    configs = {"retention.ms": retention, "cleanup.policy": "delete"}
    return [
        NewTopic(settings.topic_readings, settings.partitions, rf, topic_configs=dict(configs)),
        NewTopic(settings.topic_alerts, settings.partitions, rf, topic_configs=dict(configs)),
        NewTopic(settings.topic_dlq, settings.dlq_partitions, rf, topic_configs=dict(configs)),
        NewTopic(settings.topic_rules, 1, rf,
                 topic_configs={"cleanup.policy": "compact", "retention.ms": "-1"}),
        # A few labels an hour, keyed by sensor: one partition keeps them in order.
        NewTopic(settings.topic_faults, 1, rf, topic_configs=dict(configs)),
    ]


def ensure_topics(settings: Settings, timeout: float = 30.0) -> dict[str, str]:
    """Create the project's topics if missing; idempotent. Returns ``{topic: status}``.

    Status is ``"created"`` or ``"exists"``. An existing topic with fewer partitions
    than configured is reported as ``"exists (N partitions)"`` and left alone
    (shrinking is impossible and growing would move keys between partitions).
    """
    admin = make_admin(settings)
    try:
        specs = topic_specs(settings)
        existing = set(admin.list_topics())
        result: dict[str, str] = {}
        missing = [s for s in specs if s.name not in existing]
        for spec in missing:
            try:
                admin.create_topics([spec], timeout_ms=int(timeout * 1000))
                result[spec.name] = "created"
            except TopicAlreadyExistsError:
                result[spec.name] = "exists"
        counts = _wait_for_leaders(settings, [s.name for s in specs], timeout)
        for spec in specs:
            if spec.name in result:
                continue
            have = len(counts.get(spec.name, []))
            result[spec.name] = "exists" if have == spec.num_partitions else f"exists ({have} partitions)"
        return result
    finally:
        admin.close()


def _wait_for_leaders(settings: Settings, topics: list[str], timeout: float
                      ) -> dict[str, set[int]]:
    """Wait until every partition of ``topics`` has a leader (new topics take a moment);
    returns each topic's partitions."""
    deadline = time.monotonic() + timeout
    consumer = make_consumer(settings, client_id="sensorlib-topic-check")
    try:
        while time.monotonic() < deadline:
            found = {topic: consumer.partitions_for_topic(topic) for topic in topics}
            if all(found.values()):
                return {topic: set(parts) for topic, parts in found.items()}
            time.sleep(0.2)
            consumer._client.cluster.request_update()  # refresh metadata for new topics
    finally:
        consumer.close()
    raise KafkaUnavailable(settings.bootstrap_servers, f"topics {topics} have no leader yet")


def topic_partitions(settings: Settings, topics: Iterable[str]) -> dict[str, list[TopicPartition]]:
    """``{topic: [TopicPartition, …]}`` for each existing topic."""
    consumer = make_consumer(settings, client_id="sensorlib-metadata")
    try:
        out = {}
        for topic in topics:
            parts = consumer.partitions_for_topic(topic)
            if parts:
                out[topic] = [TopicPartition(topic, p) for p in sorted(parts)]
        return out
    finally:
        consumer.close()


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """``{partition: end offset}`` of ``topic`` right now."""
    consumer = make_consumer(settings, client_id="sensorlib-offsets")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def kafka_reachable(settings: Settings, timeout: float = 1.0) -> bool:
    """Cheap liveness probe: does any bootstrap server accept a TCP connection?"""
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return True
        except OSError:
            continue
    return False


def cluster_id(settings: Settings, timeout: float = 10.0) -> str | None:
    """The id of the Kafka cluster at ``settings.bootstrap_servers`` (None: the broker
    does not say, a broker older than Kafka 0.10.1).

    Raises:
        KafkaUnavailable: Kafka did not answer within ``timeout``.
    """
    try:
        admin = make_admin(settings, client_id="sensorlib-cluster-id",
                           request_timeout_ms=int(timeout * 1000))
    except KafkaError as exc:
        raise KafkaUnavailable(settings.bootstrap_servers, str(exc)) from exc
    try:
        return admin.describe_cluster().get("cluster_id")
    except KafkaError as exc:
        raise KafkaUnavailable(settings.bootstrap_servers, str(exc)) from exc
    finally:
        admin.close()


def wait_for_kafka(settings: Settings, timeout: float = 30.0) -> None:
    """Block until Kafka answers metadata requests, or raise :class:`KafkaUnavailable`."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if kafka_reachable(settings):
            try:
                admin = make_admin(settings, request_timeout_ms=5000)
                admin.close()
                return
            except (KafkaUnavailable, KafkaError) as exc:
                last = str(exc)
        time.sleep(0.3)
    raise KafkaUnavailable(settings.bootstrap_servers, last or f"no answer within {timeout:.0f}s")


def group_unowned_partitions(settings: Settings, group: str, topic: str) -> int:
    """How many of ``topic``'s partitions no member of ``group`` owns right now.

    0 when every partition is owned, or when there is nothing to judge by (the group is
    rebalancing, or its coordinator is not available yet).
    """
    admin = make_admin(settings, client_id="sensorlib-group-check")
    try:
        total = len(admin.describe_topics([topic])[0].get("partitions") or [])
        try:
            info = admin.describe_groups([group]).get(group) or {}
        except KafkaError:
            return 0
        if info.get("group_state") not in ("Stable", "Empty"):
            return 0
        owned: set[int] = set()
        for member in info.get("members") or []:
            for item in (member.get("member_assignment") or {}).get("assigned_partitions") or []:
                if item.get("topic") == topic:
                    owned.update(item.get("partitions") or [])
        return max(0, total - len(owned))
    finally:
        admin.close()


def group_lag(settings: Settings, group: str, topic: str) -> dict[int, dict[str, int | None]]:
    """Per-partition ``{committed, end, lag}`` of ``group`` on ``topic``.

    ``committed`` and ``lag`` are None for a partition the group never committed (its lag
    is unknown, not the whole partition). A consumer of a transactional topic must commit
    its *position* (which moves past the commit markers) for the lag to reach 0.
    """
    admin = make_admin(settings)
    consumer = make_consumer(settings, client_id="sensorlib-lag")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        ends = consumer.end_offsets(parts) if parts else {}
        try:
            committed = admin.list_group_offsets({group: parts}).get(group, {})
        except KafkaError:
            committed = {}
        out: dict[int, dict[str, int | None]] = {}
        for tp in parts:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else None
            end = ends.get(tp, 0)
            # Never committed: no lag to speak of (None), not the whole topic.
            out[tp.partition] = {"committed": done, "end": end,
                                 "lag": None if done is None else max(0, end - done)}
        return out
    finally:
        consumer.close()
        admin.close()
