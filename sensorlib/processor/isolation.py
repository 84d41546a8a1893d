"""Poison isolation: a poll that fails because of its data is re-read in halves from
committed state until the one record that fails is found and dead-lettered."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from sensorlib.errors import SensorlibError

__all__ = ["Suspects", "poisoned"]

#: Errors that say something about the records, not about Kafka being unavailable: a
#: record that causes one is isolated and dead-lettered instead of restarting the session.
_RECORD_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidRecordError,
                  CorruptRecordError)


def poisoned(exc: BaseException) -> bool:
    """Whether ``exc`` may have been caused by the data of the records being processed."""
    if isinstance(exc, _RECORD_ERRORS):
        return True
    return not isinstance(exc, (KafkaError, TimeoutError, OSError, SensorlibError))


@dataclass
class PoisonRange:
    end: int  # the last offset of the poll that failed
    limit: int  # records per poll while inside the range
    poison: tuple[int, str] | None = None  # (offset, why) of the record found


class Suspects:
    """Partitions whose poll failed because of its data, re-read in halves.

    After a failure each partition of the poll is re-read from its committed offset, one
    partition per poll, half as many records per poll; a poll that fails again halves
    again, one that passes doubles. A single record that fails is the poison: it is
    dead-lettered with the error as its reason and never processed again. A range passed
    to its end is forgotten. Live = restarted: every attempt starts from committed state.
    """

    def __init__(self) -> None:
        self._ranges: dict[TopicPartition, PoisonRange] = {}

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._ranges.pop(tp, None)

    def limit(self, batch: dict[TopicPartition, list[Any]], consumer: Any
              ) -> dict[TopicPartition, list[Any]]:
        """The part of a poll to work on now (the rest is read again by the next poll)."""
        if not self._ranges:
            return batch
        chosen = next((tp for tp in self._ranges if batch.get(tp)), None)
        if chosen is None:
            return batch
        out: dict[TopicPartition, list[Any]] = {}
        for tp, records in batch.items():
            if not records:
                continue
            keep = self._ranges[chosen].limit if tp == chosen else 0
            if len(records) > keep:
                consumer.seek(tp, records[keep][0])
            if keep:
                out[tp] = records[:keep]
        return out

    def poison(self, batch: dict[TopicPartition, list[Any]]
               ) -> dict[TopicPartition, tuple[int, str]]:
        return {tp: r.poison for tp, r in self._ranges.items()
                if r.poison is not None and batch.get(tp)}

    def failed(self, batch: dict[TopicPartition, list[Any]], exc: BaseException) -> None:
        why = f"processing failed: {type(exc).__name__}: {exc}"[:500]
        parts = {tp: records for tp, records in batch.items() if records}
        for tp, records in parts.items():
            r = self._ranges.get(tp)
            if r is None:
                r = self._ranges[tp] = PoisonRange(end=records[-1][0], limit=len(records))
            if len(parts) == 1 and len(records) == 1:
                r.poison = (records[0][0], why)
            r.limit = max(1, len(records) // 2) if len(parts) == 1 else len(records)

    def passed(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batch.items():
            r = self._ranges.get(tp)
            if r is None or not records:
                continue
            last = records[-1][0]
            if last >= r.end:
                del self._ranges[tp]
                continue
            if r.poison is not None and r.poison[0] <= last:
                r.poison = None
            r.limit *= 2


