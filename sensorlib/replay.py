"""Replay: a topic's history, or a slice of it, into typed pandas DataFrames.

:func:`read_readings` and :func:`read_alerts` use no consumer group (assign + seek), so
they never disturb anyone's committed offsets. They read up to the end offsets as they
were when the call began and return: a topic being written while it is read never makes
them wait. Records are decoded in bulk (Apache Arrow's JSON reader over the joined
values, on a worker thread while the next records are fetched) and validated with
vectorised versions of :func:`sensorlib.events.parse_reading`'s rules; invalid records
are counted (``df.attrs["invalid"]``) and logged, never raised.

>>> readings = read_readings(start="2026-01-01T00:00", end="2026-01-02")   # doctest: +SKIP
>>> aggregates, alerts = run_frame(readings)                                # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict, Unpack

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
from kafka.record.util import crc32c_c as _crc32c_c

from sensorlib.config import Settings
from sensorlib.errors import ReplayError
from sensorlib.events import (
    HUMIDITY_RANGE,
    MAX_BODY_BYTES,
    MAX_LOCATION,
    MAX_SENSOR_ID,
    TEMPERATURE_RANGE,
    TIMESTAMP_RANGE,
    text_problem,
)
from sensorlib.kafka_io import TopicReader
from sensorlib.pipeline import ALERT_DTYPES as _FRAME_ALERT_DTYPES

__all__ = [
    "ALERT_DTYPES",
    "READING_DTYPES",
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

log = logging.getLogger("sensorlib.replay")

#: Column dtypes of :func:`read_readings` (``str`` is pandas' string dtype).
READING_DTYPES: dict[str, str] = {
    "sensorId": "str", "temperature": "float64", "humidity": "float64", "location": "str",
    "timestamp": "datetime64[us, UTC]", "partition": "int32", "offset": "int64",
}
#: Column dtypes of :func:`read_alerts` (the same as ``pipeline.alerts_to_frame`` plus
#: where each alert was stored).
ALERT_DTYPES: dict[str, str] = {**_FRAME_ALERT_DTYPES, "partition": "int32", "offset": "int64"}

#: Records decoded per bulk call (a failing chunk is bisected to find its bad records).
CHUNK = 50_000
#: Reads larger than this show a progress bar when stderr is a terminal.
PROGRESS_THRESHOLD = 50_000
#: How far before ``start`` (in Kafka record time) the seek lands, so readings whose
#: producer clock ran a little ahead of their event time are not skipped.
DEFAULT_SLACK = timedelta(minutes=5)

#: Consumer options of a replay (the benchmark's bare loop uses the same).
CONSUMER_OPTIONS: dict[str, Any] = {
    "max_poll_records": 10_000,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    # kafka-python's pure-Python CRC-32C takes half of a replay's time. Without the C
    # `crc32c` package we rely on TCP checksums and the broker's own CRC validation
    # on append instead; with it, checking is cheap and stays on.
    "check_crcs": _crc32c_c is not None,
    "key_deserializer": None,  # the key is the sensorId, which the value carries too
    "isolation_level": "read_committed",  # alerts are written in transactions
}

TimeLike = datetime | pd.Timestamp | str
#: Decode chunks on a worker thread while the next records are fetched (Arrow's parser
#: releases the GIL); False decodes them after the last poll instead.
OVERLAP = True
_UTC = "UTC"
_BARE_DURATION = re.compile(r"^\d+(\.\d+)?\s*[a-zA-Z]+$")



# -- time ---------------------------------------------------------------------------------


def to_utc(value: TimeLike | None, *, now: pd.Timestamp | None = None) -> pd.Timestamp | None:
    """A UTC :class:`pandas.Timestamp` from a datetime, Timestamp or string (naive = UTC).

    Strings may be ISO-8601, ``now``, ``today`` / ``yesterday`` (UTC midnight) or a
    duration before now such as ``-1h``, ``1h ago`` or ``2 days ago`` (handy in cron
    lines; on a command line write ``--start=-1h`` or ``--start "1h ago"``).

    >>> to_utc("2026-01-01T12:00")
    Timestamp('2026-01-01 12:00:00+0000', tz='UTC')
    >>> str(to_utc("-1h", now=pd.Timestamp("2026-01-01T12:00Z")))
    '2026-01-01 11:00:00+00:00'
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        word = text.lower()
        if word in ("now", "today", "yesterday") or text.startswith("-") or word.endswith(" ago"):
            now = pd.Timestamp.now(tz=_UTC) if now is None else now
            if word == "now":
                return now
            if word in ("today", "yesterday"):
                return now.normalize() - pd.Timedelta(days=1 if word == "yesterday" else 0)
            duration = text[1:] if text.startswith("-") else text[: -len(" ago")]
            try:
                return now - pd.Timedelta(duration.strip())
            except ValueError:
                raise ReplayError(f"not a duration: {value!r} (try '-1h', '1h ago' "
                                  "or '2 days ago')") from None
        if _BARE_DURATION.match(text):
            # pandas reads "1h" as 01:00 in year 1: almost surely "an hour ago" was meant.
            raise ReplayError(f"{value!r} is a duration, not a time: write '-{text}' or "
                              f"'{text} ago' for a time before now")
        try:
            ts = pd.Timestamp(text)
        except ValueError:
            raise ReplayError(f"not a time: {value!r} (use ISO-8601, e.g. "
                              "'2026-01-01T12:00:00Z', or 'now', 'today', '-1h')") from None
    else:
        ts = pd.Timestamp(value)
    if pd.isna(ts):
        raise ReplayError(f"not a time: {value!r}")
    return ts.tz_localize(_UTC) if ts.tzinfo is None else ts.tz_convert(_UTC)


