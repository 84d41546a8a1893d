"""Benchmark of offline detection: every rule over a month of the reference fleet, and a
tuning sweep over a week, through the rules' columnar checks (issue 27 item 3).

- ``month``: :func:`sensorlib.engine.pipeline.run_frame` (every built-in rule, ticks every 10 s,
  event-time ``detectedAt``) over 30 days of the reference fleet (5 sensors, a reading each
  every 2 s: about 6.5M readings). Goal: <= 10 s.
- ``sweep``: :func:`sensorlib.notebook.tuning.sweep` of the temperature threshold over 10 values
  (the live one among them) on 7 days (about 1.5M readings). Goal: <= 15 s.
- ``baseline``: the per-row path these replaced (a validated Reading per row through
  :meth:`Pipeline.replay <sensorlib.engine.pipeline.Pipeline.replay>`), timed in the same run on
  the first ``sample`` readings and scaled to the full size; the alerts of the sample are
  checked to be the columnar path's.

The fleet: one simulated week (:class:`sensorlib.ingest.simulate.Simulator`, its default faults),
repeated to make the month (the rules do not care that the weeks look alike). Times are
CPU seconds of this process (one core; the machine is shared). Usage:
``python benchmarks/bench_rules.py [--days 30] [--sweep-days 7] [--sample 200000]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import numpy as np
import pandas as pd

from sensorlib.engine.detect import RuleConfig
from sensorlib.engine.pipeline import (
    Pipeline,
    alerts_to_frame,
    readings_frame_to_records,
    run_frame,
)
from sensorlib.ingest.simulate import Simulator
from sensorlib.notebook.tuning import sweep

T = TypeVar("T")
START = datetime(2026, 1, 1, tzinfo=UTC)
SWEEP_VALUES = [30.0, 31.0, 32.0, 33.0, 34.0, 35.0, 36.0, 37.0, 38.0, 40.0]


def fleet(days: float, *, seed: int = 1) -> pd.DataFrame:
    """``days`` of the reference fleet as a readings frame (a simulated week, repeated)."""
    week = min(days, 7.0)
    sim = Simulator(seed=seed, start=START)
    rows = [(r.sensor_id, r.temperature, r.humidity, r.location, r.timestamp)
            for r in sim.stream(duration=week * 86_400)]
    one = pd.DataFrame(rows, columns=["sensorId", "temperature", "humidity", "location",
                                      "timestamp"])
    one["timestamp"] = pd.to_datetime(one["timestamp"], utc=True)
    parts, shift = [], 0.0
    while shift < days:
        part = one[one["timestamp"] < START + timedelta(days=min(week, days - shift))].copy()
        part["timestamp"] += pd.Timedelta(days=shift)
        parts.append(part)
        shift += week
    return pd.concat(parts, ignore_index=True)


def _per_row(df: pd.DataFrame, rules: RuleConfig) -> pd.DataFrame:
    """The old path: a validated Reading per row, one at a time (run_frame before)."""
    order = pd.to_datetime(df["timestamp"], utc=True).argsort(kind="stable")
    pipeline = Pipeline(rules=rules, clock="event", max_sensors=None)
    return alerts_to_frame(pipeline.replay(readings_frame_to_records(df.iloc[order.to_numpy()])))


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    # CPU time of this process: "seconds of one core", steady on a busy, shared machine.
    started = time.process_time()
    out = fn()
    return out, time.process_time() - started


def run(days: float = 30.0, sweep_days: float = 7.0, sample: int = 200_000) -> dict[str, object]:
    """Measure and return the figures (seconds, readings, ratios)."""
    month = fleet(days)
    n = len(month)
    head = month.iloc[:sample]
    rules = RuleConfig()
    (_, alerts), month_s = _timed(lambda: run_frame(month, rules=rules))
    (_, sample_alerts), sample_s = _timed(lambda: run_frame(head, rules=rules))
    old_alerts, old_sample_s = _timed(lambda: _per_row(head, rules))
    if not sample_alerts.equals(old_alerts):
        raise AssertionError("the columnar path's alerts differ from the per-row path's")
    old_month_s = old_sample_s * n / len(head)

    week = month[month["timestamp"] < START + timedelta(days=sweep_days)]
    result, sweep_s = _timed(lambda: sweep(week, "temperature threshold", SWEEP_VALUES))
    # The old sweep: the same per-row replay per value (only the threshold rule on).
    only = RuleConfig(rules=frozenset({"threshold"}))
    _, old_one_s = _timed(lambda: _per_row(week.iloc[:sample], only))
    old_sweep_s = old_one_s * len(week) / min(sample, len(week)) * len(SWEEP_VALUES)
    return {
        "readings": n,
        "alerts": len(alerts),
        "alerts_by_rule": alerts["rule"].value_counts().to_dict(),
        "month_s": month_s,
        "month_per_s": n / month_s,
        "old_month_s_scaled": old_month_s,
        "old_sample_s": old_sample_s,
        "sample_s": sample_s,
        "month_speedup": old_month_s / month_s,
        "sweep_readings": len(week),
        "sweep_values": len(SWEEP_VALUES),
        "sweep_s": sweep_s,
        "sweep_alerts": int(result.table["alerts"].sum()),
        "old_sweep_s_scaled": old_sweep_s,
        "sweep_speedup": old_sweep_s / sweep_s,
        "sample": len(head),
        "rows_per_s_check": float(np.round(n / month_s)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--sweep-days", type=float, default=7.0)
    parser.add_argument("--sample", type=int, default=200_000)
    args = parser.parse_args()
    r = run(args.days, args.sweep_days, args.sample)
    print(f"month: {r['readings']:,} readings, every rule: {r['month_s']:.1f} s "
          f"(per-row path, scaled from {r['sample']:,}: {r['old_month_s_scaled']:.0f} s; "
          f"{r['month_speedup']:.1f}×), goal <= 10 s")
    print(f"sweep: {r['sweep_values']} values over {r['sweep_readings']:,} readings: "
          f"{r['sweep_s']:.1f} s (per-row, scaled: {r['old_sweep_s_scaled']:.0f} s; "
          f"{r['sweep_speedup']:.1f}×), goal <= 15 s")
    print(json.dumps(r, indent=2, default=str))


if __name__ == "__main__":
    main()
