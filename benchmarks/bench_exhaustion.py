"""Idle sockets against the services: real clients' rate with 1,000 idle connections open.

    .venv/bin/python benchmarks/bench_exhaustion.py [--seconds 5] [--idle 1000] [--bootstrap host:port]

The producer service (``sensorlib producer --no-simulate``, as a process) answers
``POST /api/events`` from 32 keep-alive clients (the closed-loop load client of
``bench_ingest.py``, in a process of its own) without idle sockets, then with ``--idle``
TCP connections open that never send a byte, then without again, ``--rounds`` times
interleaved. The row is the median over rounds of the rate with idle sockets against the
mean of the runs without on either side (same run, same machine), and how fast
``/health`` answers while they are open. The service
runs with a header timeout longer than the measurement (``SENSORLIB_HEADER_TIMEOUT=120``)
so the idle sockets stay open throughout: what is measured is what they cost while they
exist, not how fast they are closed (``tests/services/test_exhaustion.py`` tests that).

Before issue 23, uvicorn's ``limit_concurrency=1000`` counted those sockets and the
service answered 503 to everyone, ``/health`` included, for as long as they stayed open.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from bench_ingest import bodies, run_client
from common import broker, machine, private_topics

from sensorlib.config import Settings
from sensorlib.kafka.ports import free_port

CLIENTS = 32
IDLE = 1000


def idle_budget(wanted: int) -> int:
    """How many idle sockets this process can open (its soft fd limit raised to the hard
    one, less a reserve): ``wanted`` when the limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                        else 1 << 16, hard))
        except (ValueError, OSError):
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(0, min(wanted, soft - 200))


def open_idle(port: int, n: int) -> list[socket.socket]:
    """``n`` connections to 127.0.0.1:port that send nothing."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]


def health_ms(url: str, tries: int = 5) -> float:
    """Median milliseconds of ``GET /health`` on fresh connections (each must answer 200)."""
    import httpx

    times = []
    for _ in range(tries):
        started = time.perf_counter()
        answer = httpx.get(url + "/health", timeout=10)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"/health answered {answer.status_code}: {answer.text[:300]}")
    return sorted(times)[len(times) // 2]


def start_producer(settings: Settings, folder: str, header_timeout: float = 120.0
                   ) -> tuple[subprocess.Popen[bytes], int]:
    """``sensorlib producer --no-simulate`` on a free port, healthy."""
    import httpx

    port = free_port()
    env = {**os.environ, **settings.to_env(), "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "SENSORLIB_HEADER_TIMEOUT": str(header_timeout), "PYTHONUNBUFFERED": "1"}
    log = open(os.path.join(folder, f"producer-{port}.log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "sensorlib.cli", "producer", "--no-simulate",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the producer did not become healthy")


def measure(port: int, folder: str, *, seconds: float, idle: int, clients: int = CLIENTS,
            rounds: int = 1, pid: int | None = None) -> dict[str, Any]:
    """Rate of ``clients`` POSTing without idle sockets, with ``idle`` of them open, and
    without again, ``rounds`` times interleaved; the ratio of each round is its rate with
    idle sockets over the mean of the runs without on either side (the median is reported).
    With the server's ``pid``, also its CPU time per answered request in each kind of run
    (steadier than rates on a shared machine).
    """
    import psutil

    payloads = bodies(5000)
    url = f"http://127.0.0.1:{port}"
    server = psutil.Process(pid) if pid else None

    def load() -> dict[str, Any]:
        before = sum(server.cpu_times()[:2]) if server else 0.0
        result = run_client(port, "/api/events", payloads, clients, seconds, folder)
        if server:
            answered = sum(result["statuses"].values()) or 1
            result["cpu_us"] = (sum(server.cpu_times()[:2]) - before) * 1e6 / answered
        return result

    clear = [load()]
    health_clear = health_ms(url)
    busy, health_idle, still_open = [], [], []
    for _ in range(rounds):
        sockets = open_idle(port, idle)
        try:
            time.sleep(0.5)
            health_idle.append(health_ms(url))
            busy.append(load())
            still_open.append(sum(1 for s in sockets if _open(s)))
        finally:
            for s in sockets:
                s.close()
        clear.append(load())
    ratios = sorted(b["rate"] / max((clear[i]["rate"] + clear[i + 1]["rate"]) / 2, 1e-9)
                    for i, b in enumerate(busy))
    cpu = {} if server is None else {
        "server_cpu_us_per_request_clear": _median([c["cpu_us"] for c in clear]),
        "server_cpu_us_per_request_idle": _median([b["cpu_us"] for b in busy])}
    return {**cpu, "idle": idle, "idle_still_open": min(still_open), "clients": clients,
            "rounds": rounds,
            "rate_clear": _median([c["rate"] for c in clear]),
            "rate_idle": _median([b["rate"] for b in busy]),
            "ratio": ratios[len(ratios) // 2], "ratios": ratios,
            "p99_clear_ms": _median([c["p99_ms"] for c in clear]),
            "p99_idle_ms": _median([b["p99_ms"] for b in busy]),
            "health_clear_ms": health_clear, "health_idle_ms": max(health_idle),
            "statuses": {"clear": _merge(c["statuses"] for c in clear),
                         "idle": _merge(b["statuses"] for b in busy)}}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _merge(statuses: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for one in statuses:
        for code, n in one.items():
            out[code] = out.get(code, 0) + n
    return out


def _open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def run(bootstrap: str | None = None, seconds: float = 5.0, idle: int = IDLE,
        rounds: int = 3) -> dict[str, Any]:
    """The figures of the module docstring."""
    n = idle_budget(idle)
    out: dict[str, Any] = {"benchmark": "exhaustion", "machine": machine(), "seconds": seconds,
                           "idle_wanted": idle}
    with tempfile.TemporaryDirectory(prefix="bench-exhaustion-") as folder, \
            broker(bootstrap) as base:
        proc, port = start_producer(private_topics(base, "exhaustion"), folder)
        try:
            out.update(measure(port, folder, seconds=seconds, idle=n, rounds=rounds,
                               pid=proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    out["load_average"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--idle", type=int, default=IDLE)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap")
    args = parser.parse_args(argv)
    result = run(args.bootstrap, args.seconds, args.idle, args.rounds)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
