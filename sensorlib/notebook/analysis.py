"""Analysis of replay frames: the live rules offline, each sensor's latest state, rolling stats,
and (from :mod:`sensorlib.notebook.incidents`) incidents, time in status and two periods compared.

Thin and pure (frames in, frames out); the notebooks and the report call these.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pandas as pd

from sensorlib.notebook.incidents import (
    DEFAULT_GAP,
    compare_periods,
    incident_ids,
    incidents,
    local_day,
    per_local_day,
    time_in_status,
)

__all__ = ["DEFAULT_GAP", "compare_periods", "compare_rules", "incident_ids", "incidents",
           "latest_by_sensor", "local_day", "per_local_day", "replay_rules", "rolling_stats",
           "statuses", "time_in_status"]


def replay_rules(df: pd.DataFrame, rules: Any = None, *, window: timedelta | None = None,
                 tick_every: timedelta | None = None) -> pd.DataFrame:
    """The alerts the live rules raise over a readings frame (``pipeline.run_frame``).

    ``rules`` is a :class:`sensorlib.engine.detect.RuleConfig` (default: the live defaults).
    """
    from sensorlib.engine.detect import RuleConfig
    from sensorlib.engine.pipeline import DEFAULT_TICK, run_frame
    from sensorlib.engine.windows import DEFAULT_WINDOW

    _, alerts = run_frame(df, window=window or DEFAULT_WINDOW, rules=rules or RuleConfig(),
                          tick_every=DEFAULT_TICK if tick_every is None else tick_every)
    return alerts


def compare_rules(df: pd.DataFrame, variants: dict[str, Any]) -> pd.DataFrame:
    """Alert counts per rule (rows) for each named RuleConfig (columns), with a total row.

    >>> compare_rules(readings, {"35 °C": RuleConfig(),                   # doctest: +SKIP
    ...                          "33 °C": RuleConfig(temperature_threshold=33)})
    """
    counts = {name: replay_rules(df, rules)["rule"].value_counts()
              for name, rules in variants.items()}
    table = pd.DataFrame(counts).fillna(0).astype("int64")
    table = table.sort_index()
    table.loc["total"] = table.sum()
    table.index.name = "rule"
    return table


def statuses(temperature: Iterable[float], humidity: Iterable[float]) -> list[str]:
    """The dashboard status (critical/warning/normal) of each (temperature, humidity) pair.

    >>> statuses([21.0, 36.0], [50.0, 50.0])
    ['normal', 'critical']
    """
    from sensorlib.model.events import status_of

    return [status_of(t, h) for t, h in zip(temperature, humidity, strict=True)]


def latest_by_sensor(df: pd.DataFrame) -> pd.DataFrame:
    """Each sensor's newest reading with its dashboard status (critical/warning/normal)."""
    if df.empty:
        out = df.loc[:, ["sensorId", "location", "temperature", "humidity", "timestamp"]].copy()
        out["status"] = pd.Series([], dtype="str")
        return out.reset_index(drop=True)
    latest = (df.sort_values("timestamp", kind="stable").groupby("sensorId").tail(1)
              .sort_values("sensorId")[["sensorId", "location", "temperature", "humidity",
                                        "timestamp"]].reset_index(drop=True))
    latest["status"] = statuses(latest["temperature"], latest["humidity"])
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