def resolve_period(start: TimeLike | None, end: TimeLike | None
                   ) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """``(start, end)`` as UTC Timestamps (None = unbounded); raises if end <= start."""
    now = pd.Timestamp.now(tz=_UTC)
    t0, t1 = to_utc(start, now=now), to_utc(end, now=now)
    if t0 is not None and t1 is not None and t1 <= t0:
        raise ReplayError(f"the period is empty: end ({t1.isoformat()}) is not after "
                          f"start ({t0.isoformat()})")
    return t0, t1


# -- decoding (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    """The shape of one record type: its text, number and time fields and their rules."""

    name: str
    text: dict[str, tuple[int, bool]]  # field -> (max length, required and not blank)
    numbers: dict[str, tuple[float, float] | None]  # field -> inclusive range, or any finite
    times: tuple[str, ...]
    choices: dict[str, frozenset[str]]
    dtypes: dict[str, str]
    strict_text: bool  # length and control-character rules (readings) or presence only
    usual: str  # the spelling most records use: parsed first, alone ("camel" / "pascal")

    @property
    def fields(self) -> list[str]:
        return [c for c in self.dtypes if c not in ("partition", "offset")]

    def schema(self, spelling: str) -> pa.Schema:
        """Arrow's parse schema: ``camel`` keys, ``pascal`` keys or ``both``."""
        out = []
        for name in self.fields:
            kind = pa.float64() if name in self.numbers else pa.string()
            if spelling in ("camel", "both"):
                out.append((name, kind))
            if spelling in ("pascal", "both"):  # the .NET producer's spelling
                out.append((_pascal(name), kind))
        return pa.schema(out)


def _pascal(name: str) -> str:
    return name[0].upper() + name[1:]


_READINGS = _Kind(
    name="reading",
    text={"sensorId": (MAX_SENSOR_ID, True), "location": (MAX_LOCATION, False)},
    numbers={"temperature": TEMPERATURE_RANGE, "humidity": HUMIDITY_RANGE},
    times=("timestamp",),
    choices={},
    dtypes=READING_DTYPES,
    strict_text=True,
    usual="pascal",  # readings travel in the reference .NET producer's PascalCase
)
_ALERTS = _Kind(
    name="alert",
    text={name: (1 << 30, name != "location")
          for name in ("alertId", "sensorId", "location", "rule", "severity", "reason")},
    numbers={"temperature": None, "humidity": None},
    times=("timestamp", "detectedAt"),
    choices={"severity": frozenset({"warning", "critical"})},
    dtypes=ALERT_DTYPES,
    strict_text=False,
    usual="camel",
)
# The usual spelling's columns only, unless a block really holds the other spelling
# too (then both): every extra column in the explicit schema makes Arrow's parse slower.
_PARSE = {(kind.name, spelling): pajson.ParseOptions(explicit_schema=kind.schema(spelling),
                                                     unexpected_field_behavior="ignore",
                                                     newlines_in_values=False)
          for kind in (_READINGS, _ALERTS) for spelling in ("camel", "pascal", "both")}
