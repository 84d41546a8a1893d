"""The ``sensor-rules`` topic (``Settings.topic_rules``): read the table, follow it, write a
layer. The table's logic (keys, validation, version) is :mod:`sensorlib.rules.table`.

Readers use a consumer without a group, assigned to every partition and read from the
beginning (a compacted topic is a table: every reader wants all of it), so no offsets are
ever committed for it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from kafka import TopicPartition

from sensorlib.config import Settings
from sensorlib.engine.detect import RuleConfig
from sensorlib.errors import KafkaUnavailable, SensorlibError
from sensorlib.kafka.clients import make_consumer, make_producer
from sensorlib.rules.table import RulesTable, edited, encode_value, parse_layer, validate_layer

__all__ = ["NoRulesTopic", "RulesFollower", "edit_layer", "read_rules", "write_layer"]


class NoRulesTopic(KafkaUnavailable):
    """The ``sensor-rules`` topic does not exist (``sensorlib topics`` creates it): Kafka
    answered, so the message says so rather than "not reachable"."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        SensorlibError.__init__(
            self, f"topic {topic} does not exist at {bootstrap_servers} — "
                  "`sensorlib topics` creates it (or set SENSORLIB_TOPIC_RULES)")


class RulesFollower:
    """Follows the ``sensor-rules`` table: :meth:`catch_up` reads it to its end (at start),
    :meth:`poll` applies what came since, without blocking. ``table`` is the current table.

    ``base``: the configuration the layers go over (to check them as they will apply).
    """

    def __init__(self, settings: Settings, base: RuleConfig | None = None) -> None:
        self.settings = settings
        self.base = base
        self.table = RulesTable()
        self._consumer = make_consumer(settings, client_id="sensorlib-rules-reader",
                                       isolation_level="read_committed",
                                       fetch_max_wait_ms=50)
        parts = self._consumer.partitions_for_topic(settings.topic_rules) or set()
        if not parts:
            self._consumer.close()
            raise NoRulesTopic(settings.bootstrap_servers, settings.topic_rules)
        self._partitions = [TopicPartition(settings.topic_rules, p) for p in sorted(parts)]
        self._consumer.assign(self._partitions)
        self._consumer.seek_to_beginning(*self._partitions)

    def poll(self, timeout_ms: int = 0) -> bool:
        """Apply the records that arrived; True when the table's content changed."""
        batch = self._consumer.poll(timeout_ms=timeout_ms, max_records=10_000)
        before = self.table.version
        for records in batch.values():
            for record in records:
                self.table = self.table.apply(record.key, record.value, record.offset,
                                              self.base)
        return bool(batch) and self.table.version != before

    def catch_up(self, timeout: float = 30.0) -> RulesTable:
        """Read the table up to the end it has now (raise KafkaUnavailable after ``timeout``)."""
        ends = self._consumer.end_offsets(self._partitions)
        deadline = time.monotonic() + timeout
        while any(self._consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise KafkaUnavailable(self.settings.bootstrap_servers,
                                       f"could not read {self.settings.topic_rules} to its end")
            self.poll(timeout_ms=200)
        return self.table

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()


def read_rules(settings: Settings, timeout: float = 30.0) -> RulesTable:
    """The ``sensor-rules`` table as it is now (read from the beginning to the end)."""
    follower = RulesFollower(settings)
    try:
        return follower.catch_up(timeout)
    finally:
        follower.close()


def write_layer(settings: Settings, key: str, values: Mapping[str, Any] | None,
                timeout: float = 15.0) -> int:
    """Write one layer of the table (``values`` None: a tombstone, the layer deleted), after
    checking it with the table's validator (InvalidSetting naming the field). Returns the
    record's offset: the table is applied once a reader's ``offset`` reaches it."""
    if values is None:
        parse_layer(key)
        value = None
    else:
        value = encode_value(validate_layer(key, values))
    producer = make_producer(settings, client_id="sensorlib-rules-writer", linger_ms=0)
    try:
        meta = producer.send(settings.topic_rules, key=key, value=value).get(timeout=timeout)
        return int(meta.offset)
    finally:
        producer.close(timeout=5)


def edit_layer(settings: Settings, key: str, values: Mapping[str, Any] | None = None,
               unset: tuple[str, ...] = ()) -> tuple[int, dict[str, Any] | None]:
    """Set ``values`` in one layer and remove the ``unset`` fields, keeping its other
    settings (read, merge, write; the last writer wins). Returns the record's offset and the
    layer's settings now (None: the layer was deleted, nothing being left)."""
    edited(RulesTable(), key, values, unset)  # bad input is refused before Kafka is asked
    merged = edited(read_rules(settings), key, values, unset)
    return write_layer(settings, key, merged), merged
