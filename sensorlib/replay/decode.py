"""Bulk decoding: raw reading and alert records into typed, validated pandas columns.

The fast path of every replay (and of the archiver): Apache Arrow's JSON reader parses a
block of newline-joined records in one call, and vectorised versions of
:func:`sensorlib.model.events.parse_reading`'s rules validate the columns. Pure — no Kafka, no
clock — so a unit test, the replay and the archive writer decode the same way. Invalid
records are not raised: each gets a ``_reason`` (None when valid), and one bad record
costs a few extra Arrow calls (its block is bisected), not a per-record decode.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from sensorlib.engine.pipeline import ALERT_DTYPES as _FRAME_ALERT_DTYPES
from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.model.limits import (
    HUMIDITY_RANGE,
    MAX_BODY_BYTES,
    MAX_LOCATION,
    MAX_SENSOR_ID,
    TEMPERATURE_RANGE,
    TIMESTAMP_RANGE,
)
from sensorlib.model.rejections import text_problem
from sensorlib.model.times import EPOCH, ONE_US

__all__ = [
    "ALERT_DTYPES",
    "ALERT_RECORDS",
    "READING_DTYPES",
    "READING_RECORDS",
    "READ_CATEGORIES",
    "READ_READING_DTYPES",
    "RecordKind",
    "decode",
    "decode_alerts",
    "decode_readings",
    "empty_alerts",
    "empty_frame",
    "empty_readings",
]

#: Column dtypes of a readings frame (``str`` is pandas' string dtype).
READING_DTYPES: dict[str, str] = {
    "sensorId": "str", "temperature": "float64", "humidity": "float64", "location": "str",
    "timestamp": "datetime64[us, UTC]", "partition": "int32", "offset": "int64",
}
#: The readings columns a *read* holds as categories (:func:`sensorlib.replay.reader.read_readings`,
#: ``tail_readings``): a handful of distinct values over millions of rows, one byte a row
#: instead of a string each (categories sorted, so sorting by them sorts by the text).
READ_CATEGORIES = ("sensorId", "location")
#: Column dtypes of a frame :func:`sensorlib.replay.reader.read_readings` returns.
READ_READING_DTYPES: dict[str, str] = {**READING_DTYPES,
                                       **dict.fromkeys(READ_CATEGORIES, "category")}
#: Column dtypes of an alerts frame (the same as ``pipeline.alerts_to_frame`` plus
#: where each alert was stored).
ALERT_DTYPES: dict[str, str] = {**_FRAME_ALERT_DTYPES, "partition": "int32", "offset": "int64"}

_UTC = "UTC"


@dataclass(frozen=True)
class RecordKind:
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
        """The decoded fields (the frame's columns without ``partition`` and ``offset``)."""
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


#: Readings: the rules of :func:`sensorlib.model.events.parse_reading`.
READING_RECORDS = RecordKind(
    name="reading",
    text={"sensorId": (MAX_SENSOR_ID, True), "location": (MAX_LOCATION, False)},
    numbers={"temperature": TEMPERATURE_RANGE, "humidity": HUMIDITY_RANGE},
    times=("timestamp",),
    choices={},
    dtypes=READING_DTYPES,
    strict_text=True,
    usual="pascal",  # readings travel in the reference .NET producer's PascalCase
)
#: Alerts: required fields, finite numbers, a known severity (they come from our processor).
ALERT_RECORDS = RecordKind(
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
          for kind in (READING_RECORDS, ALERT_RECORDS)
          for spelling in ("camel", "pascal", "both")}
_READ = pajson.ReadOptions(use_threads=False, block_size=1 << 26)
_ARROW_ERROR = re.compile(r"Column\(/?([^)]*)\) changed from (\w+) to (\w+)")


def empty_frame(kind: RecordKind) -> pd.DataFrame:
    """A frame of ``kind`` with no rows and the right column types."""
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in kind.dtypes.items()})


def empty_readings() -> pd.DataFrame:
    """A readings frame with no rows and the right column types."""
    return empty_frame(READING_RECORDS)