_READ = pajson.ReadOptions(use_threads=False, block_size=1 << 26)
_ARROW_ERROR = re.compile(r"Column\(/?([^)]*)\) changed from (\w+) to (\w+)")


def _empty(kind: _Kind) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in kind.dtypes.items()})


def empty_readings() -> pd.DataFrame:
    """A readings frame with no rows and the right column types."""
    return _empty(_READINGS)


def empty_alerts() -> pd.DataFrame:
    """An alerts frame with no rows and the right column types."""
    return _empty(_ALERTS)


def _arrow_reason(exc: Exception) -> str:
    """Turn Arrow's message about one record into a field and a reason."""
    match = _ARROW_ERROR.search(str(exc))
    if match:
        field, expected, got = match.groups()
        if not field:
            return f"body: must be a JSON object, not {got}"
        return f"{field[0].lower() + field[1:]}: must be a {expected}, not {got}"
    return "body: not valid JSON"


def _parse_block(values: list[bytes], kind: _Kind, spelling: str) -> pa.Table:
    """One Arrow call over newline-joined records; raises when any record is bad."""
    buf = b"\n".join(values)
    if buf.count(b"\n") != len(values) - 1 or b"\r" in buf:
        # A raw newline is only legal JSON as whitespace, so a space does as well.
        values = [v.replace(b"\n", b" ").replace(b"\r", b" ") for v in values]
        buf = b"\n".join(values)
    table = pajson.read_json(io.BytesIO(buf), read_options=_READ,
                             parse_options=_PARSE[kind.name, spelling])
    if table.num_rows != len(values):  # e.g. two objects in one record
        raise pa.ArrowInvalid("a record holds more than one JSON value")
    return table


_LEAF = 32


def _parse_tolerant(values: list[bytes], kind: _Kind, spelling: str, reasons: dict[int, str],
                    base: int = 0) -> pa.Table:
    """Parse ``values``; bad records become empty rows, their reasons go to ``reasons``.

    Bisects a failing block so one bad record costs a few extra Arrow calls, not a
    per-record decode of the whole read.
    """
    try:
        return _parse_block(values, kind, spelling)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    if len(values) > _LEAF:
        half = len(values) // 2
        return pa.concat_tables([
            _parse_tolerant(values[:half], kind, spelling, reasons, base),
            _parse_tolerant(values[half:], kind, spelling, reasons, base + half),
        ])
    tables = []
    for i, value in enumerate(values):
        try:
            tables.append(_parse_block([value], kind, spelling))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            reasons[base + i] = _arrow_reason(exc)
            tables.append(_parse_block([b"{}"], kind, spelling))
    return pa.concat_tables(tables)


def _times(column: pa.ChunkedArray) -> pd.Series:
    """ISO-8601 strings to UTC microseconds; unparseable ones become NaT."""
    try:
        # Arrow's cast is fast but rejects naive times: pandas does the rest (naive = UTC).
        ts = pc.cast(pc.cast(column, pa.timestamp("ns", tz=_UTC)), pa.timestamp("us", tz=_UTC),
                     safe=False)
        return ts.to_pandas().astype("datetime64[us, UTC]")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = pd.to_datetime(column.to_pandas(), utc=True, format="ISO8601", errors="coerce")
        return parsed.astype("datetime64[us, UTC]")


