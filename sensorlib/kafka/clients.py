"""Kafka I/O: the one place that builds kafka-python clients and sets up topics.

Everything else asks this module for a producer, a consumer or an admin client built
from :class:`~sensorlib.config.Settings`, so security settings, client ids and
serialisation are decided once. Keys are sensor ids (UTF-8); values are raw bytes
(the JSON wire format lives in :mod:`sensorlib.model.events`).
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Self

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
)

from sensorlib.config import Settings
from sensorlib.errors import KafkaSetupFailed, KafkaUnavailable

__all__ = [
    "ClientErrors",
    "TopicReader",
    "client_config",
    "client_errors",
    "decode_key",
    "encode_key",
    "end_offsets",
    "ensure_topics",
    "group_lag",
    "group_unowned_partitions",
    "kafka_reachable",
    "make_admin",
    "make_consumer",
    "make_producer",
    "map_kafka_errors",
    "topic_partitions",
    "wait_for_kafka",
]


def encode_key(key: str | None) -> bytes | None:
    return None if key is None else key.encode("utf-8")


def decode_key(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", errors="replace")


class ClientErrors(logging.Handler):
    """Remembers the last connection-setup failure kafka-python logged (SASL, SSL, auth).

    kafka-python retries a failed SASL handshake or TLS setup inside its IO loop and only
    raises a generic bootstrap timeout; this keeps the cause so ``/health`` and error
    messages can say it. Configured secrets are blanked out of what is kept.
    """

    _CAUSE = re.compile(r"sasl|ssl|tls|authenticat|authoriz|certificate|handshake",
                        re.IGNORECASE)
    _NOISE = re.compile(r"^<[^>]*>:\s*|\s*\(backoff [^)]*\)$")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._last: tuple[float, str] | None = None
        self._secrets: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a logging handler must never raise
            return
        if self._CAUSE.search(message):
            self._last = (time.time(), self.redact(self._NOISE.sub("", message)))

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def keep_secret(self, secret: str | None) -> None:
        """Register a secret that must never appear in a kept message."""
        if secret:
            self._secrets.add(secret)

    def last(self, within: float = 120.0) -> str | None:
        """The last connection-setup failure of the past ``within`` seconds, if any."""
        if self._last is None or time.time() - self._last[0] > within:
            return None
        return self._last[1]

    def clear(self) -> None:
        """Forget the last failure (a new session starts clean)."""
        self._last = None


#: The process-wide :class:`ClientErrors`, attached to kafka-python's logger.
client_errors = ClientErrors()
logging.getLogger("kafka").addHandler(client_errors)


def client_config(settings: Settings, client_id: str = "sensorlib") -> dict[str, Any]:
    """Connection and security options shared by every client."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": client_id,
        "security_protocol": settings.security_protocol,
        # kafka-python backs off reconnects up to 30 s (the Java client: 1 s), so after a
        # broker restart a client could sit idle for half a minute before noticing.
        "reconnect_backoff_max_ms": 1000,
    }
    if settings.sasl_mechanism:
        client_errors.keep_secret(settings.sasl_password)
        cfg["sasl_mechanism"] = settings.sasl_mechanism
        cfg["sasl_plain_username"] = settings.sasl_username
        cfg["sasl_plain_password"] = settings.sasl_password
    if settings.ssl_cafile:
        cfg["ssl_cafile"] = settings.ssl_cafile
    return cfg


def _connect(factory: Any, settings: Settings, *args: Any, **cfg: Any) -> Any:
    try:
        return factory(*args, **cfg)
    except (KafkaTimeoutError, KafkaConnectionError) as exc:
        cause = client_errors.last(within=60.0)
        if cause:  # reachable, but the connection set-up failed: say why
            raise KafkaSetupFailed(settings.bootstrap_servers, cause) from None
        raise KafkaUnavailable(settings.bootstrap_servers, str(exc)) from None


