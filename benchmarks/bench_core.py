"""Benchmark of the pure core: windows + rules per reading, against naive alternatives.

Runs on a simulated stream (five sensors, 10 readings/s each in event time) and reports
readings per second of:

- ``pipeline``: :meth:`sensorlib.engine.pipeline.Pipeline.process` (event-time windows and every rule);
- ``batch``: :meth:`sensorlib.engine.pipeline.Pipeline.process_batch_us` on polls of 20,000 readings,
  as the processor calls it (each sensor's in-order run at once, :mod:`sensorlib.engine.runs`); the
  same alerts as ``pipeline`` (checked here);
- ``ml``: the same ``batch`` path with the online-ML rule turned on too (``ml_score``,
  :mod:`sensorlib.rules.ml_score`, off by default; needs river), and ``ml_vs_batch`` its
  throughput over ``batch``'s in the same run (None without river);
- ``reference``: the reference sample's approach, a ``deque(maxlen=150)`` per sensor
  averaged in full (sum/len, min, max) on every reading, plus the threshold check;
- ``recompute``: the same 5-minute event-time window as ours, but recomputed in full
  (count, mean, min, max) on every reading. It is timed once the windows are full
  (after five minutes of event time), on a slice of the stream, as it is slow;
- ``parse``: :func:`sensorlib.model.events.parse_reading` from wire bytes;
- ``simulate`` and ``serialise``: generating readings and ``Reading.to_json``.

Rates are per CPU second of this process (one core), so a busy machine skews them less.
Usage: ``python benchmarks/bench_core.py [--n N]``; ``run(n)`` returns the figures.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sensorlib.engine.detect import ALL_RULES, RuleConfig
from sensorlib.engine.pipeline import Pipeline
from sensorlib.engine.windows import to_us
from sensorlib.ingest.simulate import Simulator
from sensorlib.model.events import Reading, parse_reading
from sensorlib.rules.ml_score import river_missing

INTERVAL = 0.1  # seconds of event time between ticks: 10 readings/s per sensor
WINDOW = timedelta(minutes=5)
RECOMPUTE_SLICE = 20_000  # readings timed for the (slow) full recompute


def _rate(n: int, fn: Callable[[], object]) -> float:
    # CPU time of this process: "per second of one core", and steady on a busy machine.
    started = time.process_time()
    fn()
    return n / (time.process_time() - started)


def _pipeline(readings: Sequence[Reading]) -> int:
    pipeline = Pipeline(WINDOW, RuleConfig(), clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    process = pipeline.process
    alerts = 0
    for reading in readings:
        alerts += len(process(reading))
    return alerts


POLL = 20_000  # the processor's records per poll


def _batch(judged: Sequence[tuple[Reading, int]], rules: RuleConfig | None = None) -> int:
    pipeline = Pipeline(WINDOW, rules or RuleConfig(),
                        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    alerts = 0
    for start in range(0, len(judged), POLL):
        for _, found in pipeline.process_batch_us(judged[start:start + POLL]):
            alerts += len(found)
    return alerts


def _reference(readings: Sequence[Reading]) -> int:
    """The sample's consumer: the last 150 readings per sensor, re-averaged every time."""
    windows: dict[str, deque[tuple[float, float]]] = {}
    alerts = 0
    for r in readings:
        dq = windows.get(r.sensor_id)
        if dq is None:
            dq = windows[r.sensor_id] = deque(maxlen=150)
        dq.append((r.temperature, r.humidity))
        temps = [t for t, _ in dq]
        hums = [h for _, h in dq]
        _ = (sum(temps) / len(temps), min(temps), max(temps),
             sum(hums) / len(hums), min(hums), max(hums))
        if r.temperature > 35 or r.humidity > 90:
            alerts += 1
    return alerts


class _Recompute:
    """The same event-time window, recomputed over all its readings per reading."""

    def __init__(self) -> None:
        self.length = WINDOW // timedelta(microseconds=1)
        self.windows: dict[str, list[tuple[int, float, float]]] = {}
        self.alerts = 0

    def feed(self, readings: Sequence[Reading]) -> None:
        for r in readings:
            ts = to_us(r.timestamp)
            history = self.windows.setdefault(r.sensor_id, [])
            history.append((ts, r.temperature, r.humidity))
            cutoff = max(x[0] for x in history) - self.length
            inside = [x for x in history if x[0] > cutoff]
            self.windows[r.sensor_id] = inside  # keep memory bounded, as a real one would
            temps = [x[1] for x in inside]
            hums = [x[2] for x in inside]
            _ = (len(inside), sum(temps) / len(temps), min(temps), max(temps),
                 sum(hums) / len(hums), min(hums), max(hums))
            if r.temperature > 35 or r.humidity > 90:
                self.alerts += 1


