"""Ingestion over HTTP: ``POST /api/events`` at 8/32/128 clients and ``POST /api/events/batch``.

    .venv/bin/python benchmarks/bench_ingest.py [--seconds 5] [--bootstrap host:port]

The producer service (``create_app(simulate=False)`` under uvicorn, one worker, as
``sensorlib producer`` runs it) and the load client run as separate processes on this
machine, next to the broker: all three share its cores, as the figures say.

- **POST at N clients**: N keep-alive connections, each sending one reading and waiting
  for the answer (closed loop) for ``--seconds``; rate, p50, p99, errors and 429s.
  Baseline, same run, same client: the stack this work replaced — ``ReadingProducer.publish``
  in a worker thread per request (``anyio.to_thread``), the Origin guard as Starlette
  ``BaseHTTPMiddleware``, uvicorn on asyncio + h11 (issue 18 measured it at 181/s at 8
  clients). Also reported: that previous handler alone inside today's stack, which
  isolates awaiting the ack on the loop from the rest.
- **batch POST**: 1,000-reading JSON-array batches from 4 clients; readings/s
  acknowledged. Baseline: a bare kafka-python producer sending the same readings,
  pre-encoded, in one loop (``make_producer``'s durable options): the ceiling of the
  client library on this machine, with no HTTP and no validation.
- **client ceiling**: the same load client against a raw asyncio server that answers a
  fixed 201 without parsing — what the client itself can drive here — and against a
  trivial FastAPI POST endpoint under uvicorn (the framework's ceiling).

The load client is a minimal HTTP/1.1 client on asyncio protocols (one pre-built request
per reading, Content-Length answers): httpx would itself be the bottleneck on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Self

sys.path.insert(0, os.path.dirname(__file__))

from common import broker, machine, plain_send_rate, private_topics

from sensorlib.config import Settings
from sensorlib.kafka.ports import free_port

CLIENTS = (8, 32, 128)
#: uvicorn's choices before this work (uvloop and httptools were not installed).
OLD_STACK = ("--loop", "asyncio", "--http", "h11")
BATCH = 1000
BATCH_CLIENTS = 2


# ----------------------------------------------------------------------------- load client


def bodies(n: int, *, batch: int = 0, seed: int = 1) -> list[bytes]:
    """``n`` request bodies: single readings, or JSON arrays of ``batch`` readings."""
    from sensorlib.ingest.simulate import Simulator

    count = n * max(1, batch)
    # Event times end now (never ahead of the server's clock beyond SENSORLIB_MAX_FUTURE).
    start = datetime.now(UTC) - timedelta(seconds=count * 0.03 + 60)
    sim = Simulator(seed=seed, interval=0.01, start=start)
    readings = [r.to_json() for r in sim.stream(count=count)]
    if not batch:
        return readings
    return [b"[" + b",".join(readings[i:i + batch]) + b"]"
            for i in range(0, len(readings), batch)]


class _Conn(asyncio.Protocol):
    """One keep-alive connection sending requests back to back (closed loop)."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.buf = bytearray()
        self.sent_at = 0.0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.send()

    def send(self) -> None:
        run = self.run
        if run.stopping:
            self.transport.close()
            return
        run.next = (run.next + 1) % len(run.requests)
        self.sent_at = time.perf_counter()
        self.transport.write(run.requests[run.next])

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(buf) < end + 4 + length:
                return
            del buf[:end + 4 + length]
            self.run.done(int(head[9:12]), time.perf_counter() - self.sent_at)
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.closed += 1


class _Run:
    def __init__(self, requests: list[bytes], warmup: float) -> None:
        self.requests = requests
        self.next = 0
        self.stopping = False
        self.measuring = False
        self.warm_until = time.perf_counter() + warmup
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.closed = 0

    def done(self, status: int, latency: float) -> None:
        if not self.measuring:
            if time.perf_counter() < self.warm_until:
                return
            self.measuring = True
        self.latencies.append(latency)
        self.statuses[status] = self.statuses.get(status, 0) + 1


