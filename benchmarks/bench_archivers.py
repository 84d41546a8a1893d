"""Several archivers: 2 ``sensorlib archive`` processes in one group vs 1, and commit conflicts.

    .venv/bin/python benchmarks/bench_archivers.py [--n 1000000] [--rounds 2]
        [--steady 30] [--bootstrap h:p]

Without ``--bootstrap`` a fresh local Kafka is started on free ports in a temporary folder.
In one run, on one topic of N preloaded readings (3 partitions):

1. ``--rounds`` times, interleaved: 1 archiver, then 2 archivers in one consumer group
   (real ``sensorlib archive`` processes, each with its writer process, batches of 100,000
   rows or 1 s), each round into a fresh warehouse (sqlite catalog) and a fresh group,
   timed from starting the processes until their ``/health`` counts N rows archived
   (group joins and table creation included). Printed: rows/s each, the ratio 2 vs 1, and
   the commit conflicts the 2 archivers met (a commit retried because the other one
   committed first), per minute of the catch-up.
2. Steady state (``--steady`` seconds): the 2 archivers of the last round stay up while a
   paced stream (5,000 readings/s) is produced; conflicts per minute of that stream.

The machine has 2 cores shared by the broker, the producer of step 2 and the archivers
(each one a consumer process and a writer process): the ratio says what a second
archiver buys *here*, not on machines of their own.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import httpx
from common import broker, machine, preload, private_topics

from sensorlib.config import Settings
from sensorlib.kafka.clients import make_producer
from sensorlib.kafka.ports import free_port

REPO = Path(__file__).resolve().parents[1]


def _health(port: int) -> dict:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=3.0).json()
    except (httpx.HTTPError, ValueError):
        return {}


def _figure(bodies: list[dict], topic: str, key: str) -> int:
    return sum(((b.get("tables") or {}).get(topic) or {}).get(key) or 0 for b in bodies)


class Archivers:
    """``count`` ``sensorlib archive`` processes in one fresh group and warehouse."""

    def __init__(self, settings: Settings, count: int, folder: Path) -> None:
        self.settings = settings.replace(warehouse_dir=folder / "warehouse",
                                         archiver_group=f"bench-arch-{uuid.uuid4().hex[:6]}")
        self.ports = [free_port() for _ in range(count)]
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "archivers.log"
        env = {**os.environ, **self.settings.to_env()}
        with open(self.log, "ab") as out:
            self.procs = [subprocess.Popen(
                [sys.executable, "-m", "sensorlib.cli", "archive", "--port", str(port),
                 "--batch-seconds", "1"], env=env, stdout=out, stderr=subprocess.STDOUT,
                cwd=REPO) for port in self.ports]

    def bodies(self) -> list[dict]:
        return [_health(port) for port in self.ports]

    def wait_rows(self, rows: int, timeout: float = 900.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            bodies = self.bodies()
            if _figure(bodies, self.settings.topic_readings, "archived") >= rows:
                return bodies
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"an archiver exited: {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{rows:,} rows not archived in {timeout:.0f}s")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def catch_up(settings: Settings, n: int, count: int, folder: Path, *, keep: bool = False
             ) -> tuple[dict, Archivers | None]:
    """``count`` archivers catching up on the ``n``-reading topic: rows/s and conflicts."""
    started = time.perf_counter()
    archivers = Archivers(settings, count, folder)
    try:
        bodies = archivers.wait_rows(n)
    except BaseException:
        archivers.stop()
        raise
    elapsed = time.perf_counter() - started
    conflicts = _figure(bodies, settings.topic_readings, "conflicts")
    skipped = _figure(bodies, settings.topic_readings, "skipped")
    figures = {"archivers": count, "rows_per_s": n / elapsed, "seconds": elapsed,
               "conflicts": conflicts, "conflicts_per_min": conflicts / elapsed * 60,
               "skipped": skipped,
               "commits": _figure(bodies, settings.topic_readings, "commits")}
    if keep:
        return figures, archivers
    archivers.stop()
    return figures, None


def steady(settings: Settings, archivers: Archivers, seconds: float, base_rows: int,
           rate: int = 5000) -> dict:
    """Conflicts per minute of 2 archivers while a paced stream of ``rate``/s flows."""
    before = _figure(archivers.bodies(), settings.topic_readings, "conflicts")
    producer = make_producer(settings, client_id="bench-archivers-steady", linger_ms=20)
    value = (b'{"SensorId":"sensor-01","Temperature":21.5,"Humidity":50.0,'
             b'"Location":"Hall","Timestamp":"%s"}')
    sent = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            tick = time.perf_counter()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()).encode()
            for i in range(rate // 10):
                producer.send(settings.topic_readings, key=f"sensor-{i % 30:02d}",
                              value=value.replace(b"%s", stamp))
            sent += rate // 10
            time.sleep(max(0.0, 0.1 - (time.perf_counter() - tick)))
        producer.flush()
    finally:
        producer.close()
    bodies = archivers.wait_rows(base_rows + sent, timeout=300)
    elapsed = time.perf_counter() - started
    conflicts = _figure(bodies, settings.topic_readings, "conflicts") - before
    return {"seconds": elapsed, "readings": sent, "conflicts": conflicts,
            "conflicts_per_min": conflicts / elapsed * 60}


def run(bootstrap: str | None, n: int, rounds: int = 2, steady_s: float = 30.0) -> dict:
    """Steps 1 and 2 of the module docstring; the figures as a dict."""
    with broker(bootstrap) as base, tempfile.TemporaryDirectory(
            prefix="sensorlib-bench-archivers-") as tmp:
        settings = private_topics(base, "archivers")
        print(f"  preloading {n:,} readings", flush=True)
        preload(settings, n)
        ones, twos = [], []
        last = None
        for i in range(rounds):
            one, _ = catch_up(settings, n, 1, Path(tmp) / f"one-{i}")
            keep = i == rounds - 1 and steady_s > 0
            two, last = catch_up(settings, n, 2, Path(tmp) / f"two-{i}", keep=keep)
            ones.append(one)
            twos.append(two)
            print(f"  round {i + 1}: 1 archiver {one['rows_per_s']:,.0f}/s, 2 archivers "
                  f"{two['rows_per_s']:,.0f}/s = {two['rows_per_s'] / one['rows_per_s']:.2f}× "
                  f"({two['conflicts']} conflicts in {two['seconds']:.0f} s, "
                  f"{two['commits']} commits; load {os.getloadavg()[0]:.1f})", flush=True)
        calm = None
        if last is not None:
            try:
                calm = steady(settings, last, steady_s, n)
            finally:
                last.stop()
            print(f"  steady, 5,000 readings/s for {calm['seconds']:.0f} s: "
                  f"{calm['conflicts']} conflicts ({calm['conflicts_per_min']:.1f}/min)",
                  flush=True)
        pairs = sorted(zip(ones, twos, strict=True),
                       key=lambda p: p[1]["rows_per_s"] / p[0]["rows_per_s"])
        ratios = [t["rows_per_s"] / o["rows_per_s"] for o, t in pairs]
        middle = pairs[len(pairs) // 2]  # the round of the median ratio: its two rates
        return {
            "n": n, "rounds": rounds,
            "one_rate": round(middle[0]["rows_per_s"]),
            "two_rate": round(middle[1]["rows_per_s"]),
            "two_vs_one": round(ratios[len(ratios) // 2], 3),
            "ratio_min": round(ratios[0], 3), "ratio_max": round(ratios[-1], 3),
            "catch_up_conflicts_per_min": round(
                sum(t["conflicts"] for t in twos) / sum(t["seconds"] for t in twos) * 60, 1),
            "steady_conflicts_per_min": None if calm is None else round(
                calm["conflicts_per_min"], 1),
            "steady": calm, "ones": ones, "twos": twos,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steady", type=float, default=30.0)
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    print(machine())
    result = run(args.bootstrap, args.n, args.rounds, args.steady)
    print({k: v for k, v in result.items() if k not in ("ones", "twos")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