def make_producer(
    settings: Settings,
    *,
    client_id: str = "sensorlib-producer",
    transactional_id: str | None = None,
    **overrides: Any,
) -> KafkaProducer:
    """A durable producer: acks=all, idempotent, keys as UTF-8, values as bytes.

    Pass ``transactional_id`` for a transactional producer (``init_transactions`` is
    called here). Extra keyword arguments override kafka-python options.
    """
    cfg = client_config(settings, client_id)
    cfg.update(
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        batch_size=64 * 1024,
        key_serializer=encode_key,
        allow_auto_create_topics=False,
    )
    if transactional_id:
        cfg["transactional_id"] = transactional_id
    cfg.update(overrides)
    producer = _connect(KafkaProducer, settings, **cfg)
    if transactional_id:
        producer.init_transactions()
    return producer


def make_consumer(
    settings: Settings,
    *topics: str,
    group_id: str | None = None,
    client_id: str = "sensorlib-consumer",
    **overrides: Any,
) -> KafkaConsumer:
    """A consumer of raw bytes with UTF-8 keys, subscribed to ``topics`` if given.

    Without ``group_id`` nothing is committed (use ``assign`` + ``seek`` for replay).
    Auto-commit is off: callers commit what they have really processed.
    """
    cfg = client_config(settings, client_id)
    cfg.update(
        group_id=group_id,
        key_deserializer=decode_key,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
    )
    cfg.update(overrides)
    return _connect(KafkaConsumer, settings, *topics, **cfg)