def _text_checks(name: str, column: pa.ChunkedArray, limit: int, required: bool, strict: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(missing-or-blank, malformed) masks of a text column.

    The rules run once per distinct value (a topic has few sensor ids and locations),
    then map back to the rows through the dictionary indices.
    """
    encoded = column.combine_chunks().dictionary_encode()
    distinct = encoded.dictionary.to_pylist()
    missing = encoded.is_null().to_numpy(zero_copy_only=False)
    if not strict:
        return missing, np.zeros(len(encoded), dtype=bool)
    blank = np.array([not v.strip() for v in distinct] + [False], dtype=bool)
    malformed = np.array([len(v) > limit or text_problem(name, v) is not None for v in distinct]
                         + [False], dtype=bool)
    idx = encoded.indices.fill_null(len(distinct)).to_numpy()
    return (missing | blank[idx]) if required else missing, malformed[idx]


def _validate(table: dict[str, pa.ChunkedArray], frame: pd.DataFrame, kind: _Kind
              ) -> list[tuple[np.ndarray, str]]:
    """Each rule as (rows breaking it, reason), in the order parse_reading reports them."""
    checks: list[tuple[np.ndarray, str]] = []
    for name, (limit, required) in kind.text.items():
        missing, malformed = _text_checks(name, table[name], limit, required, kind.strict_text)
        if required:
            checks.append((missing, f"{name}: required"))
        if kind.strict_text:
            size = f"at most {limit} characters, " if limit < 1 << 30 else ""
            rule = f"{name}: {size}no control, invisible, bidi or line separator characters"
            checks.append((malformed, rule))
    for name, bounds in kind.numbers.items():
        values = frame[name].to_numpy(dtype="float64")
        checks.append((np.isnan(values), f"{name}: required (a finite number)"))
        checks.append((np.isinf(values), f"{name}: must be a finite number"))
        if bounds is not None:
            low, high = bounds
            with np.errstate(invalid="ignore"):
                out = (values < low) | (values > high)
            checks.append((out, f"{name}: must be between {low:g} and {high:g}"))
    low, high = (pd.Timestamp(t) for t in TIMESTAMP_RANGE)
    for name in kind.times:
        checks.append((frame[name].isna().to_numpy(), f"{name}: required (ISO-8601)"))
        if kind.strict_text:  # readings: the absolute range parse_reading enforces
            with np.errstate(invalid="ignore"):
                out = ((frame[name] < low) | (frame[name] >= high)).to_numpy(dtype=bool)
            checks.append((out, f"{name}: must be in the years {low.year} to {high.year - 1}"))
    for name, allowed in kind.choices.items():
        checks.append((~frame[name].isin(allowed).to_numpy(),
                       f"{name}: must be one of {sorted(allowed)}"))
    return checks


def _reasons(n: int, checks: list[tuple[np.ndarray, str]], first: dict[int, str]) -> np.ndarray:
    """The first reason each row is invalid (None when valid); ``first`` wins over checks."""
    out = np.full(n, None, dtype=object)
    bad = np.zeros(n, dtype=bool)
    for mask, _ in checks:
        bad |= mask
    if bad.any():  # rare: only then is a reason worked out per row
        unset = bad.copy()
        for mask, reason in checks:
            hit = unset & mask
            if hit.any():
                out[hit] = reason
                unset &= ~hit
    for i, reason in first.items():
        out[i] = reason
    return out


def _decode(values: list[bytes | None], kind: _Kind) -> pd.DataFrame:
    """Decode and validate raw record values: the typed fields plus a ``_reason`` column."""
    n = len(values)
    if n == 0:
        frame = _empty(kind).drop(columns=["partition", "offset"])
        frame["_reason"] = pd.Series([], dtype=object)
        return frame
    first: dict[int, str] = {}
    try:
        sizes = np.fromiter(map(len, values), dtype=np.int64, count=n)  # type: ignore[arg-type]
    except TypeError:  # a tombstone (None) somewhere: the slow way
        sizes = np.array([-1 if v is None else len(v) for v in values], dtype=np.int64)
    clean: list[bytes] = values  # type: ignore[assignment]
    odd = np.flatnonzero((sizes <= 0) | (sizes > MAX_BODY_BYTES))
    if len(odd):
        clean = list(clean)
        for i in odd.tolist():
            size = int(sizes[i])
            first[i] = ("body: not a JSON object (tombstone)" if size < 0 else "body: empty"
                        if size == 0 else f"body: larger than 64 KiB ({MAX_BODY_BYTES} bytes)")
            clean[i] = b"{}"
    failures: dict[int, str] = {}
    spelling = kind.usual
    table = _parse_tolerant(clean, kind, spelling, failures)
    key = next(iter(kind.text))  # sensorId / alertId: required, so null means look again
    usual_key = key if spelling == "camel" else _pascal(key)
    if table[usual_key].null_count > len(failures) + len(first):
        # The other spelling somewhere (older camelCase history, or a foreign producer):
        # parse again with both; camelCase wins where a record has both, as in
        # parse_reading.
        spelling, failures = "both", {}
        table = _parse_tolerant(clean, kind, spelling, failures)
    columns: dict[str, pa.ChunkedArray] = {}
    for name in kind.fields:
        columns[name] = (pc.coalesce(table[name], table[_pascal(name)]) if spelling == "both"
                         else table[name if spelling == "camel" else _pascal(name)])
    data: dict[str, Any] = {}
    for name, column in columns.items():
        if name in kind.times:
            data[name] = _times(column)
        elif name in kind.numbers:
            data[name] = column.to_pandas().astype("float64")
        else:
            data[name] = column.to_pandas().astype("str")
    frame = pd.DataFrame(data)
    checks = _validate(columns, frame, kind)
    if "location" in frame:
        frame["location"] = frame["location"].fillna("")
    frame["_reason"] = pd.Series(_reasons(n, checks, failures | first), dtype=object)
    return frame


def decode_readings(values: Sequence[bytes | None]) -> pd.DataFrame:
    """Decode reading records in bulk: typed columns plus ``_reason`` (None when valid).

    Accepts camelCase and PascalCase keys; applies the rules of
    :func:`sensorlib.events.parse_reading` (required sensorId without control characters,
    finite numbers, humidity 0–100, temperature −100…200, a parseable timestamp, at most
    64 KiB). Records that are not JSON at all only cost their own row.

    >>> df = decode_readings([b'{"SensorId": "s1", "Temperature": 21, "Humidity": 40,'
    ...                       b' "Timestamp": "2026-01-01T12:00:00Z"}', b"garbage"])
    >>> df["sensorId"].tolist(), df["_reason"].tolist()
    (['s1', nan], [None, 'body: not valid JSON'])
    """
    return _decode(list(values), _READINGS)


def decode_alerts(values: Sequence[bytes | None]) -> pd.DataFrame:
    """Decode alert records in bulk, like :func:`decode_readings`."""
    return _decode(list(values), _ALERTS)


# -- reading from Kafka ----------------------------------------------------------------------


@dataclass
class _Chunk:
    values: list[bytes | None]
    partitions: list[int]
    offsets: list[int]


def _decode_chunk(chunk: _Chunk, kind: _Kind) -> pd.DataFrame:
    frame = _decode(chunk.values, kind)
    frame["partition"] = np.asarray(chunk.partitions, dtype=np.int32)
    frame["offset"] = np.asarray(chunk.offsets, dtype=np.int64)
    return frame


def _show_progress(progress: bool | None, total: int) -> bool:
    if progress is not None:
        return progress
    return total > PROGRESS_THRESHOLD and sys.stderr.isatty()


def _fetch(settings: Settings, topic: str, start: pd.Timestamp | None, kind: _Kind, *,
           progress: bool | None, slack: timedelta, timeout: float,
           offsets: dict[int, int] | None = None) -> list[pd.DataFrame]:
    """Read ``topic`` from ``start`` (record time, minus ``slack``) to its current end.

    With ``offsets`` (partition -> first offset, e.g. where the archive ends) the read
    starts there instead; partitions not in it are read from their beginning.

    Decoding runs on a worker thread (Arrow releases the GIL) while the next records
    are fetched, so bulk decoding costs little more than consuming.
    """
    since_ms = (None if start is None or offsets is not None
                else int((start - pd.Timedelta(slack)).timestamp() * 1000))
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sensorlib-replay")
    futures: list[Future[pd.DataFrame]] = []
    pending: list[_Chunk] = []
    bar = None
    reader = TopicReader(settings, topic, since_ms=since_ms, offsets=offsets,
                         idle_timeout=timeout, client_id=f"sensorlib-replay-{kind.name}s",
                         **CONSUMER_OPTIONS)
    try:
        with reader:
            if not reader.exists:
                raise ReplayError(f"topic {topic!r} does not exist at "
                                  f"{settings.bootstrap_servers}; create the topics with "
                                  "`sensorlib topics` (or check SENSORLIB_TOPIC_READINGS / "
                                  "SENSORLIB_TOPIC_ALERTS)")
            total = reader.total
            if total == 0:
                return []
            if _show_progress(progress, total):
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="rec", unit_scale=True, desc=f"replay {topic}")
            # Small enough that the last chunk, decoded after the final poll, is quick.
            chunk_size = min(CHUNK, max(2_000, total // 10))
            chunk = _Chunk([], [], [])
            for partition, records in reader:
                chunk.values.extend([r.value for r in records])
                chunk.offsets.extend([r.offset for r in records])
                chunk.partitions.extend([partition] * len(records))
                if bar is not None:
                    bar.update(len(records))
                if len(chunk.values) >= chunk_size:
                    if OVERLAP:
                        futures.append(pool.submit(_decode_chunk, chunk, kind))
                    else:
                        pending.append(chunk)
                    chunk = _Chunk([], [], [])
            if chunk.values:
                pending.append(chunk)
        return [f.result() for f in futures] + [_decode_chunk(c, kind) for c in pending]
    finally:
        if bar is not None:
            bar.close()
        pool.shutdown(wait=True, cancel_futures=True)


def _assemble(frames: list[pd.DataFrame], kind: _Kind, start: pd.Timestamp | None,
              end: pd.Timestamp | None, sensors: Iterable[str] | None, topic: str
              ) -> pd.DataFrame:
    """Filter, order, de-duplicate and count what :func:`_fetch` decoded."""
    if not frames:
        out = _empty(kind)
        out.attrs.update(topic=topic, invalid=0, invalid_examples=[], duplicates=0, seen=0,
                         seen_first=None, seen_last=None, seen_sensors=[])
        return out
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    ts = frame["timestamp"]
    seen_valid = frame["_reason"].isna().to_numpy()
    seen = {"seen": int(seen_valid.sum()),
            "seen_first": ts[seen_valid].min().isoformat() if seen_valid.any() else None,
            "seen_last": ts[seen_valid].max().isoformat() if seen_valid.any() else None,
            "seen_sensors": sorted(frame.loc[seen_valid, "sensorId"].dropna().unique().tolist())}
    # Rows outside the period or the sensors are left out, valid or not; a row whose
    # time or sensor cannot be read is kept (and counted as invalid).
    keep = np.ones(len(frame), dtype=bool)
    if start is not None:
        keep &= ~(ts < start).to_numpy()
    if end is not None:
        keep &= ~(ts >= end).to_numpy()
    if sensors is not None:
        wanted = list(sensors)
        sid = frame["sensorId"]
        keep &= (sid.isin(wanted) | sid.isna()).to_numpy()
    reason = frame["_reason"]
    bad = keep & reason.notna().to_numpy()
    invalid = int(bad.sum())
    examples = [f"partition {p} offset {o}: {r}" for p, o, r in
                frame.loc[bad, ["partition", "offset", "_reason"]].head(5).itertuples(index=False)]
    frame = frame.loc[keep & ~bad].drop(columns="_reason")
    # Stable order: event time, then where the record was stored.
    order = np.lexsort((frame["offset"].to_numpy(), frame["partition"].to_numpy(),
                        frame["timestamp"].array.asi8))
    frame = frame.iloc[order]
    p, o = frame["partition"].to_numpy(), frame["offset"].to_numpy()
    dup = np.zeros(len(frame), dtype=bool)
    dup[1:] = (p[1:] == p[:-1]) & (o[1:] == o[:-1])
    if "alertId" in frame:  # a re-published alert is the same alert
        dup |= frame["alertId"].duplicated().to_numpy()
    duplicates = int(dup.sum())
    if duplicates:
        frame = frame.loc[~dup]
    frame = frame.reset_index(drop=True)[list(kind.dtypes)]
    frame.attrs.update(topic=topic, invalid=invalid, invalid_examples=examples,
                       duplicates=duplicates, **seen)
    if invalid:
        log.warning("%d invalid %s record(s) in %s were skipped, e.g. %s",
                    invalid, kind.name, topic, "; ".join(examples[:3]))
    return frame


class ReplayWarning(UserWarning):
    """A replay found nothing where something was expected (shown, never raised)."""


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


def _span(first: Any, last: Any) -> str:
    return f"{pd.Timestamp(first).isoformat()} to {pd.Timestamp(last).isoformat()}"


def _warn(frame: pd.DataFrame, message: str) -> None:
    frame.attrs.setdefault("warnings", []).append(message)
    warnings.warn(message, ReplayWarning, stacklevel=4)


def _check_sensors(frame: pd.DataFrame, sensors: list[str] | None, known: Callable[[], set[str]],
                   kind: _Kind) -> None:
    if not sensors:
        return
    missing = sorted(set(sensors) - set(frame["sensorId"].unique().tolist()))
    if not missing:
        return
    ids = known()
    unknown = [s for s in missing if s not in ids]
    if unknown:
        shown = ", ".join(sorted(ids)[:20]) + (" …" if len(ids) > 20 else "") if ids else "none"
        _warn(frame, f"unknown sensor id(s) {', '.join(map(repr, unknown))}: no {kind.name}s "
                     f"from them were found; known sensor ids: {shown}")


class ReadOptions(TypedDict, total=False):
    """The keyword options of :func:`read_readings` and :func:`read_alerts`."""

    settings: Settings | None
    source: Source
    progress: bool | None
    slack: timedelta | None
    timeout: float


def _read(kind: _Kind, topic_of: Callable[[Settings], str], settings: Settings | None,
          start: TimeLike | None, end: TimeLike | None, sensors: Iterable[str] | str | None,
          *, source: str = "auto", progress: bool | None = None,
          slack: timedelta | None = DEFAULT_SLACK, timeout: float = 30.0) -> pd.DataFrame:
    from sensorlib import history

    if source not in _SOURCES:
        raise ReplayError(f"source must be one of {', '.join(_SOURCES)}, got {source!r}")
    settings = Settings.from_env() if settings is None else settings
    t0, t1 = resolve_period(start, end)
    if isinstance(sensors, str):
        sensors = [sensors]
    wanted = None if sensors is None else list(sensors)
    topic = topic_of(settings)
    table_kind = history.READINGS if kind is _READINGS else history.ALERTS
    archived = None
    if source in ("auto", "archive"):
        archived = history.scan(settings, table_kind, t0, t1, wanted, kind.dtypes)
        if archived is None and source == "archive":
            raise ReplayError(f"there is no archive of {topic!r} in {settings.warehouse}; run "
                              "`sensorlib archive` (or read with source='kafka')")
    if archived is not None:
        frames = [archived.frame.assign(_reason=None)]
        tail: list[pd.DataFrame] = []
        if source == "auto":
            tail = _fetch(settings, topic, None, kind, progress=progress, slack=timedelta(0),
                          timeout=timeout, offsets=archived.offsets)
        out = _assemble(frames + tail, kind, t0, t1, wanted, topic)
        out.attrs.update(source="archive" if source == "archive" else "archive+kafka",
                         from_archive=len(archived.frame),
                         from_kafka=int(sum(len(f) for f in tail)),
                         archive_offsets={str(p): o for p, o in archived.offsets.items()},
                         snapshot_id=archived.snapshot_id)

        def known() -> set[str]:
            return history.known_sensors(settings) | set(out.attrs["seen_sensors"])
    else:
        frames = _fetch(settings, topic, t0 if slack is not None else None, kind,
                        progress=progress, slack=slack or timedelta(0), timeout=timeout)
        out = _assemble(frames, kind, t0, t1, wanted, topic)
        if out.empty and slack is not None and t0 is not None and not frames:
            # The seek by record time found nothing after start: records written before
            # may still carry event times in the period (clocks ahead, buffered data).
            frames = _fetch(settings, topic, None, kind, progress=progress,
                            slack=timedelta(0), timeout=timeout)
            out = _assemble(frames, kind, t0, t1, wanted, topic)
        out.attrs.update(source="kafka", from_archive=0, from_kafka=int(sum(map(len, frames))))
        if out.empty and out.attrs["seen"]:
            _warn(out, f"no {kind.name}s with event times in the period "
                       f"({'-inf' if t0 is None else t0.isoformat()} to "
                       f"{'+inf' if t1 is None else t1.isoformat()}), but {topic} holds "
                       f"{out.attrs['seen']:,} whose event times run from "
                       f"{_span(out.attrs['seen_first'], out.attrs['seen_last'])}")

        def known() -> set[str]:
            return set(out.attrs["seen_sensors"])
    _check_sensors(out, wanted, known, kind)
    out.attrs.update(start=None if t0 is None else t0.isoformat(),
                     end=None if t1 is None else t1.isoformat())
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

    From the archive (:mod:`sensorlib.archive`'s Iceberg table) for the offsets it
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
        offset`` (see :data:`READING_DTYPES`), sorted by timestamp (then partition,
        offset), without duplicates. ``attrs``: ``invalid`` (records that failed
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
    return _read(_READINGS, lambda s: s.topic_readings, settings, start, end, sensors,
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
    return _read(_ALERTS, lambda s: s.topic_alerts, settings, start, end, sensors, **options)


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
    chunk = _Chunk([], [], [])
    with TopicReader(settings, topic, follow=seconds, client_id="sensorlib-tail",
                     last=0 if t0 is None else None,  # from now on, unless since
                     since_ms=None if t0 is None else int(t0.timestamp() * 1000),
                     **CONSUMER_OPTIONS) as reader:
        if not reader.exists:
            raise ReplayError(f"topic {topic!r} does not exist at {settings.bootstrap_servers}")
        for partition, records in reader:
            chunk.values.extend([r.value for r in records])
            chunk.offsets.extend([r.offset for r in records])
            chunk.partitions.extend([partition] * len(records))
            if len(chunk.values) >= max_records:
                break
    frames = [_decode_chunk(chunk, _READINGS)] if chunk.values else []
    return _assemble(frames, _READINGS, None, None, None, topic)


# -- analysis helpers (thin; the notebooks call these) ------------------------------------


def replay_rules(df: pd.DataFrame, rules: Any = None, *, window: timedelta | None = None,
                 tick_every: timedelta | None = None) -> pd.DataFrame:
    """The alerts the live rules raise over a readings frame (``pipeline.run_frame``).

    ``rules`` is a :class:`sensorlib.detect.RuleConfig` (default: the live defaults).
    """
    from sensorlib.detect import RuleConfig
    from sensorlib.pipeline import DEFAULT_TICK, run_frame
    from sensorlib.windows import DEFAULT_WINDOW

    _, alerts = run_frame(df, window=window or DEFAULT_WINDOW, rules=rules or RuleConfig(),
                          tick_every=DEFAULT_TICK if tick_every is None else tick_every)
    return alerts


def compare_rules(df: pd.DataFrame, variants: dict[str, Any]) -> pd.DataFrame:
    """Alert counts per rule (rows) for each named RuleConfig (columns), with a total row.

    >>> compare_rules(readings, {"35 °C": RuleConfig(),                   # doctest: +SKIP
    ...                          "33 °C": RuleConfig(temperature_threshold=33)})
    """
    counts = {name: replay_rules(df, rules)["rule"].value_counts() for name, rules in variants.items()}
    table = pd.DataFrame(counts).fillna(0).astype("int64")
    table = table.sort_index()
    table.loc["total"] = table.sum()
    table.index.name = "rule"
    return table


def latest_by_sensor(df: pd.DataFrame) -> pd.DataFrame:
    """Each sensor's newest reading with its dashboard status (critical/warning/normal)."""
    from sensorlib.events import status_of

    if df.empty:
        out = df.loc[:, ["sensorId", "location", "temperature", "humidity", "timestamp"]].copy()
        out["status"] = pd.Series([], dtype="str")
        return out.reset_index(drop=True)
    latest = (df.sort_values("timestamp", kind="stable").groupby("sensorId").tail(1)
              .sort_values("sensorId")[["sensorId", "location", "temperature", "humidity",
                                        "timestamp"]].reset_index(drop=True))
    latest["status"] = [status_of(t, h) for t, h in zip(latest["temperature"],
                                                         latest["humidity"], strict=True)]
    return latest


def rolling_stats(df: pd.DataFrame, window: str = "5min") -> pd.DataFrame:
    """Per-sensor time-based rolling mean and std of temperature and humidity.

    Rows keep the frame's order of timestamps; columns ``sensorId``, ``timestamp`` and
    ``<field>_mean`` / ``<field>_std``.
    """
    ordered = df.sort_values(["sensorId", "timestamp"], kind="stable")
    rolled = (ordered.set_index("timestamp").groupby("sensorId")[["temperature", "humidity"]]
              .rolling(window).agg(["mean", "std"]))
    rolled.columns = [f"{field}_{stat}" for field, stat in rolled.columns]
    return rolled.reset_index().sort_values("timestamp", kind="stable").reset_index(drop=True)
