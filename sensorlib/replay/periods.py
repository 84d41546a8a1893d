"""Time periods: the times and ``[start, end)`` ranges that replays, reports and views take.

One parser for every "when" a user types — ISO-8601, ``now``, ``today``, ``yesterday``,
``-1h``, ``2 days ago`` — so a notebook parameter, a CLI option and a cron line mean the
same thing everywhere. Naive times are UTC.
"""

from __future__ import annotations

import numbers
import re
from datetime import datetime

import numpy as np
import pandas as pd

from sensorlib.errors import ConfigError, ReplayError

__all__ = ["TimeLike", "resolve_period", "to_utc"]

#: What the period functions accept: a datetime, a Timestamp or a string (naive = UTC).
TimeLike = datetime | pd.Timestamp | str
_UTC = "UTC"
_BARE_DURATION = re.compile(r"^\d+(\.\d+)?\s*[a-zA-Z]+$")


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
            from sensorlib.config import parse_duration  # the units of every other duration

            try:  # 90s, 5m, 12h, 2 days, 2w, 3y (= 3 × 365 days), as in SENSORLIB_MAX_PAST
                return now - pd.Timedelta(parse_duration(duration))
            except ConfigError:
                pass
            try:  # pandas' forms too: "1h30m", "01:30:00"
                return now - pd.Timedelta(duration.strip())
            except ValueError:
                raise ReplayError(f"not a duration: {value!r} (try '-1h', '1h ago', "
                                  "'2 days ago' or '-3y')") from None
        if _BARE_DURATION.match(text):
            # pandas reads "1h" as 01:00 in year 1: almost surely "an hour ago" was meant.
            raise ReplayError(f"{value!r} is a duration, not a time: write '-{text}' or "
                              f"'{text} ago' for a time before now")
        try:
            ts = pd.Timestamp(text)
        except ValueError:
            raise ReplayError(f"not a time: {value!r} (use ISO-8601, e.g. "
                              "'2026-01-01T12:00:00Z', or 'now', 'today', '-1h')") from None
    elif isinstance(value, numbers.Number) or (
            isinstance(value, np.generic) and not isinstance(value, np.datetime64)):
        # pandas reads 1764000000 as nanoseconds after 1970: never what was meant.
        raise ReplayError(f"{value!r} is a number, not a time: pass an ISO-8601 string or a "
                          "datetime (for Unix seconds: pd.Timestamp(seconds, unit='s'))")
    else:
        ts = pd.Timestamp(value)
    if pd.isna(ts):
        raise ReplayError(f"not a time: {value!r}")
    return ts.tz_localize(_UTC) if ts.tzinfo is None else ts.tz_convert(_UTC)


def resolve_period(start: TimeLike | None, end: TimeLike | None
                   ) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """``(start, end)`` as UTC Timestamps (None = unbounded); raises if end <= start.

    >>> resolve_period("2026-01-01", None)
    (Timestamp('2026-01-01 00:00:00+0000', tz='UTC'), None)
    """
    now = pd.Timestamp.now(tz=_UTC)
    t0, t1 = to_utc(start, now=now), to_utc(end, now=now)
    if t0 is not None and t1 is not None and t1 <= t0:
        raise ReplayError(f"the period is empty: end ({t1.isoformat()}) is not after "
                          f"start ({t0.isoformat()})")
    return t0, t1