def make_admin(settings: Settings, client_id: str = "sensorlib-admin", **overrides: Any) -> KafkaAdminClient:
    """An admin client (topics, groups, offsets)."""
    cfg = client_config(settings, client_id)
    cfg.update(request_timeout_ms=15000)
    cfg.update(overrides)
    return _connect(KafkaAdminClient, settings, **cfg)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The three topics of the design with their partitions and retention."""
    retention = str(settings.retention_hours * 3600 * 1000)
    rf = settings.replication_factor
    configs = {"retention.ms": retention, "cleanup.policy": "delete"}
    return [
        NewTopic(settings.topic_readings, settings.partitions, rf, topic_configs=dict(configs)),
        NewTopic(settings.topic_alerts, settings.partitions, rf, topic_configs=dict(configs)),
        NewTopic(settings.topic_dlq, settings.dlq_partitions, rf, topic_configs=dict(configs)),
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


# -- reading a topic without a group -----------------------------------------------------


@contextmanager
def map_kafka_errors(settings: Settings) -> Iterator[None]:
    """Turn kafka-python's errors into :class:`KafkaUnavailable` naming the servers
    (and, when the connection set-up failed, why: :class:`KafkaSetupFailed`)."""
    try:
        yield
    except KafkaError as exc:
        cause = client_errors.last(within=60.0)
        if cause:
            raise KafkaSetupFailed(settings.bootstrap_servers, cause) from exc
        raise KafkaUnavailable(settings.bootstrap_servers, f"{type(exc).__name__}: {exc}") from exc


class TopicReader:
    """Reads part of a topic with assign + seek (no consumer group), bounded in offsets and time.

    Where to start, per partition: ``since_ms`` (the first record at or after that record
    time), ``offsets`` (partition -> offset; partitions not named start at their beginning),
    ``last`` (the last N records of each partition), or the beginning. Where to stop: the
    end offsets taken when the read starts (``until`` overrides them per partition), so a
    busy topic never makes a read endless — or, with ``follow`` seconds, whatever arrives
    until then (a tail). One rule bounds a stalled read: no record for ``idle_timeout``
    seconds while records are still expected raises :class:`KafkaUnavailable`, and so does
    any Kafka error (:func:`map_kafka_errors`).

    Use as a context manager; iterate for ``(partition, records)`` batches, each trimmed to
    the stop offset. ``total`` is the number of offsets to read (for progress bars)::

        with TopicReader(settings, "sensor-readings", last=100) as reader:
            for partition, records in reader:
                ...
    """

    def __init__(self, settings: Settings, topic: str, *, since_ms: int | None = None,
                 offsets: dict[int, int] | None = None, last: int | None = None,
                 until: dict[int, int] | None = None, partitions: Iterable[int] | None = None,
                 follow: float | None = None, idle_timeout: float = 30.0,
                 client_id: str = "sensorlib-reader", **consumer_options: Any) -> None:
        self.settings = settings
        self.topic = topic
        self._since_ms, self._offsets, self._last, self._until = since_ms, offsets, last, until
        self._partitions = None if partitions is None else sorted(partitions)
        self._follow = follow
        self._idle_timeout = idle_timeout
        self._client_id = client_id
        self._options = {"isolation_level": "read_committed", **consumer_options}
        self._consumer: KafkaConsumer | None = None
        self.begin: dict[int, int] = {}
        self.end: dict[int, int] = {}
        self.exists = True

    @property
    def total(self) -> int:
        """Offsets between start and stop, over all partitions (what follows not counted)."""
        return sum(max(0, self.end[p] - self.begin[p]) for p in self.end)

    def __enter__(self) -> Self:
        with map_kafka_errors(self.settings):
            consumer = self._consumer = make_consumer(self.settings, client_id=self._client_id,
                                                      **self._options)
            numbers = consumer.partitions_for_topic(self.topic)
            if not numbers:
                self.exists = False
                return self
            wanted = self._partitions if self._partitions is not None else sorted(numbers)
            parts = [TopicPartition(self.topic, p) for p in wanted if p in numbers]
            ends = consumer.end_offsets(parts)
            firsts = consumer.beginning_offsets(parts)
            begin = {tp: firsts[tp] for tp in parts}
            if self._offsets is not None:
                begin = {tp: self._offsets.get(tp.partition, firsts[tp]) for tp in parts}
            elif self._last is not None:
                begin = {tp: ends[tp] - self._last for tp in parts}
            elif self._since_ms is not None:
                found = consumer.offsets_for_times({tp: max(0, self._since_ms) for tp in parts})
                begin = {tp: ends[tp] if found.get(tp) is None else found[tp].offset
                         for tp in parts}
            until = self._until or {}
            for tp in parts:
                stop = ends[tp] if tp.partition not in until else min(ends[tp], until[tp.partition])
                self.begin[tp.partition] = min(max(begin[tp], firsts[tp]), stop)
                self.end[tp.partition] = stop
            consumer.assign(parts)
            for tp in parts:
                consumer.seek(tp, self.begin[tp.partition])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __iter__(self) -> Iterator[tuple[int, list[Any]]]:
        consumer = self._consumer
        if consumer is None or not self.exists:
            return
        started = time.monotonic()
        yield from self._bounded(consumer)
        if self._follow is not None:
            consumer.resume(*consumer.assignment())
            yield from self._tail(consumer, started + self._follow)

    def _bounded(self, consumer: KafkaConsumer) -> Iterator[tuple[int, list[Any]]]:
        remaining = {TopicPartition(self.topic, p): stop for p, stop in self.end.items()
                     if self.begin[p] < stop}
        for tp in set(consumer.assignment()) - set(remaining):
            consumer.pause(tp)
        last_progress = time.monotonic()
        with map_kafka_errors(self.settings):
            while remaining:
                got = 0
                for tp, records in consumer.poll(timeout_ms=500).items():
                    stop = remaining.get(tp)
                    if stop is None or not records:
                        continue
                    if records[-1].offset >= stop:
                        records = [r for r in records if r.offset < stop]
                    if records:
                        got += len(records)
                        yield tp.partition, records
                for tp in list(remaining):
                    # The position, not the last record: transaction markers take offsets.
                    if consumer.position(tp) >= remaining[tp]:
                        del remaining[tp]
                        consumer.pause(tp)
                now = time.monotonic()
                if got:
                    last_progress = now
                elif remaining and now - last_progress > self._idle_timeout:
                    left = sum(stop - consumer.position(tp) for tp, stop in remaining.items())
                    raise KafkaUnavailable(self.settings.bootstrap_servers, (
                        f"no records from {self.topic} for {self._idle_timeout:.0f}s while "
                        f"{left} were expected"))

    def _tail(self, consumer: KafkaConsumer, deadline: float) -> Iterator[tuple[int, list[Any]]]:
        with map_kafka_errors(self.settings):
            while (left := deadline - time.monotonic()) > 0:
                for tp, records in consumer.poll(timeout_ms=max(1, int(left * 1000))).items():
                    if records:
                        yield tp.partition, records