def run(n: int = 300_000, *, seed: int = 1) -> dict[str, float]:
    """Measure the core and return readings/s figures and ratios."""
    sim = Simulator(seed=seed, interval=INTERVAL, start=datetime(2026, 1, 1, tzinfo=UTC))
    readings: list[Reading] = []
    simulate = _rate(n, lambda: readings.extend(sim.stream(count=n)))
    wire: list[bytes] = []
    serialise = _rate(n, lambda: wire.extend(r.to_json() for r in readings))
    parse = _rate(n, lambda: [parse_reading(raw) for raw in wire])
    counted: dict[str, int] = {}
    pipeline = _rate(n, lambda: counted.update(one=_pipeline(readings)))
    judged = [(r, to_us(r.timestamp)) for r in readings]  # as the processor has them
    batch = _rate(n, lambda: counted.update(batch=_batch(judged)))
    if counted["one"] != counted["batch"]:
        raise AssertionError(f"process_batch_us raised {counted['batch']} alerts, "
                             f"Pipeline.process {counted['one']}")
    # The online-ML rule's cost on the processor's path: the default rules plus ml_score.
    ml: float | None = None
    if river_missing() is None:
        with_ml = RuleConfig(rules=ALL_RULES | {"ml_score"})
        ml = _rate(n, lambda: counted.update(ml=_batch(judged, with_ml)))
    reference = _rate(n, lambda: _reference(readings))

    full = int(WINDOW.total_seconds() / INTERVAL) * len(sim.fleet)  # readings to fill windows
    recompute_state = _Recompute()
    recompute_state.feed(readings[:full])
    timed = readings[full:full + RECOMPUTE_SLICE]
    recompute = _rate(len(timed), lambda: recompute_state.feed(timed)) if timed else float("nan")
    return {
        "readings": n,
        "pipeline_per_s": pipeline,
        "batch_per_s": batch,
        "batch_vs_pipeline": batch / pipeline,
        "ml_per_s": ml,
        "ml_vs_batch": None if ml is None else ml / batch,
        "ml_alerts": counted.get("ml", 0) - counted["batch"],
        "alerts": counted["one"],
        "reference_per_s": reference,
        "recompute_per_s": recompute,
        "parse_per_s": parse,
        "simulate_per_s": simulate,
        "serialise_per_s": serialise,
        "pipeline_vs_reference": pipeline / reference,
        "pipeline_vs_recompute": pipeline / recompute,
    }


def _print(figures: dict[str, float]) -> None:
    rows = [
        ("Pipeline.process (windows + all rules)", figures["pipeline_per_s"]),
        ("Pipeline.process_batch_us, polls of 20,000", figures["batch_per_s"]),
        ("reference: deque(150) re-averaged + threshold", figures["reference_per_s"]),
        ("full recompute of the 5-min window", figures["recompute_per_s"]),
        ("parse_reading (bytes -> Reading)", figures["parse_per_s"]),
        ("Simulator.stream", figures["simulate_per_s"]),
        ("Reading.to_json", figures["serialise_per_s"]),
    ]
    print(f"{int(figures['readings']):,} readings, 5 sensors at 10 readings/s (event time)")
    print(f"{'what':<48} {'readings/s':>12}")
    if figures["ml_per_s"] is not None:
        rows.insert(2, ("process_batch_us + the ml_score rule", figures["ml_per_s"]))
    for name, rate in rows:
        print(f"{name:<48} {rate:>12,.0f}")
    if figures["ml_vs_batch"] is not None:
        print(f"with ml_score / without: {figures['ml_vs_batch']:.2f}x "
              f"({int(figures['ml_alerts']):,} more alerts)")
    print(f"pipeline / reference: {figures['pipeline_vs_reference']:.1f}x   "
          f"pipeline / full recompute: {figures['pipeline_vs_recompute']:.1f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000, help="readings (default 300000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    _print(run(args.n, seed=args.seed))


if __name__ == "__main__":
    main()