def _request(host: str, port: int, path: str, body: bytes, content_type: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _load(port: int, path: str, payloads: list[bytes], clients: int, seconds: float,
                warmup: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    requests = [_request("127.0.0.1", port, path, b, "application/json") for b in payloads]
    run = _Run(requests, warmup)
    for _ in range(clients):
        await loop.create_connection(lambda: _Conn(run), "127.0.0.1", port)
    await asyncio.sleep(warmup)
    while not run.measuring:
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    count = len(run.latencies)
    elapsed = time.perf_counter() - started
    run.stopping = True
    await asyncio.sleep(0.5)
    lat = sorted(run.latencies[:count]) or [0.0]
    ok = sum(n for s, n in run.statuses.items() if 200 <= s < 300)
    return {
        "clients": clients, "requests": count, "rate": count / elapsed,
        "p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "max_ms": lat[-1] * 1000, "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "errors": sum(run.statuses.values()) - ok - run.statuses.get(429, 0),
        "too_many": run.statuses.get(429, 0),
    }


def client_main(argv: list[str]) -> int:
    """``bench_ingest.py --client PORT PATH BODIES_FILE CLIENTS SECONDS``: JSON on stdout."""
    port, path, bodies_file, clients, seconds = argv
    with open(bodies_file, "rb") as f:
        payloads = [bytes.fromhex(line.strip().decode()) for line in f if line.strip()]
    result = asyncio.run(_load(int(port), path, payloads, int(clients), float(seconds),
                               warmup=1.0))
    print(json.dumps(result))
    return 0


def run_client(port: int, path: str, payloads: list[bytes], clients: int, seconds: float,
               folder: str) -> dict[str, Any]:
    """The load client in a process of its own (it must not share the server's GIL)."""
    bodies_file = os.path.join(folder, f"bodies-{len(payloads)}-{len(payloads[0])}.hex")
    with open(bodies_file, "w") as f:
        f.writelines(p.hex() + "\n" for p in payloads)
    out = subprocess.run([sys.executable, __file__, "--client", str(port), path, bodies_file,
                          str(clients), str(seconds)], capture_output=True, text=True,
                         timeout=seconds + 120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"load client failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- servers

#: Raw asyncio server answering every request with a fixed 201 (the client's ceiling).
RAW_SERVER = r"""
import asyncio, sys
ANSWER = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = bytearray()
    def data_received(self, d):
        buf = self.buf; buf += d
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0: return
            n = 0
            for line in bytes(buf[:end]).split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:": n = int(line[15:])
            if len(buf) < end + 4 + n: return
            del buf[:end + 4 + n]
            self.t.write(ANSWER)
async def main():
    s = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await s.serve_forever()
asyncio.run(main())
"""

#: The producer service app (the new path, or the previous thread-per-request handler).
APP = r"""
import sys, anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sensorlib.config import Settings
from sensorlib.services.producer import create_app

def trivial():
    app = FastAPI()
    @app.post("/api/events", status_code=201)
    async def post(request: Request):
        await request.body()
        return JSONResponse({"status": "published"}, status_code=201)
    return app

def previous():
    # The handler this work replaced: ReadingProducer.publish in a worker thread per request.
    from datetime import UTC, datetime, timedelta
    from sensorlib.model.events import parse_reading
    from sensorlib.model.acceptance import EventTimeWindow
    from sensorlib.model.rejections import InvalidReading
    from sensorlib.services.common import problem, read_limited_body
    settings = Settings.from_env()
    app = create_app(settings, simulate=False)
    service = app.state.service
    accept = EventTimeWindow(settings.max_past, settings.max_future)
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", "") != "/api/events"]
    @app.post("/api/events", status_code=201)
    async def publish(request: Request):
        body = await read_limited_body(request)
        try:
            reading = parse_reading(body, now=datetime.now(UTC), accept=accept)
        except InvalidReading as exc:
            return problem(422, [{"field": e.field, "reason": e.reason} for e in exc.errors], "x")
        producer = service.producer
        if producer is None:
            return problem(503, [], "not connected")
        where = await anyio.to_thread.run_sync(lambda: producer.publish(reading))
        return JSONResponse(status_code=201, content={
            "status": "published", "sensorEvent": reading.to_dict(), "topic": where.topic,
            "partition": where.partition, "offset": where.offset})
    return app

def previous_stack():
    # The whole stack before this work: the thread-per-request handler, and the Origin guard
    # as Starlette BaseHTTPMiddleware (run under --loop asyncio --http h11).
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from sensorlib.services.common import SameOriginGuard, _same_origin, problem
    app = previous()

    async def same_origin(request, call_next):
        origin = request.headers.get("origin")
        if origin and not _same_origin(origin, request.headers.get("host")):
            return problem(403, [], "cross-origin request refused")
        return await call_next(request)

    app.user_middleware[:] = [Middleware(BaseHTTPMiddleware, dispatch=same_origin)
                              if m.cls is SameOriginGuard else m for m in app.user_middleware]
    return app

def current():
    return create_app(Settings.from_env(), simulate=False)
"""


class Server:
    """A server process on a free port (stopped on exit)."""

    def __init__(self, argv: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

    def wait(self, path: str = "/health", timeout: float = 60.0) -> Server:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if path is None:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                if httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2).status_code == 200:
                    return self
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server on {self.port} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def app_server(settings: Settings, factory: str, folder: str, workers: int = 1,
               extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Server:
    """``uvicorn --factory benchapp:<factory>`` on a free port (the service's options)."""
    with open(os.path.join(folder, "benchapp.py"), "w") as f:
        f.write(APP)
    port = free_port()
    env = {**os.environ, **settings.to_env(), "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "PYTHONPATH": folder + os.pathsep + os.environ.get("PYTHONPATH", ""),
           **(extra_env or {})}
    argv = [sys.executable, "-m", "uvicorn", "--factory", f"benchapp:{factory}", "--port",
            str(port), "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "5",
            "--limit-concurrency", "1000", "--no-server-header"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    argv += list(args)
    return Server(argv, port, env).wait("/health" if factory != "trivial" else None)


# ----------------------------------------------------------------------------- figures


def bare_send_rate(settings: Settings, payloads: list[bytes]) -> float:
    """Readings/s of a bare kafka-python loop sending the same pre-encoded readings."""
    readings = [r for p in payloads for r in json.loads(p)]
    records = [(r["SensorId"], json.dumps(r, separators=(",", ":")).encode()) for r in readings]
    return plain_send_rate(settings, records, client_id="bench-bare-send")


def run(bootstrap: str | None = None, seconds: float = 5.0,
        clients: tuple[int, ...] = CLIENTS) -> dict[str, Any]:
    """Measure everything above; returns the figures (rates per second, latencies in ms)."""
    import tempfile

    singles = bodies(20_000)
    batches = bodies(60, batch=BATCH)
    out: dict[str, Any] = {"benchmark": "ingest", "machine": machine(), "seconds": seconds,
                           "batch_size": BATCH, "batch_clients": BATCH_CLIENTS}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder, broker(bootstrap) as base:
        port = free_port()
        with Server([sys.executable, "-c", RAW_SERVER, str(port)], port).wait(None) as raw:
            out["client_ceiling_raw"] = run_client(raw.port, "/api/events", singles, 32,
                                                   seconds, folder)
        with app_server(base, "trivial", folder) as trivial:
            out["client_ceiling_fastapi"] = run_client(trivial.port, "/api/events", singles,
                                                       32, seconds, folder)
        for name, factory, args in (("post", "current", ()),
                                    ("post_previous", "previous_stack", OLD_STACK),
                                    ("post_thread", "previous", ())):
            topics = private_topics(base, f"ingest-{name}")
            with app_server(topics, factory, folder, args=args) as app:
                out[name] = [run_client(app.port, "/api/events", singles, n, seconds, folder)
                             for n in clients]
        topics = private_topics(base, "ingest-batch")
        with app_server(topics, "current", folder) as app:
            batch = run_client(app.port, "/api/events/batch", batches, BATCH_CLIENTS, seconds,
                               folder)
        whole = batch["statuses"].get("201", 0) / max(1, sum(batch["statuses"].values()))
        batch["readings_per_s"] = batch["rate"] * BATCH * whole  # whole batches published
        out["batch"] = batch
        out["bare_send_per_s"] = bare_send_rate(private_topics(base, "ingest-bare"), batches)
    by = {r["clients"]: r for r in out["post"]}
    prev = {r["clients"]: r for r in out["post_previous"]}
    thread = {r["clients"]: r for r in out["post_thread"]}
    out["post_vs_previous"] = {str(n): round(by[n]["rate"] / max(prev[n]["rate"], 1e-9), 1)
                               for n in clients}
    out["post_vs_thread_handler"] = {str(n): round(by[n]["rate"] / max(thread[n]["rate"], 1e-9), 2)
                                     for n in clients}
    out["batch_vs_bare_send"] = round(batch["readings_per_s"] / out["bare_send_per_s"], 3)
    out["load_average"] = os.getloadavg()
    return out


def _print(result: dict[str, Any]) -> None:
    print(f"\n{result['machine']}; load average {result['load_average'][0]:.2f}; broker, "
          "service and load client share the machine")
    raw, fa = result["client_ceiling_raw"], result["client_ceiling_fastapi"]
    print(f"client ceiling (32 conns): raw asyncio server {raw['rate']:,.0f}/s, "
          f"trivial FastAPI endpoint {fa['rate']:,.0f}/s")
    print(f"{'row':<28}{'rate':>10}{'p50':>10}{'p99':>10}{'errors':>8}{'429s':>7}  baseline (previous)")
    for row, prev in zip(result["post"], result["post_previous"], strict=True):
        print(f"POST at {row['clients']:>3} clients{'':<10}{row['rate']:>9,.0f}/s"
              f"{row['p50_ms']:>8.1f}ms{row['p99_ms']:>8.1f}ms{row['errors']:>8}{row['too_many']:>7}"
              f"  {prev['rate']:,.0f}/s p99 {prev['p99_ms']:,.0f}ms "
              f"(×{result['post_vs_previous'][str(row['clients'])]})")
    print("the previous handler (ack awaited in a worker thread) in today's stack: "
          + ", ".join(f"{r['clients']} clients {r['rate']:,.0f}/s p99 {r['p99_ms']:.0f}ms"
                      for r in result["post_thread"]))
    b = result["batch"]
    print(f"batch POST readings/s{'':<7}{b['readings_per_s']:>9,.0f}/s  p50 {b['p50_ms']:.0f}ms "
          f"p99 {b['p99_ms']:.0f}ms per {result['batch_size']}-reading batch, errors {b['errors']}"
          f"  bare kafka-python send {result['bare_send_per_s']:,.0f}/s "
          f"(×{result['batch_vs_bare_send']})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client"]:
        return client_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per row")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    args = parser.parse_args(argv)
    result = run(args.bootstrap, args.seconds)
    print(json.dumps(result, indent=2))
    _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
