"""Idle sockets against the services: real clients' rate with 1,000 idle connections open.

    .venv/bin/python benchmarks/bench_exhaustion.py [--seconds 5] [--idle 1000] [--bootstrap host:port]

The producer service (``sensorlib producer --no-simulate``, as a process) answers
``POST /api/events`` from 32 keep-alive clients (the closed-loop load client of
``bench_ingest.py``, in a process of its own) three times: without idle sockets, with
``--idle`` TCP connections open that never send a byte, and without again. The row is
the rate with idle sockets against the mean of the two runs without (interleaved, same
run, same machine), and how fast ``/health`` answers while they are open. The service
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

from sensorlib.broker import free_port
from sensorlib.config import Settings

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


def measure(port: int, folder: str, *, seconds: float, idle: int,
            clients: int = CLIENTS) -> dict[str, Any]:
    """Rate of ``clients`` POSTing without, with ``idle`` idle sockets, and without again."""
    payloads = bodies(5000)
    url = f"http://127.0.0.1:{port}"
    before = run_client(port, "/api/events", payloads, clients, seconds, folder)
    health_clear = health_ms(url)
    sockets = open_idle(port, idle)
    try:
        time.sleep(0.5)
        health_idle = health_ms(url)
        during = run_client(port, "/api/events", payloads, clients, seconds, folder)
        still_open = sum(1 for s in sockets if _open(s))
    finally:
        for s in sockets:
            s.close()
    after = run_client(port, "/api/events", payloads, clients, seconds, folder)
    clear = (before["rate"] + after["rate"]) / 2
    return {"idle": idle, "idle_still_open": still_open, "clients": clients,
            "rate_clear": clear, "rate_idle": during["rate"],
            "ratio": during["rate"] / max(clear, 1e-9),
            "p99_clear_ms": max(before["p99_ms"], after["p99_ms"]), "p99_idle_ms": during["p99_ms"],
            "health_clear_ms": health_clear, "health_idle_ms": health_idle,
            "statuses": {"before": before["statuses"], "idle": during["statuses"],
                         "after": after["statuses"]}}


def _open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def run(bootstrap: str | None = None, seconds: float = 5.0, idle: int = IDLE) -> dict[str, Any]:
    """The figures of the module docstring."""
    n = idle_budget(idle)
    out: dict[str, Any] = {"benchmark": "exhaustion", "machine": machine(), "seconds": seconds,
                           "idle_wanted": idle}
    with tempfile.TemporaryDirectory(prefix="bench-exhaustion-") as folder, \
            broker(bootstrap) as base:
        proc, port = start_producer(private_topics(base, "exhaustion"), folder)
        try:
            out.update(measure(port, folder, seconds=seconds, idle=n))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    out["load_average"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--idle", type=int, default=IDLE)
    parser.add_argument("--bootstrap")
    args = parser.parse_args(argv)
    result = run(args.bootstrap, args.seconds, args.idle)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
