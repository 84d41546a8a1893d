"""Replay frames: decoded chunks into the frame a replay returns, and what it says about itself.

:func:`assemble` keeps the period's rows (by event time) and the wanted sensors, orders
them by event time then storage position, drops duplicates (the same partition and
offset read twice, or an alert published twice) and counts what it left out in
``frame.attrs`` (``invalid``, ``invalid_examples``, ``duplicates``, ``seen*``).
:func:`warn` and :func:`check_sensors` add the warnings a surprising result deserves.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from sensorlib.replay.decode import RecordKind, empty_frame

__all__ = ["ReplayWarning", "as_categories", "assemble", "check_sensors", "warn"]

log = logging.getLogger("sensorlib.replay.reader")


def _sorted_categories(values: Iterable[str]) -> pd.CategoricalDtype:
    return pd.CategoricalDtype(pd.Index(sorted(set(values)), dtype="str"))


def _is(series: pd.Series, dtype: pd.CategoricalDtype) -> bool:
    """Whether ``series`` has exactly ``dtype``'s categories in its order (pandas calls two
    unordered category sets equal in any order)."""
    return (isinstance(series.dtype, pd.CategoricalDtype)
            and series.cat.categories.dtype == dtype.categories.dtype
            and series.cat.categories.equals(dtype.categories))


def _to(series: pd.Series, dtype: pd.CategoricalDtype) -> pd.Series:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.set_categories(dtype.categories)
    return series.astype(dtype)


def as_categories(frame: pd.DataFrame, columns: Iterable[str],
                  like: pd.DataFrame | None = None) -> pd.DataFrame:
    """``frame`` with ``columns`` as categoricals whose categories are sorted text (in place
    and returned); with ``like``, the categories are the union of both frames' and ``like``
    is given them too, so the two concatenate as categoricals."""
    for column in columns:
        if column not in frame:
            continue
        series = frame[column]
        values = (series.cat.categories if isinstance(series.dtype, pd.CategoricalDtype)
                  else series.dropna().unique())
        found = [str(v) for v in values]
        if like is not None and column in like:
            other = like[column]
            found += [str(v) for v in (other.cat.categories if isinstance(
                other.dtype, pd.CategoricalDtype) else other.dropna().unique())]
        dtype = _sorted_categories(found)
        if not _is(series, dtype):
            frame[column] = _to(series, dtype)
        if like is not None and column in like and not _is(like[column], dtype):
            like[column] = _to(like[column], dtype)
    return frame


def assemble(frames: list[pd.DataFrame], kind: RecordKind, start: pd.Timestamp | None,
             end: pd.Timestamp | None, sensors: Iterable[str] | None, topic: str
             ) -> pd.DataFrame:
    """Filter, order, de-duplicate and count what :func:`sensorlib.kafka.fetch.fetch` decoded."""
    if not frames:
        out = empty_frame(kind)
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


def warn(frame: pd.DataFrame, message: str) -> None:
    """Warn (:class:`ReplayWarning`) and keep the message in ``frame.attrs["warnings"]``.

    The warning points at the caller of the public function that called this one's caller
    (``stacklevel=4``), i.e. at the notebook line, not at sensorlib.
    """
    frame.attrs.setdefault("warnings", []).append(message)
    warnings.warn(message, ReplayWarning, stacklevel=4)


def check_sensors(frame: pd.DataFrame, sensors: list[str] | None, known: Callable[[], set[str]],
                  kind: RecordKind) -> None:
    """Warn about each wanted sensor id with no row that ``known()`` does not know either."""
    if not sensors:
        return
    missing = sorted(set(sensors) - set(frame["sensorId"].unique().tolist()))
    if not missing:
        return
    ids = known()
    unknown = [s for s in missing if s not in ids]
    if unknown:
        shown = ", ".join(sorted(ids)[:20]) + (" …" if len(ids) > 20 else "") if ids else "none"
        warn(frame, f"unknown sensor id(s) {', '.join(map(repr, unknown))}: no {kind.name}s "
                    f"from them were found; known sensor ids: {shown}")
