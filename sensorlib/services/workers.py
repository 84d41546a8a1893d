"""``sensorlib processor --workers N``: N processor processes in one group, one API in front
(and ``sensorlib archive --workers N``: N archivers in one group, one ``/health`` in front).

One Python process runs the processor loop on one core (the GIL); a group of N processes
shares the readings topic's partitions (partitions ≥ N, else some workers idle) and uses
N cores. Each worker is an ordinary ``sensorlib processor --instance <i>-w<k>`` child on a
private 127.0.0.1 port (its own transactional id, so exactly-once holds per partition as
with separate instances). The front process answers on the processor's port with the
reference's API over all workers:

- ``/api/aggregates``: the union of the workers' (each owns different sensors' partitions);
- ``/api/alerts``: merged newest first (``limit``, ``sensorId`` as for one processor);
- ``/api/rules``: the first worker's table, ``sensors`` of all, ``workers``: each one's
  version; ``PUT``/``DELETE /api/rules/{layer}`` go to the first worker (which writes the
  ``sensor-rules`` topic; every worker follows it);
- ``/health``: 200 only when every worker is healthy; ``problems`` name the worker;
  ``assignedPartitions``, ``lag`` and the counters are the workers' summed;
- ``/metrics``: every worker's metrics with a ``worker`` label.

A worker that exits is started again after a second (crash-only, like the loop itself).

``sensorlib archive --workers N`` runs N ``sensorlib archive`` children the same way (the
archivers split the partitions of the group ``archiver-group``; see
:mod:`sensorlib.history.archiver`); its front answers ``/health`` (200 only when every
archiver is healthy; rows archived, conflicts and skipped records summed per table) and
``/metrics`` (labelled ``worker``): :func:`create_archive_front_app`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from sensorlib import __version__
from sensorlib.config import Settings
from sensorlib.errors import BodyTooLarge, BodyTooSlow, UsageError
from sensorlib.kafka.ports import free_port
from sensorlib.services.common import guard, health_response, read_limited_body

__all__ = ["Workers", "create_archive_front_app", "create_front_app", "merge_metrics"]

log = logging.getLogger("sensorlib.workers")

#: Counters of the workers' ``/health`` that the front sums.
SUMMED = ("lag", "processed", "invalid", "duplicates", "alerts", "transactions", "sessions")
RESTART_DELAY = 1.0


class Workers:
    """N ``sensorlib processor`` (or ``service``) child processes on private ports,
    restarted if they exit; ``options`` are added to each child's command line."""

    def __init__(self, settings: Settings, count: int, instance: str = "1", *,
                 service: str = "processor", options: Iterable[str] = ()) -> None:
        if count < 1:
            raise UsageError(f"--workers must be at least 1 (got {count})")
        self.settings = settings
        self.service = service
        self.options = list(options)
        self.names = [f"{instance}-w{k}" for k in range(1, count + 1)]
        self.ports = [free_port() for _ in self.names]
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def urls(self) -> list[str]:
        """Each worker's base URL (127.0.0.1, private port)."""
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def _spawn(self, k: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.settings.to_env()}
        command = [sys.executable, "-m", "sensorlib.cli", self.service]
        if self.service == "processor":
            command += ["--instance", self.names[k]]
        command += ["--host", "127.0.0.1", "--port", str(self.ports[k]), *self.options]
        return subprocess.Popen(command, env=env)

    def start(self) -> None:
        """Start every worker and the thread that restarts the ones that exit."""
        for k in range(len(self.names)):
            self._procs[k] = self._spawn(k)
        self._watcher = threading.Thread(target=self._watch, name="workers-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(RESTART_DELAY):
            for k, proc in enumerate(self._procs):
                if proc is not None and proc.poll() is not None and not self._stop.is_set():
                    log.warning("%s worker %s exited with %s; starting it again",
                                self.service, self.names[k], proc.returncode)
                    self._procs[k] = self._spawn(k)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after ``timeout``)."""
        self._stop.set()
        procs = [p for p in self._procs if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def merge_metrics(texts: dict[str, str]) -> bytes:
    """Several workers' Prometheus text expositions as one, each sample labelled ``worker``.

    >>> a = '# HELP x_total X.\\n# TYPE x_total counter\\nx_total 2.0\\n'
    >>> print(merge_metrics({"w1": a, "w2": a}).decode().strip())
    # HELP x_total X.
    # TYPE x_total counter
    x_total{worker="w1"} 2.0
    x_total{worker="w2"} 2.0
    """
    families: dict[str, Metric] = {}
    for worker, text in texts.items():
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation,
                                                        family.type, family.unit)
            for sample in family.samples:
                merged.add_sample(sample.name, {**sample.labels, "worker": worker},
                                  sample.value, sample.timestamp, sample.exemplar)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families.values()))
    return generate_latest(registry)


class _Fixed:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> list[Metric]:
        return self._families


Answers = dict[str, "httpx.Response | Exception"]


def _front(settings: Settings, workers: Workers, what: str, service_name: str | None = None
           ) -> tuple[FastAPI, Callable[..., Awaitable[Answers]], dict[str, str],
                      httpx.AsyncClient]:
    """What every front shares: the app (Host guard, a lifespan that starts and stops the
    workers), ``/metrics`` merged over the workers, ``each(path, **params)`` — one GET to
    every worker at once, ``{url: response or the HTTP error}`` — the workers' names by URL,
    and the client (closed with the app)."""
    client = httpx.AsyncClient(timeout=5.0)
    names = dict(zip(workers.urls, workers.names, strict=True))

    async def each(path: str, **params: Any) -> Answers:
        async def one(url: str) -> httpx.Response | Exception:
            try:
                return await client.get(url + path, params=params or None)
            except httpx.HTTPError as exc:
                return exc
        answers = await asyncio.gather(*(one(u) for u in workers.urls))
        return dict(zip(workers.urls, answers, strict=True))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers.start()
        try:
            yield
        finally:
            await client.aclose()
            await asyncio.to_thread(workers.stop)

    app = FastAPI(title=f"sensorlib {what} ({len(workers.names)} workers)",
                  version=__version__, lifespan=lifespan)
    app.state.settings, app.state.service_name = settings, service_name or what
    guard(app, settings)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Every worker's Prometheus metrics, labelled ``worker``."""
        texts = {names[url]: answer.text for url, answer in (await each("/metrics")).items()
                 if isinstance(answer, httpx.Response) and answer.status_code == 200}
        return Response(merge_metrics(texts), media_type=CONTENT_TYPE_LATEST)

    return app, each, names, client


