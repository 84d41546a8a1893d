"""One poll's transaction as an object (quixstreams' ``Checkpoint``): the alerts and dead
letters it publishes and the consumer offsets it commits, all in one Kafka transaction.

A ``read_committed`` reader sees all of it or none of it, so an alert is published
exactly once even when the processor is killed mid-way; a failed transaction is aborted
and the session restarts from the last committed one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import OffsetAndMetadata, TopicPartition

from sensorlib.config import Settings
from sensorlib.kafka.deadletters import dead_letter, dead_letter_headers, dead_letter_key
from sensorlib.model.events import (
    Alert,
)

__all__ = ["TXN_STEP_TIMEOUT", "Checkpoint", "bounded_step"]

#: Longest one transaction step (offsets, commit, abort) may take before the session is
#: rebuilt (see :func:`bounded_step`); well above a healthy commit (milliseconds).
TXN_STEP_TIMEOUT = 20.0


@dataclass
class Checkpoint:
    """What one poll commits: ``alerts`` to publish, ``dead`` letters (record, why), the
    consumer ``offsets`` after the poll, ``caused`` (record, its alerts: for traces) and the
    counts of readings ``processed`` and retried copies dropped as ``duplicates``."""

    alerts: list[Alert] = field(default_factory=list)
    dead: list[tuple[Any, Exception]] = field(default_factory=list)
    offsets: dict[TopicPartition, OffsetAndMetadata] = field(default_factory=dict)
    caused: list[tuple[Any, list[Alert]]] = field(default_factory=list)
    processed: int = 0
    duplicates: int = 0

    def __bool__(self) -> bool:
        """Whether there is anything to commit."""
        return bool(self.offsets or self.alerts)

    def commit(self, producer: Any, consumer: Any, settings: Settings,
               headers: dict[str, Any]) -> None:
        """Publish the alerts (with ``headers`` by alert id) and dead letters and commit the
        offsets in one transaction; on any failure abort it and re-raise."""
        producer.begin_transaction()
        try:
            for alert in self.alerts:
                producer.send(settings.topic_alerts, key=alert.sensor_id, value=alert.to_json(),
                              headers=headers.get(alert.alert_id))
            for record, exc in self.dead:
                producer.send(settings.topic_dlq, key=dead_letter_key(record),
                              value=dead_letter(record, exc), headers=dead_letter_headers(record))
            if self.offsets:
                group = consumer.group_metadata()
                bounded_step(lambda: producer.send_offsets_to_transaction(self.offsets, group),
                             "sending offsets to the transaction")
            bounded_step(producer.commit_transaction, "committing the transaction")
        except Exception as failure:
            try:
                bounded_step(producer.abort_transaction, "aborting the transaction", timeout=10.0)
            except Exception as exc:
                # The session ends (a fresh producer fences the open transaction).
                raise exc from failure
            raise


def bounded_step(step: Callable[[], object], what: str, timeout: float = TXN_STEP_TIMEOUT) -> None:
    """Run one blocking transaction step; raise ``TimeoutError`` if it takes too long.

    kafka-python waits for send_offsets/commit/abort without a deadline; when the
    transaction coordinator's broker dies it can wait for ever (seen with a 3-broker
    cluster). Timing out ends the session, and the next one's ``init_transactions``
    finds the new coordinator and aborts the stuck transaction. A stuck step leaves
    one idle daemon thread behind.
    """
    done = threading.Event()
    failure: list[BaseException] = []

    def call() -> None:
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=call, name="processor-txn-step", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"{what} did not complete within {timeout:.0f}s")
    if failure:
        raise failure[0]