def empty_alerts() -> pd.DataFrame:
    """An alerts frame with no rows and the right column types."""
    return empty_frame(ALERT_RECORDS)


def _arrow_reason(exc: Exception) -> str:
    """Turn Arrow's message about one record into a field and a reason."""
    match = _ARROW_ERROR.search(str(exc))
    if match:
        field, expected, got = match.groups()
        if not field:
            return f"body: must be a JSON object, not {got}"
        return f"{field[0].lower() + field[1:]}: must be a {expected}, not {got}"
    return "body: not valid JSON"


def _parse_block(values: list[bytes], kind: RecordKind, spelling: str) -> pa.Table:
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


def _parse_tolerant(values: list[bytes], kind: RecordKind, spelling: str,
                    reasons: dict[int, str], base: int = 0) -> pa.Table:
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


def _validate(table: dict[str, pa.ChunkedArray], frame: pd.DataFrame, kind: RecordKind
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


def decode(values: list[bytes | None], kind: RecordKind, *,
           record_ms: Sequence[int] | np.ndarray | None = None,
           accept: EventTimeWindow | None = None, now_us: int | None = None) -> pd.DataFrame:
    """Decode and validate raw record values: the typed fields plus a ``_reason`` column.

    Readings are held to the one gate (:func:`sensorlib.model.gate.judge`): the columns decide
    only the records they are sure of (well-formed, every key once, a usual timestamp,
    valid); every other record is judged by the gate, which gives its reason — so the
    verdicts and values are the gate's. With ``accept``, the event time must lie in that
    window around each record's Kafka time (``record_ms``; negative or None: ``now_us``).
    """
    n = len(values)
    if n == 0:
        frame = empty_frame(kind).drop(columns=["partition", "offset"])
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
    clean = _utf8_only(clean, first)
    failures: dict[int, str] = {}
    spelling = kind.usual
    if kind is READING_RECORDS and clean and b'"sensorId"' in clean[0]:
        spelling = "camel"  # a camelCase topic (a Python producer, the sample's curl)
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
    if kind is READING_RECORDS:
        data["_stamp_text"] = columns["timestamp"].to_pandas()
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
    reasons = _reasons(n, checks, failures | first)
    if kind is READING_RECORDS:
        _hold_to_gate(values, clean, table, frame, reasons, record_ms, accept, now_us)
    frame["_reason"] = pd.Series(reasons, dtype=object)
    return frame


# The timestamps the columns decide themselves (Arrow's ISO parser agrees with the gate's
# grammar on these); any other form is the gate's to judge.
_USUAL_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?$"
_ODD_TEXT = r'"\s+:|\\u|[^\x00-\x7f]'
_EPOCH_1970 = pd.Timestamp("1970-01-01", tz="UTC")


def _hold_to_gate(values: list[bytes | None], clean: list[bytes], table: pa.Table,
                  frame: pd.DataFrame,
                  reasons: np.ndarray, record_ms: Sequence[int] | np.ndarray | None,
                  accept: EventTimeWindow | None, now_us: int | None) -> None:
    """Let the gate judge every record the columns are not sure of (in place)."""
    from sensorlib.model.gate import judge

    n = len(values)
    unsure = np.not_equal(reasons, None)
    # Every key once, and no other key: as many '":' as fields the columns found (a key
    # given twice, a spaced colon, an escaped quote or an extra key all differ).
    present = np.zeros(n, dtype=np.int64)
    for name in table.column_names:
        valid = table[name].is_valid().to_numpy(zero_copy_only=False)
        present += valid
        other = _pascal(name)
        if other != name and other in table.column_names:  # both spellings of one field
            unsure |= valid & table[other].is_valid().to_numpy(zero_copy_only=False)
    # ``clean``: UTF-8 text (anything else was replaced, and has its reason already).
    text = pa.array(clean, type=pa.binary()).cast(pa.string())
    unsure |= pc.count_substring(text, '":').to_numpy(zero_copy_only=False) != present
    # Escapes and non-ASCII text: rare enough for the gate to judge one by one.
    unsure |= pc.match_substring_regex(text, _ODD_TEXT).to_numpy(zero_copy_only=False)
    stamp = frame["timestamp"]
    text = pa.array(frame.get("_stamp_text", pd.Series([None] * n)), type=pa.string())
    usual = pc.fill_null(pc.match_substring_regex(text, _USUAL_TIME), False)
    unsure |= ~usual.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        unsure |= (stamp < _EPOCH_1970).to_numpy(dtype=bool)  # Arrow truncates toward 0
    if now_us is None:
        now_us = (datetime.now(UTC) - EPOCH) // ONE_US
    if accept is not None:
        low, high = accept.bounds_us(0)
        refs = (np.full(n, -1, dtype=np.int64) if record_ms is None
                else np.asarray(record_ms, dtype=np.int64))
        refs = np.where(refs >= 0, refs * 1000, now_us)
        us = stamp.array.asi8 if hasattr(stamp.array, "asi8") else stamp.to_numpy("int64")
        unsure |= ~((refs + low <= us) & (us <= refs + high))
    if "_stamp_text" in frame:
        del frame["_stamp_text"]
    rows = np.flatnonzero(unsure)
    if not len(rows):
        return
    times = [-1] * n if record_ms is None else list(map(int, record_ms))
    fill: dict[str, list[Any]] = {"sensorId": [], "temperature": [], "humidity": [],
                                  "location": [], "timestamp": []}
    valid_rows: list[int] = []
    for i in rows.tolist():
        got = judge(values[i], times[i], now_us=now_us, accept=accept)
        if isinstance(got, tuple):
            reading = got[0]
            reasons[i] = None
            valid_rows.append(i)
            fill["sensorId"].append(reading.sensor_id)
            fill["temperature"].append(reading.temperature)
            fill["humidity"].append(reading.humidity)
            fill["location"].append(reading.location)
            fill["timestamp"].append(pd.Timestamp(got[1], unit="us", tz="UTC"))
        else:
            reasons[i] = str(got)
    if valid_rows:
        for name, column in fill.items():
            position = frame.columns.get_loc(name)
            frame.iloc[valid_rows, position] = pd.Series(
                column, dtype=frame.dtypes.iloc[position]).to_numpy()


def _utf8_only(values: list[bytes], first: dict[int, str]) -> list[bytes]:
    """``values`` with each value that is not UTF-8 replaced by ``{}`` (its reason in
    ``first``): Arrow would carry the bytes into a string column that cannot be read."""
    if b"".join(values).isascii():
        return values
    out = list(values)
    for i, value in enumerate(values):
        if not value.isascii():
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                first[i] = "body: not valid UTF-8"
                out[i] = b"{}"
    return out


def decode_readings(values: Sequence[bytes | None], *,
                    record_ms: Sequence[int] | np.ndarray | None = None,
                    accept: EventTimeWindow | None = None,
                    now_us: int | None = None) -> pd.DataFrame:
    """Decode reading records in bulk: typed columns plus ``_reason`` (None when valid).

    Accepts camelCase and PascalCase keys; applies the rules of
    :func:`sensorlib.model.events.parse_reading` (required sensorId without control characters,
    finite numbers, humidity 0–100, temperature −100…200, a parseable timestamp, at most
    64 KiB). Records that are not JSON at all only cost their own row.

    >>> df = decode_readings([b'{"SensorId": "s1", "Temperature": 21, "Humidity": 40,'
    ...                       b' "Timestamp": "2026-01-01T12:00:00Z"}', b"garbage"])
    >>> df["sensorId"].tolist(), df["_reason"].tolist()
    (['s1', nan], [None, 'body: not valid JSON'])
    """
    return decode(list(values), READING_RECORDS, record_ms=record_ms, accept=accept,
                  now_us=now_us)


def decode_alerts(values: Sequence[bytes | None]) -> pd.DataFrame:
    """Decode alert records in bulk, like :func:`decode_readings`."""
    return decode(list(values), ALERT_RECORDS)