def _worker_health(answers: Answers, names: dict[str, str]
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """The workers' ``/health`` bodies (each with its ``worker`` name) and their problems,
    a worker that does not answer or says it is unhealthy being one."""
    bodies: list[dict[str, Any]] = []
    problems: list[str] = []
    for url, answer in answers.items():
        name = names[url]
        if isinstance(answer, Exception):
            problems.append(f"worker {name} does not answer ({type(answer).__name__})")
            continue
        body = answer.json()
        bodies.append({"worker": name, **body})
        problems.extend(f"worker {name}: {p}" for p in body.get("problems", []))
        if answer.status_code != 200 and not body.get("problems"):
            problems.append(f"worker {name} is {body.get('status', 'unhealthy')}")
    return bodies, problems


def create_front_app(settings: Settings, workers: Workers) -> FastAPI:
    """The API in front of the workers (module docstring); starts and stops them."""
    app, each, names, client = _front(settings, workers, "processor")

    @app.get("/api/aggregates")
    async def aggregates() -> dict[str, dict[str, Any]]:
        """Per-sensor aggregates over the last window, keyed by sensorId (all workers)."""
        out: dict[str, dict[str, Any]] = {}
        for answer in (await each("/api/aggregates")).values():
            if isinstance(answer, httpx.Response) and answer.status_code == 200:
                out.update(answer.json())
        return dict(sorted(out.items()))

    @app.get("/api/alerts")
    async def alerts(
        limit: int = Query(100, ge=1, le=1000),
        sensorId: str | None = Query(None, max_length=64),
    ) -> list[dict[str, Any]]:
        """Recent alerts of all workers, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if sensorId is not None:
            params["sensorId"] = sensorId
        merged: dict[str, dict[str, Any]] = {}
        for answer in (await each("/api/alerts", **params)).values():
            if isinstance(answer, httpx.Response) and answer.status_code == 200:
                merged.update((a["alertId"], a) for a in answer.json())
        items = sorted(merged.values(), key=lambda a: (a["detectedAt"], a["alertId"]),
                       reverse=True)
        return items[:limit]

    @app.get("/api/rules")
    async def rules() -> JSONResponse:
        """The rule settings table (the first worker's) and every worker's sensors."""
        out: dict[str, Any] | None = None
        versions: dict[str, str | None] = {}
        for url, answer in (await each("/api/rules")).items():
            if not (isinstance(answer, httpx.Response) and answer.status_code == 200):
                versions[names[url]] = None
                continue
            body = answer.json()
            versions[names[url]] = body["version"]
            if out is None:
                out = body
            else:
                out["sensors"].update(body["sensors"])
        if out is None:
            return JSONResponse(status_code=503, content={
                "error": "no worker answers", "detail": [{"field": "workers",
                                                          "reason": "none answered"}]})
        out["workers"] = versions
        return JSONResponse(out)

    @app.put("/api/rules/{layer:path}")
    @app.delete("/api/rules/{layer:path}")
    async def write_rules(layer: str, request: Request) -> Response:
        """Forwarded to the first worker (it writes the topic; all workers follow it)."""
        headers = {"Content-Type": request.headers.get("content-type", "application/json")}
        if "authorization" in request.headers:  # the worker checks the token too
            headers["Authorization"] = request.headers["authorization"]
        try:
            body = await read_limited_body(request)
        except (BodyTooLarge, BodyTooSlow):
            return JSONResponse(status_code=413, content={
                "error": "invalid request body",
                "detail": [{"field": "body", "reason": "too large or too slow"}]})
        try:
            answer = await client.request(
                request.method, workers.urls[0] + "/api/rules/" + quote(layer, safe=""),
                content=body, timeout=30.0, headers=headers)
        except httpx.HTTPError as exc:
            return JSONResponse(status_code=503, content={
                "error": "the first worker did not answer",
                "detail": [{"field": "workers", "reason": str(exc)}]})
        return Response(answer.content, status_code=answer.status_code,
                        media_type="application/json")

    @app.get("/health")
    async def health() -> JSONResponse:
        bodies, problems = _worker_health(await each("/health"), names)
        summed = {key: sum(b.get(key) or 0 for b in bodies) for key in SUMMED}
        first = bodies[0] if bodies else {}
        return health_response({
            "status": "unhealthy" if problems else "healthy",
            "ok": not problems,
            "problems": problems,
            "kafka": first.get("kafka", "unknown"),
            "bootstrapServers": settings.bootstrap_servers,
            "group": settings.processor_group,
            "workers": bodies,
            "assignedPartitions": sorted(p for b in bodies
                                         for p in b.get("assignedPartitions", [])),
            **summed,
        })

    return app


def create_archive_front_app(settings: Settings, workers: Workers) -> FastAPI:
    """``/health`` and ``/metrics`` in front of N archivers (module docstring); starts and
    stops them."""
    app, each, names, _ = _front(settings, workers, "archive", service_name="archiver")

    @app.get("/health")
    async def health() -> JSONResponse:
        bodies, problems = _worker_health(await each("/health"), names)
        tables: dict[str, dict[str, Any]] = {}
        for body in bodies:
            for topic, figures in (body.get("tables") or {}).items():
                into = tables.setdefault(topic, {"table": figures.get("table")})
                for key in ("archived", "invalid", "duplicates", "skipped", "conflicts",
                            "commits", "pending", "lag"):
                    into[key] = (into.get(key) or 0) + (figures.get(key) or 0)
        return health_response({
            "status": "unhealthy" if problems else "ok",
            "ok": not problems,
            "problems": problems,
            "kafka": bodies[0].get("kafka", "unknown") if bodies else "unknown",
            "group": settings.archiver_group,
            "warehouse": str(settings.warehouse),
            "tables": tables,
            "workers": bodies,
        })

    return app
