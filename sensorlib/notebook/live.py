"""The live tail's read (notebook ``01_live_tail``): the newest readings and what they are.

The Kafka side (the newest records of the readings topic, bounded) is
:func:`sensorlib.kafka.fetch.newest`; this module decodes them and says in a short HTML
note what the frame holds and what was left out.
"""

from __future__ import annotations

import pandas as pd

from sensorlib.config import Settings
from sensorlib.errors import ReportError
from sensorlib.kafka.fetch import accept_of, newest
from sensorlib.replay.decode import decode_readings
from sensorlib.replay.periods import TimeLike, to_utc

__all__ = ["live_period"]


def live_period(settings: Settings, *, since: TimeLike = "5min ago", seconds: float = 5.0,
                max_records: int = 100_000) -> tuple[pd.DataFrame, str]:
    """Readings of the live period (event time from ``since``) and an HTML note on what was read.

    Reads what arrived on the readings topic from ``since`` on (the newest ``max_records``
    of it), tails ``seconds`` more, keeps the valid readings whose event time is from
    ``since`` on (a back-fill arrives now with old event times), and says honestly what
    the frame is: how many readings, which were left out, and whether the cap cut the
    read short ("the last 100,000 of 1,234,567"). No consumer group.
    """
    live_from = to_utc(since)
    if live_from is None:
        raise ReportError("since must be a time, e.g. '5min ago'")
    chunk, available = newest(settings, settings.topic_readings,
                              since_ms=int(live_from.timestamp() * 1000), seconds=seconds,
                              max_records=max_records)
    decoded = decode_readings(chunk.values, record_ms=chunk.times, accept=accept_of(settings))
    invalid = int(decoded["_reason"].notna().sum())
    valid = decoded[decoded["_reason"].isna()].drop(columns="_reason")
    recent = (valid[valid["timestamp"] >= live_from].sort_values("timestamp", kind="stable")
              .reset_index(drop=True))
    recent.attrs.update(live_from=live_from, invalid=invalid, available=available)
    older = len(valid) - len(recent)
    lines = [(f"<b>{len(recent):,}</b> readings from <b>{recent['sensorId'].nunique():,}</b> "
             f"sensors with event times since {live_from:%Y-%m-%d %H:%M:%S} UTC")]
    if available > max_records:
        lines.append(f"<b>capped</b>: the last {max_records:,} of the {available:,} records "
                     "that had arrived since then were read, plus what came in while "
                     "listening; raise <code>max_records</code> or shorten <code>since</code> "
                     "to see all")
    if older:
        lines.append(f"{older:,} readings that arrived in this time carry older event times "
                     "(back-fills, late sensors) and are left out")
    if invalid:
        lines.append(f"{invalid:,} invalid records skipped (see 06_dead_letters)")
    return recent, "<br>".join(lines)
