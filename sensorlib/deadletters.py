"""Dead letters: what the processor rejected, why, and where it came from, as a DataFrame.

The processor sends every record that fails validation to the DLQ topic (see
:func:`sensorlib.processor.dead_letter`): the raw bytes (as text, or base64 when they are
not UTF-8), the reasons per field, and the source topic, partition, offset and record
time. :func:`read_dead_letters` reads them like a replay (assign + seek, no consumer
group, up to the end offsets at the start of the call); :func:`topic_size` counts the
records a topic holds from a point in time on.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from kafka import TopicPartition
from kafka.errors import KafkaError

from sensorlib.config import Settings
from sensorlib.errors import KafkaUnavailable
from sensorlib.replay import CONSUMER_OPTIONS, ReplayError, TimeLike, resolve_period, to_utc

__all__ = ["DEAD_LETTER_COLUMNS", "read_dead_letters", "topic_size"]

#: Columns of :func:`read_dead_letters`.
DEAD_LETTER_COLUMNS = {
    "rejectedAt": "datetime64[us, UTC]", "reason": "str", "fields": "str", "errors": "str",
    "sourceTopic": "str", "sourcePartition": "Int64", "sourceOffset": "Int64",
    "recordTime": "datetime64[us, UTC]", "key": "str", "value": "str", "binary": "bool",
    "partition": "int64", "offset": "int64",
}


def _offsets(consumer: Any, topic: str, settings: Settings, since: pd.Timestamp | None
             ) -> tuple[list[TopicPartition], dict[TopicPartition, int], dict[TopicPartition, int]]:
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        raise ReplayError(f"topic {topic!r} does not exist at {settings.bootstrap_servers}; "
                          "create the topics with `sensorlib topics`")
    parts = [TopicPartition(topic, p) for p in sorted(numbers)]
    ends = consumer.end_offsets(parts)
    begin = consumer.beginning_offsets(parts)
    if since is not None:
        found = consumer.offsets_for_times({tp: max(0, int(since.timestamp() * 1000))
                                            for tp in parts})
        begin = {tp: ends[tp] if found.get(tp) is None else max(found[tp].offset, begin[tp])
                 for tp in parts}
    return parts, begin, ends


def topic_size(settings: Settings, topic: str, since: TimeLike | None = None) -> int:
    """Records on ``topic`` that arrived from ``since`` (Kafka's record time) to now."""
    from sensorlib.kafka_io import make_consumer

    consumer = make_consumer(settings, client_id="sensorlib-size", **CONSUMER_OPTIONS)
    try:
        parts, begin, ends = _offsets(consumer, topic, settings, to_utc(since))
        return sum(max(0, ends[tp] - begin[tp]) for tp in parts)
    except KafkaError as exc:
        raise KafkaUnavailable(settings.bootstrap_servers, f"{type(exc).__name__}: {exc}") from exc
    finally:
        consumer.close()


def _row(value: bytes | None, partition: int, offset: int) -> dict[str, Any]:
    try:
        letter: Any = json.loads(value or b"")
    except ValueError:
        letter = None
    if not isinstance(letter, dict):
        letter = {"errors": [{"field": "dead letter", "reason": "not a sensorlib dead letter"}],
                  "value": (value or b"").decode("utf-8", "replace")}
    errors = [e for e in letter.get("errors") or [] if isinstance(e, dict)]
    source = letter.get("source") if isinstance(letter.get("source"), dict) else {}
    record_ms = source.get("timestamp")
    text = letter.get("value")
    return {
        "rejectedAt": letter.get("rejectedAt"),
        "reason": "; ".join(f"{e.get('field')}: {e.get('reason')}" for e in errors) or "unknown",
        "fields": ", ".join(sorted({str(e.get("field")) for e in errors})) or "unknown",
        "errors": json.dumps(errors, ensure_ascii=False),
        "sourceTopic": source.get("topic"),
        "sourcePartition": source.get("partition"),
        "sourceOffset": source.get("offset"),
        "recordTime": (pd.Timestamp(record_ms, unit="ms", tz="UTC")
                       if isinstance(record_ms, (int, float)) else None),
        "key": letter.get("key"),
        "value": text if isinstance(text, str) else None,
        "binary": text is None and bool(letter.get("valueBase64")),
        "partition": partition,
        "offset": offset,
    }


def read_dead_letters(settings: Settings | None = None, start: TimeLike | None = None,
                      end: TimeLike | None = None, *, timeout: float = 30.0) -> pd.DataFrame:
    """The dead letters rejected in ``start <= rejectedAt < end`` (None = unbounded).

    One row per letter (columns :data:`DEAD_LETTER_COLUMNS`), oldest first: ``reason``
    joins every ``field: reason`` pair, ``fields`` names the failing fields (good for
    grouping), ``value`` is the rejected text (``binary`` is True when it was not UTF-8),
    ``source*`` and ``recordTime`` say where the record was. A letter that is not a
    sensorlib dead letter still gets a row (reason ``dead letter: not a sensorlib dead
    letter``), so nothing on the topic is hidden.

    Raises:
        ReplayError: bad period or missing topic.
        KafkaUnavailable: Kafka does not answer.
    """
    import time

    from sensorlib.kafka_io import make_consumer

    settings = Settings.from_env() if settings is None else settings
    t0, t1 = resolve_period(start, end)
    topic = settings.topic_dlq
    consumer = make_consumer(settings, client_id="sensorlib-dead-letters", **CONSUMER_OPTIONS)
    rows: list[dict[str, Any]] = []
    try:
        # Letters are written as records are rejected: their record time is close to
        # rejectedAt, so Kafka's time index finds the start (5 minutes early, for skew).
        since = None if t0 is None else t0 - pd.Timedelta(minutes=5)
        parts, begin, ends = _offsets(consumer, topic, settings, since)
        remaining = {tp: ends[tp] for tp in parts if begin[tp] < ends[tp]}
        if remaining:
            consumer.assign(list(remaining))
            for tp in remaining:
                consumer.seek(tp, begin[tp])
        last = time.monotonic()
        while remaining:
            batch = consumer.poll(timeout_ms=500)
            for tp, records in batch.items():
                stop = remaining.get(tp, -1)
                rows.extend(_row(r.value, tp.partition, r.offset) for r in records
                            if r.offset < stop)
                if records:
                    last = time.monotonic()
            for tp in list(remaining):
                if consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
            if remaining and time.monotonic() - last > timeout:
                raise KafkaUnavailable(settings.bootstrap_servers,
                                       f"no records from {topic} for {timeout:.0f}s")
    except KafkaError as exc:
        raise KafkaUnavailable(settings.bootstrap_servers, f"{type(exc).__name__}: {exc}") from exc
    finally:
        consumer.close()
    frame = pd.DataFrame(rows, columns=list(DEAD_LETTER_COLUMNS))
    frame["rejectedAt"] = pd.to_datetime(frame["rejectedAt"], utc=True, errors="coerce")
    frame = frame.astype(DEAD_LETTER_COLUMNS)
    if t0 is not None:
        frame = frame[frame["rejectedAt"] >= t0]
    if t1 is not None:
        frame = frame[frame["rejectedAt"] < t1]
    frame = frame.sort_values(["rejectedAt", "partition", "offset"], kind="stable")
    frame = frame.reset_index(drop=True)
    frame.attrs.update(topic=topic)
    return frame
