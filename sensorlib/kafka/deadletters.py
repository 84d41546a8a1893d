"""Dead letters: what the processor rejected, why, and where it came from, as a DataFrame.

The processor sends every record that fails validation to the DLQ topic
(:func:`dead_letter` builds the value, :func:`dead_letter_headers` the headers that keep
the record's trace context): the raw bytes (as text, or base64 when they are
not UTF-8), the reasons per field, and the source topic, partition, offset and record
time. :func:`read_dead_letters` reads them like a replay (assign + seek, no consumer
group, up to the end offsets at the start of the call); :func:`topic_size` counts the
records a topic holds from a point in time on.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING, Any

from sensorlib.config import Settings
from sensorlib.kafka.reader import TopicReader
from sensorlib.model.rejections import InvalidReading
from sensorlib.model.times import format_timestamp, utcnow
from sensorlib.observe.tracing import context_headers

if TYPE_CHECKING:  # the readers import these: the processor writes dead letters without them
    import pandas as pd

    from sensorlib.replay.reader import ReplayError, TimeLike

__all__ = ["DEAD_LETTER_COLUMNS", "MAX_LETTER_VALUE", "dead_letter", "dead_letter_headers",
           "dead_letter_key", "letters_frame", "read_dead_letters",
           "topic_size"]

#: Columns of :func:`read_dead_letters`.
DEAD_LETTER_COLUMNS = {
    "rejectedAt": "datetime64[us, UTC]", "reason": "str", "fields": "str", "errors": "str",
    "sourceTopic": "str", "sourcePartition": "Int64", "sourceOffset": "Int64",
    "recordTime": "datetime64[us, UTC]", "key": "str", "value": "str", "binary": "bool",
    "partition": "int64", "offset": "int64",
}


def _reader(settings: Settings, topic: str, since: pd.Timestamp | None, timeout: float = 30.0,
            client_id: str = "sensorlib-dead-letters", offsets: dict[int, int] | None = None
            ) -> TopicReader:
    from sensorlib.replay.reader import CONSUMER_OPTIONS

    since_ms = None if since is None else max(0, int(since.timestamp() * 1000))
    return TopicReader(settings, topic, since_ms=since_ms, idle_timeout=timeout,
                       client_id=client_id, offsets=offsets, **CONSUMER_OPTIONS)


def _missing(settings: Settings, topic: str) -> ReplayError:
    from sensorlib.replay.reader import ReplayError

    return ReplayError(f"topic {topic!r} does not exist at {settings.bootstrap_servers}; "
                       "create the topics with `sensorlib topics`")


def topic_size(settings: Settings, topic: str, since: TimeLike | None = None) -> int:
    """Records on ``topic`` that arrived from ``since`` (Kafka's record time) to now."""
    from sensorlib.replay.reader import to_utc

    with _reader(settings, topic, to_utc(since), client_id="sensorlib-size") as reader:
        if not reader.exists:
            raise _missing(settings, topic)
        return reader.total


#: Bytes of a rejected value kept in its dead letter; a longer value is cut there (its
#: length and SHA-256 are kept), so a letter always fits in a Kafka record whatever the
#: rejected value held (600 KB of quotes escape to 1.2 MB of JSON).
MAX_LETTER_VALUE = 16 * 1024
#: Characters of a rejected record's key kept in its letter and as the letter's key.
MAX_LETTER_KEY = 1024


def dead_letter(record: Any, error: Exception) -> bytes:
    """The DLQ value for a consumed ``record`` that failed with ``error``.

    Bounded whatever the record held: the value is kept up to :data:`MAX_LETTER_VALUE`
    bytes (as text when it is UTF-8, else base64), with ``valueBytes`` (the full length),
    ``valueSha256`` and ``truncated`` saying what was cut.
    """
    raw: bytes = record.value if isinstance(record.value, bytes) else b""
    kept = raw[:MAX_LETTER_VALUE]
    text = _utf8_prefix(kept, cut=len(raw) > MAX_LETTER_VALUE)
    errors = (
        [{"field": e.field, "reason": e.reason[:1000]} for e in error.errors[:20]]
        if isinstance(error, InvalidReading)
        else [{"field": "body", "reason": f"{type(error).__name__}: {error}"[:1000]}]
    )
    key = record.key
    return json.dumps(
        {
            "errors": errors,
            "source": {"topic": record.topic, "partition": record.partition,
                       "offset": record.offset, "timestamp": record.timestamp},
            "key": key[:MAX_LETTER_KEY] if isinstance(key, str) else None,
            "value": text,
            "valueBase64": base64.b64encode(kept).decode() if text is None else None,
            "valueBytes": None if record.value is None else len(raw),
            "valueSha256": hashlib.sha256(raw).hexdigest(),
            "truncated": len(raw) > MAX_LETTER_VALUE,
            "rejectedAt": format_timestamp(utcnow()),
        }
    ).encode()


def dead_letter_key(record: Any) -> str | None:
    """The key of the DLQ record: the rejected record's key (bounded)."""
    key = record.key
    return key[:MAX_LETTER_KEY] if isinstance(key, str) else None


def _utf8_prefix(data: bytes, *, cut: bool) -> str | None:
    """``data`` as text, or None when it is not UTF-8 (a cut value may end inside a
    character: up to three bytes are dropped then)."""
    for drop in range(4 if cut else 1):
        try:
            return data[:len(data) - drop].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def dead_letter_headers(record: Any) -> list[tuple[str, bytes]]:
    """The headers of the DLQ record for a consumed ``record``: its W3C trace context.

    The rejected reading's ``traceparent``/``tracestate`` go on unchanged, so a dead
    letter stays in the trace of the POST that sent the bad reading (Zipkin shows where
    it came from; :func:`sensorlib.observe.tracing.trace_id_of` reads it back). Other headers
    are not copied. Empty when the record had none. Send it with the value::

        producer.send(dlq, key=record.key, value=dead_letter(record, exc),
                      headers=dead_letter_headers(record))
    """
    return context_headers(getattr(record, "headers", None))


def _row(value: bytes | None, partition: int, offset: int) -> dict[str, Any]:
    import pandas as pd

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


def letters_frame(values: list[bytes | None], partitions: Any, offsets: Any) -> pd.DataFrame:
    """Dead-letter record values as typed rows (columns :data:`DEAD_LETTER_COLUMNS`), in the
    order given: what :func:`read_dead_letters` returns and the archive's table holds."""
    import pandas as pd

    rows = [_row(value, int(p), int(o))
            for value, p, o in zip(values, partitions, offsets, strict=True)]
    frame = pd.DataFrame(rows, columns=list(DEAD_LETTER_COLUMNS))
    frame["rejectedAt"] = pd.to_datetime(frame["rejectedAt"], utc=True, errors="coerce")
    for name in ("sourcePartition", "sourceOffset"):  # bounded: only what Int64 holds
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame.astype(DEAD_LETTER_COLUMNS)


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
    import pandas as pd

    from sensorlib.replay.reader import resolve_period

    settings = Settings.from_env() if settings is None else settings
    t0, t1 = resolve_period(start, end)
    topic = settings.topic_dlq
    from sensorlib.history import query as history
    from sensorlib.kafka.admin import kafka_reachable

    frames: list[pd.DataFrame] = []
    archived = history.scan(settings, history.DEAD_LETTERS, t0, t1, None, DEAD_LETTER_COLUMNS)
    offsets = None
    if archived is not None:  # the archive first, Kafka for what it does not hold yet
        frames.append(archived.frame)
        offsets = archived.offsets
        if not kafka_reachable(settings, timeout=2.0):
            frame = _finish(archived.frame, t0, t1, topic)
            frame.attrs["warnings"] = [(f"Kafka at {settings.bootstrap_servers} is not "
                                        "reachable: the archived dead letters only")]
            return frame
    values: list[bytes | None] = []
    partitions: list[int] = []
    positions: list[int] = []
    # Letters are written as records are rejected: their record time is close to
    # rejectedAt, so Kafka's time index finds the start (5 minutes early, for skew).
    since = None if t0 is None or offsets is not None else t0 - pd.Timedelta(minutes=5)
    with _reader(settings, topic, since, timeout, offsets=offsets) as reader:
        if not reader.exists:
            raise _missing(settings, topic)
        for partition, records in reader:
            values.extend(r.value for r in records)
            partitions.extend([partition] * len(records))
            positions.extend(r.offset for r in records)
    frames.append(letters_frame(values, partitions, positions))
    return _finish(pd.concat(frames, ignore_index=True), t0, t1, topic)


def _finish(frame: pd.DataFrame, t0: Any, t1: Any, topic: str) -> pd.DataFrame:
    frame = frame.astype(DEAD_LETTER_COLUMNS)
    if t0 is not None:
        frame = frame[frame["rejectedAt"] >= t0]
    if t1 is not None:
        frame = frame[frame["rejectedAt"] < t1]
    frame = frame.sort_values(["rejectedAt", "partition", "offset"], kind="stable")
    frame = frame.reset_index(drop=True)
    frame.attrs.update(topic=topic)
    return frame
