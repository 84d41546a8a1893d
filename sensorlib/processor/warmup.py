"""Warm-up: the history a processor re-reads on each assignment to rebuild its windows and
cooldowns, and the recent alerts it back-fills into its API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from kafka import TopicPartition

from sensorlib.config import Settings
from sensorlib.engine.dedup import SeenEvents, event_id_of
from sensorlib.kafka.reader import TopicReader
from sensorlib.model.events import LiveReading, Reading, parse_alert, parse_reading
from sensorlib.model.rejections import InvalidReading
from sensorlib.model.times import utcnow

__all__ = ["HISTORY_TIMEOUT", "MAX_WARMUP", "WARM_EXTRA", "first_copy", "read_history",
           "read_recent_alerts", "warm_span"]

#: History re-read beyond the window on assignment, for cooldown and silence state.
WARM_EXTRA = timedelta(minutes=2)
#: The most history a processor re-reads on assignment for a rule that asks for more than
#: the window (:attr:`Rule.warmup <sensorlib.rules.Rule.warmup>`, e.g. ``ml_score``'s
#: ``ml_history``): a day of one partition (the reference fleet: ~43k readings per
#: partition, held in memory while they are replayed, a few seconds with the ML rule on).
MAX_WARMUP = timedelta(hours=24)
#: A state rebuild or alert back-fill read that gets no record for this long ends the
#: session instead of hanging a rebalance.
HISTORY_TIMEOUT = 20.0


def read_history(
    settings: Settings,
    tp: TopicPartition,
    span: timedelta,
    until_offset: int,
    clock: Callable[[], datetime] = utcnow,
    *,
    accept: Callable[[Any], Reading | LiveReading | InvalidReading] | None = None,
    seen: SeenEvents | None = None,
) -> list[Reading | LiveReading]:
    """Valid readings of ``tp`` from ``span`` ago (by record timestamp) up to ``until_offset``.

    ``accept`` turns a record into its reading or a rejection (default: :func:`parse_reading`
    of the value); rejected records are skipped, as the live loop sent them to the DLQ.
    With ``seen``, the event ids of the history are remembered there and retried copies
    are skipped, as the live loop dropped them.
    Uses no consumer group (assign + seek), so it never disturbs committed offsets; a read
    that stalls ends the session (:class:`~sensorlib.kafka.reader.TopicReader`).
    """
    judge = accept or _parsed
    since_ms = int((clock() - span).timestamp() * 1000)
    out: list[Reading | LiveReading] = []
    with TopicReader(settings, tp.topic, partitions=[tp.partition], since_ms=since_ms,
                     until={tp.partition: until_offset}, client_id="sensorlib-warmup",
                     idle_timeout=HISTORY_TIMEOUT) as reader:
        for _, records in reader:
            for record in records:
                got = judge(record)
                if not isinstance(got, InvalidReading) and (
                        seen is None or not record.headers
                        or first_copy(seen, record.headers, record.timestamp, got)):
                    out.append(got)
    return out


def warm_span(window: timedelta, warmup: timedelta | None) -> timedelta:
    """The history (record time) a processor re-reads on assignment: the window plus
    :data:`WARM_EXTRA` (windows, cooldowns, silences), or what the rules in force ask for
    (``warmup``: :attr:`Detector.warmup <sensorlib.engine.detect.Detector.warmup>`) if
    longer, at most :data:`MAX_WARMUP`.

    >>> warm_span(timedelta(minutes=5), None)
    datetime.timedelta(seconds=420)
    >>> warm_span(timedelta(minutes=5), timedelta(days=3))
    datetime.timedelta(days=1)
    """
    base = window + WARM_EXTRA
    if warmup is None:
        return base
    return max(base, min(warmup, MAX_WARMUP))


def first_copy(seen: SeenEvents, headers: Any, timestamp: int,
                reading: Reading | LiveReading) -> bool:
    """False for a retried copy: its (sensorId, eventId) came within the span already."""
    event_id = event_id_of(headers)
    return event_id is None or seen.first(reading.sensor_id, event_id, timestamp)


def _parsed(record: Any) -> Reading | InvalidReading:
    try:
        return parse_reading(record.value)
    except InvalidReading as exc:
        return exc



def read_recent_alerts(settings: Settings, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` committed alerts (oldest first), read without a group."""
    alerts: list[dict[str, Any]] = []
    with TopicReader(settings, settings.topic_alerts, last=limit,
                     client_id="sensorlib-alert-backfill", idle_timeout=HISTORY_TIMEOUT) as reader:
        for _, records in reader:
            for record in records:
                try:
                    alerts.append(parse_alert(record.value).to_dict())
                except ValueError:
                    continue
    alerts.sort(key=lambda a: (a["detectedAt"], a["alertId"]))
    return alerts[-limit:]

