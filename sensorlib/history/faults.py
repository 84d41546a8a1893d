"""Fault labels in the archive: the simulator's ``sensor-faults`` topic as the ``faults`` table.

The simulator publishes each fault it injects (:class:`~sensorlib.ingest.simulate.FaultLabel`,
:meth:`~sensorlib.ingest.simulate.FaultLabel.to_json`) on ``Settings.topic_faults``; the
archiver keeps them next to the readings and alerts (:data:`sensorlib.history.query.FAULTS`:
columns ``kind, sensor_id, event_time`` — the fault's start — ``end_time, detail`` and the
Kafka columns), so ``sensorlib sql`` can query them (``select * from faults``) and a backtest
over archived history scores its rules against them (:func:`read_faults`).

:func:`decode_faults` is pure (bytes in, a frame out); :func:`read_faults` reads the table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sensorlib.config import Settings

__all__ = ["FAULT_DTYPES", "decode_faults", "read_faults"]

#: The columns of a labels frame (:func:`~sensorlib.ingest.simulate.labels_to_frame`'s).
FAULT_DTYPES: dict[str, str] = {"kind": "object", "sensorId": "object",
                                "start": "datetime64[us, UTC]", "end": "datetime64[us, UTC]",
                                "detail": "float64"}


#: The largest label record decoded (a label is ~150 bytes).
MAX_LABEL = 16 * 1024


def _one(value: bytes | None) -> tuple[tuple[Any, ...] | None, str | None]:
    """One record: (kind, sensorId, start, end, detail) or None, and why not."""
    from sensorlib.ingest.simulate import FAULT_KINDS
    from sensorlib.model.limits import TIMESTAMP_RANGE
    from sensorlib.model.rejections import text_problem

    if value is None:
        return None, "body: not a JSON object (tombstone)"
    if len(value) > MAX_LABEL:
        return None, f"body: {len(value):,} bytes, more than {MAX_LABEL:,}"
    try:
        body = json.loads(value)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        return None, f"body: not JSON ({str(exc)[:200]})"
    if not isinstance(body, dict):
        return None, "body: not a JSON object"
    kind, sensor, detail = body.get("kind"), body.get("sensorId"), body.get("detail", 0.0)
    if kind not in FAULT_KINDS:
        return None, f"kind: not one of {', '.join(FAULT_KINDS)}"
    if not isinstance(sensor, str) or not sensor.strip():
        return None, "sensorId: missing or blank"
    problem = text_problem("sensorId", sensor) if len(sensor) <= 64 else "longer than 64"
    if problem is not None:  # what a reading's sensorId may be, a label's may be
        return None, f"sensorId: {problem}"
    if (isinstance(detail, bool) or not isinstance(detail, int | float)
            or not -1e300 < detail < 1e300):  # NaN fails too; a 500-digit int is not a float
        return None, "detail: not a finite number"
    times = []
    for name in ("start", "end"):
        try:
            stamp = pd.Timestamp(body.get(name))
        except pd.errors.OutOfBoundsDatetime:
            return None, f"{name}: outside the years pandas holds (1677-2262)"
        except (TypeError, ValueError, OverflowError):
            return None, f"{name}: not an ISO 8601 time"
        if stamp is pd.NaT or stamp.tzinfo is None:
            return None, f"{name}: not an ISO 8601 time with a UTC offset"
        stamp = stamp.tz_convert("UTC")
        if not TIMESTAMP_RANGE[0] <= stamp < TIMESTAMP_RANGE[1]:  # a reading's own bounds
            return None, (f"{name}: must be in the years {TIMESTAMP_RANGE[0].year} to "
                          f"{TIMESTAMP_RANGE[1].year - 1}")
        times.append(stamp)
    if times[1] < times[0]:
        return None, "end: before start"
    return (kind, sensor, times[0], times[1], float(detail)), None


def decode_faults(values: Sequence[bytes | None]) -> pd.DataFrame:
    """The ``sensor-faults`` records as a labels frame (:data:`FAULT_DTYPES`) plus
    ``_reason``: None for a valid label, else why it is not one (``field: reason``). A few
    labels an hour: decoded one by one."""
    rows: list[tuple[Any, ...]] = []
    reasons: list[str | None] = []
    for value in values:
        row, reason = _one(value)
        rows.append(row or (None, None, pd.NaT, pd.NaT, math.nan))
        reasons.append(reason)
    frame = pd.DataFrame(rows, columns=list(FAULT_DTYPES))
    frame = frame.astype(FAULT_DTYPES) if len(frame) else _empty()
    frame["_reason"] = pd.Series(reasons, dtype=object, index=frame.index)
    return frame


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in FAULT_DTYPES.items()})


def read_faults(settings: Settings | None = None, start: Any = None, end: Any = None,
                ) -> pd.DataFrame:
    """The archived fault labels that overlap ``[start, end)`` (None: open), as a labels
    frame (:data:`FAULT_DTYPES`, ordered by start); empty when nothing is archived. A label
    archived twice (the same kind, sensor and start: a back-fill run again) counts once.
    """
    from sensorlib.history.query import FAULTS, scan
    from sensorlib.replay.periods import to_utc

    settings = Settings.from_env() if settings is None else settings
    t0, t1 = to_utc(start), to_utc(end)
    scanned = scan(settings, FAULTS, None, t1, None, FAULT_DTYPES)
    if scanned is None:
        return _empty()
    frame = scanned.frame
    if t0 is not None:
        frame = frame[frame["end"] >= t0]
    frame = frame.drop_duplicates(subset=["kind", "sensorId", "start"], keep="last")
    return frame.sort_values(["start", "sensorId"], kind="stable").reset_index(drop=True)
