"""Kafka I/O: the one place that builds kafka-python clients and sets up topics.

Everything else asks this module for a producer, a consumer or an admin client built
from :class:`~sensorlib.config.Settings`, so security settings, client ids and
serialisation are decided once. Keys are sensor ids (UTF-8); values are raw bytes
(the JSON wire format lives in :mod:`sensorlib.model.events`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
)

from sensorlib.config import Settings
from sensorlib.errors import KafkaSetupFailed, KafkaUnavailable

__all__ = [
    "ClientErrors",
    "RebalanceQueue",
    "client_config",
    "client_errors",
    "decode_key",
    "encode_key",
    "make_admin",
    "make_consumer",
    "make_producer",
    "subscribe",
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
    consumer = _connect(KafkaConsumer, settings, **cfg)
    if topics:
        try:
            subscribe(consumer, topics)
        except (KafkaTimeoutError, KafkaConnectionError) as exc:  # as _connect says it
            consumer.close()
            raise KafkaUnavailable(settings.bootstrap_servers, str(exc)) from None
    return consumer


def subscribe(consumer: KafkaConsumer, topics: Any, listener: Any = None,
              timeout: float = 10.0) -> None:
    """Subscribe ``consumer`` to ``topics`` and learn their partitions before its first poll
    joins the group.

    A group's leader assigns partitions from its own metadata, and kafka-python rebalances
    again whenever the metadata it assigned from differs from what it learns later. Joined
    without the topics' metadata, a leader assigned nothing ("No partition metadata"; the
    processor then sat idle until its ``RebalanceStuck`` guard, 30 s); with metadata fetched
    *before* subscribing, the first metadata after it started a second rebalance. Fetched
    after subscribing, both are the same from the first join on. Waits up to ``timeout``
    seconds for partitions (a topic just created may not be in the broker's metadata yet);
    after that the join goes ahead and kafka-python's own repair applies.
    """
    names = [topics] if isinstance(topics, str) else list(topics)
    if listener is None:
        consumer.subscribe(names)
    else:
        consumer.subscribe(names, listener=listener)
    deadline = time.monotonic() + timeout
    while True:
        consumer.topics()  # a metadata fetch now, seen by the group's rebalance check too
        if all(consumer.partitions_for_topic(t) for t in names) or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def make_admin(settings: Settings, client_id: str = "sensorlib-admin", **overrides: Any) -> KafkaAdminClient:
    """An admin client (topics, groups, offsets)."""
    cfg = client_config(settings, client_id)
    cfg.update(request_timeout_ms=15000)
    cfg.update(overrides)
    return _connect(KafkaAdminClient, settings, **cfg)


class RebalanceQueue(ConsumerRebalanceListener):
    """Queues a group member's partition changes as ``(revoked, assigned)`` events for the
    thread that polls (kafka-python calls the listener on its IO loop, which must not block:
    the processor and the archiver :meth:`drain` it after each poll and do the work there)."""

    def __init__(self) -> None:
        self._events: list[tuple[list[TopicPartition], list[TopicPartition]]] = []
        self._lock = threading.Lock()

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        with self._lock:
            self._events.append((list(revoked), []))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        with self._lock:
            self._events.append(([], list(assigned)))

    def drain(self) -> list[tuple[list[TopicPartition], list[TopicPartition]]]:
        with self._lock:
            events, self._events = self._events, []
        return events
