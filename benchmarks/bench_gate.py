"""The one gate: every valid form of a reading at the canonical form's rate.

    .venv/bin/python benchmarks/bench_gate.py [--n 300000]

Each form is the same simulated readings written as a producer would write them:

- canonical: sensorlib's and the .NET producer's PascalCase, ``Z``, 7 fractional digits;
- camelCase ``isoformat()``: a Python producer (``datetime.isoformat()``: ``+00:00``);
- camelCase ``Z``: the reference sample's curl shape;
- PascalCase ``+02:00``: a local-time producer.

For each: the processor's CPU path of one poll — :func:`sensorlib.model.gate.judge_many` plus the
windows and rules (``Pipeline.process_batch_us``), polls of 20,000 — and the archiver's and
replay's (:func:`sensorlib.replay.decode.decode_readings`, blocks of 100,000). The ratio is each
form's rate over the canonical form's, measured in the same run (goal: ≥ 0.9×); the
json + pydantic reference path (:func:`sensorlib.model.gate.judge_full`) is the floor every fast
form is held to.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from sensorlib.engine.pipeline import Pipeline
from sensorlib.ingest.simulate import Simulator
from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.model.events import Reading
from sensorlib.model.gate import judge_full, judge_many
from sensorlib.replay.decode import decode_readings

POLL = 20_000  # the processor's records per poll
BLOCK = 100_000  # the archiver's batch
WINDOW = EventTimeWindow(timedelta(days=3650), timedelta(minutes=5))
PLUS_TWO = timezone(timedelta(hours=2))


def _camel(r: Reading, stamp: str) -> bytes:
    return json.dumps({"sensorId": r.sensor_id, "temperature": r.temperature,
                       "humidity": r.humidity, "location": r.location,
                       "timestamp": stamp}).encode()


FORMS: dict[str, Callable[[Reading], bytes]] = {
    "canonical (PascalCase, Z, .NET 7 digits)":
        lambda r: r.to_json().replace(b'Z"}', b'1Z"}') if b'.' in r.to_json()[-12:]
        else r.to_json(),
    "camelCase, isoformat() (+00:00)": lambda r: _camel(r, r.timestamp.isoformat()),
    "camelCase, Z (the sample's curl)": lambda r: _camel(
        r, r.timestamp.isoformat().replace("+00:00", "Z")),
    "PascalCase, +02:00 (local time)": lambda r: r.to_json().replace(
        r.to_json().rsplit(b'"Timestamp":"', 1)[1][:-2],
        r.timestamp.astimezone(PLUS_TWO).isoformat().encode()),
}


def _best(fn: Callable[[], object], n: int, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return n / best


def _poll_path(values: list[bytes], times: list[int], now_us: int) -> int:
    pipeline = Pipeline()  # the processor's: detectedAt from the wall clock
    alerts = 0
    for start in range(0, len(values), POLL):
        judged = judge_many(values[start:start + POLL], times[start:start + POLL],
                            now_us=now_us, accept=WINDOW)
        ok = [j for j in judged if type(j) is tuple]
        if len(ok) != len(judged):
            raise AssertionError("a valid reading was refused")
        alerts += sum(len(found) for _, found in pipeline.process_batch_us(ok))
    return alerts


def _columns(values: list[bytes], times: list[int], now_us: int) -> int:
    rows = 0
    for start in range(0, len(values), BLOCK):
        frame = decode_readings(values[start:start + BLOCK], record_ms=times[start:start + BLOCK],
                                accept=WINDOW, now_us=now_us)
        if frame["_reason"].notna().any():
            raise AssertionError("a valid reading was refused")
        rows += len(frame)
    return rows


def run(n: int = 300_000, *, seed: int = 1) -> dict[str, object]:
    """Rates of every form through the poll path and the columns, and their ratios."""
    start = datetime.now(UTC) - timedelta(days=1)
    readings = list(Simulator(seed=seed, interval=0.1, start=start).stream(count=n))
    now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
    times = [int(r.timestamp.timestamp() * 1000) for r in readings]
    forms: dict[str, dict[str, float]] = {}
    for name, write in FORMS.items():
        values = [write(r) for r in readings]
        forms[name] = {"poll_per_s": _best(lambda v=values: _poll_path(v, times, now_us), n),
                       "columns_per_s": _best(lambda v=values: _columns(v, times, now_us), n)}
    canonical = forms[next(iter(FORMS))]
    for figures in forms.values():
        figures["poll_vs_canonical"] = figures["poll_per_s"] / canonical["poll_per_s"]
        figures["columns_vs_canonical"] = figures["columns_per_s"] / canonical["columns_per_s"]
    sample = [FORMS[next(iter(FORMS))](r) for r in readings[:min(n, 50_000)]]
    reference = _best(lambda: [judge_full(v, t, now_us=now_us, accept=WINDOW)
                               for v, t in zip(sample, times, strict=False)], len(sample), 1)
    worst = min(f["poll_vs_canonical"] for f in forms.values())
    return {"readings": n, "forms": forms, "reference_judge_per_s": reference,
            "worst_poll_vs_canonical": worst,
            "worst_columns_vs_canonical": min(f["columns_vs_canonical"] for f in forms.values())}


def _print(figures: dict[str, object]) -> None:
    print(f"{figures['readings']:,} readings")
    print(f"{'form':<42} {'poll path/s':>12} {'ratio':>6} {'columns/s':>12} {'ratio':>6}")
    for name, f in figures["forms"].items():  # type: ignore[union-attr]
        print(f"{name:<42} {f['poll_per_s']:>12,.0f} {f['poll_vs_canonical']:>5.2f}× "
              f"{f['columns_per_s']:>12,.0f} {f['columns_vs_canonical']:>5.2f}×")
    print(f"reference path (json + pydantic, judge only): "
          f"{figures['reference_judge_per_s']:,.0f}/s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000)
    args = parser.parse_args(argv)
    _print(run(args.n))


if __name__ == "__main__":
    main()
