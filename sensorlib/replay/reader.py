"""Replay: a topic's history, or a slice of it, into typed pandas DataFrames.

:func:`read_readings` and :func:`read_alerts` use no consumer group (assign + seek), so
they never disturb anyone's committed offsets. They read up to the end offsets as they
were when the call began and return: a topic being written while it is read never makes
them wait. Records are decoded in bulk (Apache Arrow's JSON reader over the joined
values, on a worker thread while the next records are fetched) and validated with
vectorised versions of :func:`sensorlib.model.events.parse_reading`'s rules; invalid records
are counted (``df.attrs["invalid"]``) and logged, never raised.

This module chooses where a period comes from (the archive, Kafka, or the archive plus
the Kafka tail not yet archived) and keeps the public names in one place; the work is
done by one module per concept, each usable alone:

- :mod:`sensorlib.replay.periods`: times and ``[start, end)`` periods (``to_utc``, ``resolve_period``);
- :mod:`sensorlib.replay.decode`: pure bulk decoding and validation (``decode_readings``);
- :mod:`sensorlib.kafka.fetch`: bounded reads from Kafka into decoded chunks;
- :mod:`sensorlib.replay.frames`: chunks into the returned frame (period, order, duplicates);
- :mod:`sensorlib.notebook.analysis`: helpers over the frames (``replay_rules``, ``latest_by_sensor``).

>>> readings = read_readings(start="2026-01-01T00:00", end="2026-01-02")   # doctest: +SKIP
>>> aggregates, alerts = run_frame(readings)                                # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Literal, TypedDict, Unpack

import numpy as np
import pandas as pd

from sensorlib.config import Settings
from sensorlib.errors import ReplayError
from sensorlib.kafka.fetch import (  # the constants are re-exported: callers import them from here
    CHUNK,  # noqa: F401
    CONSUMER_OPTIONS,  # noqa: F401
    OVERLAP,  # noqa: F401
    PROGRESS_THRESHOLD,  # noqa: F401
    fetch,
    tail,
)
from sensorlib.notebook.analysis import compare_rules, latest_by_sensor, replay_rules, rolling_stats
from sensorlib.replay.decode import (
    ALERT_DTYPES,
    ALERT_RECORDS,
    READ_CATEGORIES,
    READ_READING_DTYPES,
    READING_DTYPES,
    READING_RECORDS,
    RecordKind,
    decode_alerts,
    decode_readings,
    empty_alerts,
    empty_readings,
)
from sensorlib.replay.frames import ReplayWarning, as_categories, assemble, check_sensors, warn
from sensorlib.replay.periods import TimeLike, resolve_period, to_utc

__all__ = [
    "ALERT_DTYPES",
    "READING_DTYPES",
    "READ_READING_DTYPES",
    "ReadOptions",
    "ReplayError",
    "ReplayWarning",
    "Source",
    "TimeLike",
    "compare_rules",
    "decode_alerts",
    "decode_readings",
    "empty_alerts",
    "empty_readings",
    "latest_by_sensor",
    "read_alerts",
    "read_readings",
    "replay_rules",
    "resolve_period",
    "rolling_stats",
    "tail_readings",
    "to_utc",
]

#: How far before ``start`` (in Kafka record time) the seek lands, so readings whose
#: producer clock ran a little ahead of their event time are not skipped.
DEFAULT_SLACK = timedelta(minutes=5)



#: Where :func:`read_readings` looks: ``auto`` = the archive for what it covers plus Kafka
#: for the tail not yet archived (Kafka alone when there is no archive); ``archive`` = the
#: archive only (works without Kafka); ``kafka`` = Kafka only.
Source = Literal["auto", "archive", "kafka"]
_SOURCES = ("auto", "archive", "kafka")


def _legacy(start: Any, end: Any, sensors: Any, legacy: tuple[Any, ...],
            settings: Settings | None, name: str) -> tuple[Any, Any, Any, Settings | None]:
    """Accept the old ``(settings, start, end, sensors)`` order, with a DeprecationWarning."""
    if isinstance(start, Settings):
        if settings is not None:
            raise TypeError(f"{name}() got settings twice")
        if len(legacy) > 1:
            raise TypeError(f"{name}() takes at most 4 positional arguments")
        warnings.warn(f"{name}(settings, start, end, sensors) is deprecated: pass settings= "
                      f"as a keyword, e.g. {name}('-1h', 'now', settings=settings)",
                      DeprecationWarning, stacklevel=3)
        return end, sensors, legacy[0] if legacy else None, start
    if legacy:
        raise TypeError(f"{name}() takes at most 3 positional arguments (start, end, sensors); "
                        "pass the rest as keywords")
    return start, end, sensors, settings


#: Seconds to wait for a TCP connection to Kafka before a read serves the archive alone
#: (or raises, with no archive).
KAFKA_PROBE = 2.0


def _span(first: Any, last: Any) -> str:
    return f"{pd.Timestamp(first).isoformat()} to {pd.Timestamp(last).isoformat()}"


class ReadOptions(TypedDict, total=False):
    """The keyword options of :func:`read_readings` and :func:`read_alerts`."""

    settings: Settings | None
    source: Source
    progress: bool | None
    slack: timedelta | None
    timeout: float


def _read(kind: RecordKind, topic_of: Callable[[Settings], str], settings: Settings | None,
          start: TimeLike | None, end: TimeLike | None, sensors: Iterable[str] | str | None,
          *, source: str = "auto", progress: bool | None = None,
          slack: timedelta | None = DEFAULT_SLACK, timeout: float = 30.0) -> pd.DataFrame:
    from sensorlib.errors import KafkaUnavailable
    from sensorlib.history import query as history
    from sensorlib.kafka.admin import kafka_reachable

    if source not in _SOURCES:
        raise ReplayError(f"source must be one of {', '.join(_SOURCES)}, got {source!r}")
    settings = Settings.from_env() if settings is None else settings
    t0, t1 = resolve_period(start, end)
    if isinstance(sensors, str):
        sensors = [sensors]
    wanted = None if sensors is None else list(sensors)
    topic = topic_of(settings)
    table_kind = history.READINGS if kind is READING_RECORDS else history.ALERTS
    # Readings come back with sensorId/location as categories (READ_READING_DTYPES),
    # whatever the source: a month is millions of rows of a handful of ids.
    categories = READ_CATEGORIES if kind is READING_RECORDS else ()
    read_dtypes = READ_READING_DTYPES if kind is READING_RECORDS else kind.dtypes
    archived = None
    if source in ("auto", "archive"):
        archived = history.scan(settings, table_kind, t0, t1, wanted, read_dtypes)
        if archived is None and source == "archive":
            raise ReplayError(f"there is no archive of {topic!r} in {settings.warehouse}; run "
                              "`sensorlib archive` (or read with source='kafka')")
    # Fail fast when Kafka is down (a refused connection answers at once): serve what the
    # archive holds, with a warning, instead of waiting out the read timeout.
    kafka_down = source != "archive" and not kafka_reachable(settings, timeout=KAFKA_PROBE)
    if kafka_down and archived is None:
        raise KafkaUnavailable(settings.bootstrap_servers,
                               f"no connection within {KAFKA_PROBE:g}s, and there is no archive "
                               f"of {topic!r} in {settings.warehouse} to read instead")
    if archived is not None:
        kafka_tail: list[pd.DataFrame] = []
        if source == "auto" and not kafka_down:
            # Offsets of another cluster's topic of the same name name other records.
            history.check_tail_cluster(settings, table_kind)
            kafka_tail = fetch(settings, topic, None, kind, progress=progress,
                               slack=timedelta(0), timeout=timeout, offsets=archived.offsets)
        out = _with_tail(archived.frame, kafka_tail, kind, t0, t1, wanted, topic, categories)
        if out.empty and (covered := history.event_range(settings, table_kind)) is not None:
            warn(out, f"no {kind.name}s with event times in the period "
                      f"({'-inf' if t0 is None else t0.isoformat()} to "
                      f"{'+inf' if t1 is None else t1.isoformat()}); the archive holds "
                      f"{kind.name}s from {_span(*covered)}"
                      + ("" if source == "archive" else ", and Kafka's tail none in it"))
        if kafka_down:
            warn(out, f"Kafka at {settings.bootstrap_servers} is not reachable: these are the "
                      f"archived {kind.name}s only; what Kafka holds beyond the archive "
                      f"(offsets {archived.offsets or 'none'}) is missing")
        out.attrs.update(source="archive" if source == "archive" else "archive+kafka",
                         from_archive=len(archived.frame),
                         from_kafka=int(sum(len(f) for f in kafka_tail)),
                         archive_offsets={str(p): o for p, o in archived.offsets.items()},
                         snapshot_id=archived.snapshot_id)

        def known() -> set[str]:
            return history.known_sensors(settings) | set(out.attrs["seen_sensors"])
    else:
        frames = fetch(settings, topic, t0 if slack is not None else None, kind,
                       progress=progress, slack=slack or timedelta(0), timeout=timeout)
        out = assemble(frames, kind, t0, t1, wanted, topic)
        if out.empty and slack is not None and t0 is not None and not frames:
            # The seek by record time found nothing after start: records written before
            # may still carry event times in the period (clocks ahead, buffered data).
            frames = fetch(settings, topic, None, kind, progress=progress,
                           slack=timedelta(0), timeout=timeout)
            out = assemble(frames, kind, t0, t1, wanted, topic)
        out.attrs.update(source="kafka", from_archive=0, from_kafka=int(sum(map(len, frames))))
        if out.empty and out.attrs["seen"]:
            warn(out, f"no {kind.name}s with event times in the period "
                      f"({'-inf' if t0 is None else t0.isoformat()} to "
                      f"{'+inf' if t1 is None else t1.isoformat()}), but {topic} holds "
                      f"{out.attrs['seen']:,} whose event times run from "
                      f"{_span(out.attrs['seen_first'], out.attrs['seen_last'])}")

        def known() -> set[str]:
            return set(out.attrs["seen_sensors"])
    as_categories(out, categories)
    check_sensors(out, wanted, known, kind)
    out.attrs.update(start=None if t0 is None else t0.isoformat(),
                     end=None if t1 is None else t1.isoformat())
    return out


def _with_tail(archived: pd.DataFrame, tail: list[pd.DataFrame], kind: RecordKind,
               t0: pd.Timestamp | None, t1: pd.Timestamp | None, wanted: list[str] | None,
               topic: str, categories: tuple[str, ...] = ()) -> pd.DataFrame:
    """The archive's rows (valid, in the period, ordered: see ``history.scan``) followed by
    Kafka's tail beyond them, as :func:`~sensorlib.replay.frames.assemble` would give them both —
    without copying a month of archive rows through it when the tail adds nothing."""
    tail_frame = assemble(tail, kind, t0, t1, wanted, topic)
    seen = dict(tail_frame.attrs)
    duplicates = seen.get("duplicates", 0)
    if "alertId" in tail_frame and len(tail_frame) and len(archived):
        again = tail_frame["alertId"].isin(archived["alertId"]).to_numpy()
        if again.any():  # a re-published alert is the same alert
            duplicates += int(again.sum())
            tail_frame = tail_frame.loc[~again]
    if tail_frame.empty:
        out = archived.reset_index(drop=True)
    else:  # the same categories on both sides: the concatenation stays categorical
        tail_frame = as_categories(tail_frame.copy(), categories, like=archived)
        out = pd.concat([archived, tail_frame], ignore_index=True)
        ts = out["timestamp"].array.asi8
        if len(archived) and len(tail_frame) and ts[len(archived):].min() < ts[
                len(archived) - 1]:  # late records in the tail: one sort of the whole
            order = np.lexsort((out["offset"].to_numpy(), out["partition"].to_numpy(), ts))
            out = out.iloc[order].reset_index(drop=True)
    sensors = set(seen.get("seen_sensors") or ())
    if len(archived):
        sensors |= set(archived["sensorId"].unique().tolist())
        first = archived["timestamp"].iloc[0]
        last = archived["timestamp"].iloc[-1]
        if seen.get("seen_first") is not None:
            first = min(first, pd.Timestamp(seen["seen_first"]))
            last = max(last, pd.Timestamp(seen["seen_last"]))
        span = {"seen_first": first.isoformat(), "seen_last": last.isoformat()}
    else:
        span = {"seen_first": seen.get("seen_first"), "seen_last": seen.get("seen_last")}
    out.attrs.update(topic=topic, invalid=seen.get("invalid", 0),
                     invalid_examples=seen.get("invalid_examples", []),
                     duplicates=duplicates,
                     seen=len(archived) + seen.get("seen", 0), seen_sensors=sorted(sensors),
                     **span)
    return out


def read_readings(
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    sensors: Iterable[str] | str | None = None,
    *legacy: Any,
    settings: Settings | None = None,
    source: Source = "auto",
    progress: bool | None = None,
    slack: timedelta | None = DEFAULT_SLACK,
    timeout: float = 30.0,
) -> pd.DataFrame:
    """The readings whose **event time** is in ``start <= timestamp < end``.

    From the archive (:mod:`sensorlib.history.archiver`'s Iceberg table) for the offsets it
    covers and from Kafka for the tail not yet archived, de-duplicated by
    (partition, offset); from Kafka alone when there is no archive.

    >>> read_readings("-1h", "now", ["sensor-01"])                     # doctest: +SKIP

    Args:
        start, end: event-time bounds (datetime, Timestamp or string; naive = UTC;
            see :func:`to_utc`); ``end`` is exclusive. None = unbounded.
        sensors: keep only these sensor ids (an unknown id warns, naming the known ones).
        settings: where Kafka, the topic and the archive are (keyword only; default
            ``Settings.from_env()``).
        source: ``auto`` (archive + Kafka tail, or Kafka alone), ``archive`` (the archive
            only, no Kafka needed) or ``kafka`` (Kafka only).
        progress: show a tqdm bar (default: for Kafka reads over 50k records on a terminal).
        slack: Kafka only: the seek lands this much before ``start`` in Kafka's record
            time (when that finds nothing, the whole topic is scanned); None scans the
            whole topic.
        timeout: give up when no record arrives from Kafka for this many seconds.

    Returns:
        Columns ``sensorId, temperature, humidity, location, timestamp, partition,
        offset`` (see :data:`READ_READING_DTYPES`: ``sensorId`` and ``location`` are
        categoricals with sorted categories, a byte a row), sorted by timestamp (then
        partition, offset), without duplicates. ``attrs``: ``invalid`` (records that failed
        validation, left out; ``invalid_examples`` shows a few), ``source``,
        ``from_archive`` / ``from_kafka`` and ``warnings``.

    Warns:
        ReplayWarning: Kafka only: the period is empty but the topic holds readings
            whose event times fall elsewhere (the message names their range); a sensor
            id was asked for that appears nowhere.

    Raises:
        ReplayError: empty period, missing topic, ``source='archive'`` without archive.
        KafkaUnavailable: Kafka does not answer.
    """
    start, end, sensors, settings = _legacy(start, end, sensors, legacy, settings,
                                            "read_readings")
    return _read(READING_RECORDS, lambda s: s.topic_readings, settings, start, end, sensors,
                 source=source, progress=progress, slack=slack, timeout=timeout)


def read_alerts(start: TimeLike | None = None, end: TimeLike | None = None,
                sensors: Iterable[str] | str | None = None, *legacy: Any,
                **options: Unpack[ReadOptions]) -> pd.DataFrame:
    """The alerts whose reading's event time is in the period (like :func:`read_readings`,
    with the same keyword options).

    Only committed alerts are read (the processor publishes in transactions); an alert
    published twice appears once. Columns: :data:`ALERT_DTYPES`.
    """
    settings = options.pop("settings", None)
    start, end, sensors, settings = _legacy(start, end, sensors, legacy, settings,
                                            "read_alerts")
    return _read(ALERT_RECORDS, lambda s: s.topic_alerts, settings, start, end, sensors,
                 **options)


def tail_readings(settings: Settings | None = None, seconds: float = 5.0, *,
                  since: TimeLike | None = None, max_records: int = 100_000) -> pd.DataFrame:
    """What arrives on the readings topic in the next ``seconds``, like ``tail -f``.

    With ``since`` (e.g. ``"5min ago"``) what arrived from then on is included too, so a
    quiet stream still shows each sensor's latest values. Bounded by time and
    ``max_records``; no consumer group.
    """
    settings = Settings.from_env() if settings is None else settings
    topic = settings.topic_readings
    t0 = to_utc(since)
    frames = tail(settings, topic, READING_RECORDS, seconds=seconds, max_records=max_records,
                  since_ms=None if t0 is None else int(t0.timestamp() * 1000))
    return as_categories(assemble(frames, READING_RECORDS, None, None, None, topic),
                         READ_CATEGORIES)
