"""Running the whole system from one command: broker, topics, services, dashboard.

:class:`System` starts each part as a child process (its log lines prefixed with its
name), waits until each one's health check answers, prints the URLs, and on Ctrl-C or
SIGTERM stops them all — children die with their parent, so no orphan is left. A child
that exits while the system is up is restarted after a back-off (1 s, 2 s, 4 s … at most
30 s; back to 1 s once it has run for a minute), saying so; the others keep running.

With ``observe`` (``sensorlib up --observe``) the local viewers start first: Zipkin
(traces; the services export to it) and, when installed, Prometheus (scraping every
service's ``/metrics``); see :mod:`sensorlib.observe.viewers`. With ``notify`` (``sensorlib up
--notify``) Alertmanager starts first too (unless ``SENSORLIB_ALERTMANAGER_URL`` names one of
the user's), then the notifier with the other services; Prometheus, when it runs, evaluates
sensorlib's operational alerting rules and sends them to the same Alertmanager; see
:mod:`sensorlib.notify.alertmanager`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from sensorlib.config import Settings
from sensorlib.errors import SensorlibError

_PR_SET_PDEATHSIG = 1
#: Restart back-off of a crashed child: first, at most, and reset once it ran this long.
RESTART_FIRST = 1.0
RESTART_MAX = 30.0
RESTART_RESET = 60.0

#: Starts a restarted child once threads exist (preexec_fn is unsafe then): tie it to
#: its parent (SIGTERM when the parent dies; kept across exec), then exec the command.
_LAUNCHER = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when its parent dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
    os.setsid()


@dataclass
class Service:
    """One child process: its command, its health URL and how it is shown."""

    name: str
    argv: list[str]
    health_url: str
    url: str
    healthy_codes: tuple[int, ...] = (200,)
    process: subprocess.Popen[bytes] | None = None
    #: Where a viewer's output goes (services' output is prefixed onto ours instead).
    log: Path | None = None
    #: Supervision: restarts so far, the next back-off, when it (re)started, when a
    #: restart is due, and whether a restarted child has yet to answer its health check.
    restarts: int = 0
    backoff: float = RESTART_FIRST
    started_at: float = 0.0
    restart_at: float | None = None
    recovering: bool = False


def _pump(name: str, stream: IO[bytes], out: Callable[[str], None]) -> None:
    width = 10
    for raw in iter(stream.readline, b""):
        out(f"{name:<{width}}| {raw.decode(errors='replace').rstrip()}")


def service_plan(settings: Settings, *, dashboard: bool = True,
                 notify: bool = False) -> list[Service]:
    """The services of ``sensorlib up`` with their commands and URLs."""
    py = [sys.executable, "-m", "sensorlib.cli"]
    url = settings.service_url
    plan = [
        Service("producer", [*py, "producer"], url("producer") + "/health",
                url("producer") + "/api/sensors"),
        Service("processor", [*py, "processor"], url("processor") + "/health",
                url("processor") + "/api/aggregates"),
        Service("archiver", [*py, "archive", "--port", str(settings.archiver_port)],
                url("archiver") + "/health", str(settings.warehouse)),
    ]
    if notify:
        plan.append(Service("notifier", [*py, "notify", "--port", str(settings.notifier_port)],
                            url("notifier") + "/health", url("notifier") + "/metrics"))
    if dashboard:
        try:
            from sensorlib.dashboard import serve_command
        except ImportError:
            serve_command = None  # type: ignore[assignment]
        if serve_command is not None:
            argv = serve_command(settings)
            plan.append(Service("dashboard", argv, url("dashboard") + "/liveness",
                                url("dashboard") + "/live"))
    return plan


#: Services whose ``/metrics`` Prometheus scrapes (all of them).
METRICS_SERVICES = ("producer", "processor", "archiver", "dashboard", "notifier")


def alertmanager_plan(settings: Settings) -> list[Service]:
    """The Alertmanager of ``sensorlib up --notify`` (none with SENSORLIB_ALERTMANAGER_URL),
    its ``alertmanager.yml`` written into ``<data>/notify``."""
    if settings.alertmanager_url:
        return []
    from sensorlib.notify.alertmanager import alertmanager_command, alertmanager_config

    folder = settings.data_dir / "notify"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "alertmanager.yml"
    config.write_text(alertmanager_config(settings, webhooks=settings.webhook_urls,
                                          slack_url=settings.slack_webhook_url))
    config.chmod(0o600)  # it may hold the SMTP password
    port = settings.alertmanager_port
    return [Service("alertmanager", alertmanager_command(config, folder / "data", port),
                    f"http://127.0.0.1:{port}/-/ready", f"http://127.0.0.1:{port}/#/alerts",
                    log=folder / "alertmanager.log")]


def viewer_plan(settings: Settings, services: list[Service],
                out: Callable[[str], None], *,
                notify: bool = False) -> tuple[list[Service], dict[str, str]]:
    """The viewers of ``sensorlib up --observe`` and the environment the services need to
    report to them (the Zipkin endpoint). Prometheus is left out, saying how to install
    it, when it is missing."""
    from sensorlib.observe.viewers import (
        PROMETHEUS_MISSING,
        prometheus_command,
        prometheus_config,
        prometheus_executable,
        resolve_zipkin,
        viewer_ports,
        viewer_urls,
        zipkin_command,
        zipkin_spans_endpoint,
    )

    zipkin_port, prometheus_port = viewer_ports(settings)
    urls = viewer_urls(settings)
    folder = settings.data_dir / "observe"
    folder.mkdir(parents=True, exist_ok=True)
    jar = resolve_zipkin(settings, progress=lambda m: out(f"{'zipkin':<10}| {m}"))
    viewers = [Service("zipkin", zipkin_command(jar, zipkin_port), urls["zipkin"][1],
                       urls["zipkin"][0], log=folder / "zipkin.log")]
    env = {"OTEL_EXPORTER_ZIPKIN_ENDPOINT": zipkin_spans_endpoint(zipkin_port)}
    if prometheus_executable() is None:
        out(f"{'prometheus':<10}| {PROMETHEUS_MISSING}")
        return viewers, env
    targets = {s.name: s.health_url.split("/")[2] for s in services
               if s.name in METRICS_SERVICES}
    targets["zipkin"] = f"127.0.0.1:{zipkin_port}"
    targets["prometheus"] = f"127.0.0.1:{prometheus_port}"
    config = folder / "prometheus.yml"
    text = prometheus_config(targets, metrics_paths={"zipkin": "/prometheus"})
    if notify:  # sensorlib's own health, alerting through the same Alertmanager
        from sensorlib.notify.alertmanager import alerting_section, operational_rules

        rules = folder / "sensorlib-rules.yml"
        rules.write_text(operational_rules())
        text += alerting_section(settings.alertmanager.split("//", 1)[-1].rstrip("/"), rules)
    config.write_text(text)
    viewers.append(Service("prometheus", prometheus_command(config, folder / "prometheus-data",
                                                            prometheus_port),
                           urls["prometheus"][1], urls["prometheus"][0],
                           log=folder / "prometheus.log"))
    return viewers, env


class System:
    """The broker (unless Kafka is external), the topics and the services, supervised."""

    def __init__(self, settings: Settings, *, dashboard: bool = True, observe: bool = False,
                 notify: bool = False, out: Callable[[str], None] | None = None,
                 catalog: str | None = None) -> None:
        if catalog not in (None, "sqlite", "postgres"):
            raise SensorlibError(f"catalog must be 'sqlite' or 'postgres', not {catalog!r}")
        self.settings = settings
        #: ``postgres``: the local PostgreSQL (``sensorlib db``) holds the archive's catalog;
        #: ``sqlite``: the warehouse's sqlite file; None: ``SENSORLIB_CATALOG_URI`` decides.
        self.catalog = catalog
        self.db: Any = None
        self._started_db = False
        self.services = service_plan(settings, dashboard=dashboard, notify=notify)
        self.observe = observe
        self.notify = notify
        self.viewers: list[Service] = []
        self.out = out or (lambda line: print(line, flush=True))
        self.kafka: Any = None
        self._started_broker = False
        self._pumps: list[threading.Thread] = []
        self._env: dict[str, str] = dict(os.environ)

    def start(self, timeout: float = 180.0) -> None:
        """Start everything and wait until each part is healthy (or raise, stopping all)."""
        try:
            self._start_broker()
            catalog_env = self._start_catalog()
            from sensorlib.kafka.admin import ensure_topics, wait_for_kafka

            wait_for_kafka(self.settings, timeout=60)
            for topic, status in ensure_topics(self.settings).items():
                self.out(f"{'topics':<10}| {topic}: {status}")
            env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=self.settings.bootstrap_servers,
                       PYTHONUNBUFFERED="1")
            if self.catalog == "sqlite":
                env.pop("SENSORLIB_CATALOG_URI", None)
            env.update(catalog_env)
            if self.observe or self.notify:
                env = {**self._start_viewers(timeout), **env}  # a user's own endpoint wins
            self._env = env
            # All children are forked before any pump thread exists: preexec_fn is only
            # safe in a process without other threads.
            for service in self.services:
                service.process = subprocess.Popen(
                    service.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env=env,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads yet
                )
            for service in self.services:
                assert service.process is not None
                pump = threading.Thread(target=_pump, args=(service.name, service.process.stdout, self.out),
                                        daemon=True)
                pump.start()
                self._pumps.append(pump)
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_viewers(self, timeout: float) -> dict[str, str]:
        """Start the viewers (output to their log files: no pump thread yet) and wait for
        them, so the services' first spans are not lost; returns the services' extra env."""
        self.viewers, env = [], {}
        if self.notify:
            self.viewers = alertmanager_plan(self.settings)
        if self.observe:
            more, env = viewer_plan(self.settings, self.services, self.out, notify=self.notify)
            self.viewers += more
        for viewer in self.viewers:
            assert viewer.log is not None
            with open(viewer.log, "ab") as log:
                viewer.process = subprocess.Popen(
                    viewer.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads yet
                )
            self.out(f"{viewer.name:<10}| starting (log: {viewer.log})")
        self._wait_healthy(timeout, self.viewers)
        return env

    def _start_broker(self) -> None:
        if self.settings.external:
            self.out(f"{'kafka':<10}| using the configured cluster at {self.settings.bootstrap_servers}")
            return
        from sensorlib.kafka.broker import LocalKafka

        self.kafka = LocalKafka.from_settings(self.settings)
        already = self.kafka.running()
        self.kafka.start(progress=lambda m: self.out(f"{'kafka':<10}| {m}"))
        self._started_broker = not already

    def _start_catalog(self) -> dict[str, str]:
        """With ``catalog="postgres"``: start the local PostgreSQL unless it runs; the
        children's ``SENSORLIB_CATALOG_URI``."""
        if self.catalog != "postgres":
            return {}
        from sensorlib.config import mask_uri
        from sensorlib.history.postgres import LocalPostgres

        if self.settings.catalog_uri:
            self.out(f"{'catalog':<10}| --catalog postgres: the local server, not "
                     f"SENSORLIB_CATALOG_URI={mask_uri(self.settings.catalog_uri)}")
        self.db = LocalPostgres.from_settings(self.settings)
        already = self.db.running()
        self.db.start(progress=lambda m: self.out(f"{'catalog':<10}| {m}"))
        self._started_db = not already
        self.settings = self.settings.replace(catalog_uri=self.db.uri)
        return {"SENSORLIB_CATALOG_URI": self.db.uri}

    def _wait_healthy(self, timeout: float, parts: list[Service] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.services if parts is None else parts)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for service in list(pending):
                    if service.process and service.process.poll() is not None:
                        where = f"see {service.log}" if service.log else "its last lines are above"
                        raise SensorlibError(f"{service.name} exited with code "
                                             f"{service.process.returncode} during start-up "
                                             f"({where})")
                    try:
                        if client.get(service.health_url).status_code in service.healthy_codes:
                            pending.remove(service)
                            self.out(f"{service.name:<10}| healthy")
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    names = ", ".join(s.name for s in pending)
                    raise SensorlibError(f"not healthy after {timeout:.0f}s: {names}")
                time.sleep(0.3)

    def urls(self) -> list[tuple[str, str]]:
        from sensorlib.history.catalogs import describe_catalog

        rows = [("kafka", self.settings.bootstrap_servers)]
        rows += [(s.name, s.url) for s in self.services + self.viewers]
        rows.append(("catalog", describe_catalog(self.settings)))
        return rows

    def supervise(self, now: float | None = None) -> None:
        """Restart children that exited (call it every half second or so, from the thread
        that started the system): each after its back-off, saying so; a restarted one is
        reported healthy again once its health check answers."""
        now = time.monotonic() if now is None else now
        for service in self.services + self.viewers:
            process = service.process
            if process is None:
                continue
            if service.restart_at is None and process.poll() is not None:
                if now - service.started_at >= RESTART_RESET:
                    service.backoff = RESTART_FIRST  # it ran fine for a while
                delay = service.backoff
                service.backoff = min(delay * 2, RESTART_MAX)
                service.restart_at = now + delay
                service.recovering = False
                self.out(f"{'up':<10}| {service.name} {_ended(process.returncode)}; "
                         f"restarting in {delay:g} s")
            elif service.restart_at is not None and now >= service.restart_at:
                service.restart_at = None
                service.restarts += 1
                try:
                    self._respawn(service)
                except OSError as exc:  # e.g. out of processes: try again later
                    self.out(f"{'up':<10}| cannot restart {service.name}: {exc}")
                    service.restart_at = now + service.backoff
                    continue
                service.recovering = True
                self.out(f"{'up':<10}| {service.name} restarted (pid {service.process.pid}, "
                         f"restart {service.restarts})")
            elif service.recovering and process.poll() is None:
                try:
                    code = httpx.get(service.health_url, timeout=0.5).status_code
                except httpx.HTTPError:
                    continue
                if code in service.healthy_codes:
                    service.recovering = False
                    self.out(f"{service.name:<10}| healthy again")

    def _respawn(self, service: Service) -> None:
        """Start ``service`` again (threads exist now: no preexec_fn, see _LAUNCHER)."""
        argv = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *service.argv]
        if service.log is not None:
            with open(service.log, "ab") as log:
                service.process = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True)
        else:
            service.process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self._env, start_new_session=True)
            pump = threading.Thread(target=_pump, args=(service.name, service.process.stdout,
                                                        self.out), daemon=True)
            pump.start()
            self._pumps.append(pump)
        service.started_at = time.monotonic()

    def alive(self) -> bool:
        return all(s.process is not None and s.process.poll() is None
                   for s in self.services + self.viewers)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the services (SIGTERM, then SIGKILL), then the broker if this started it."""
        everything = self.services + self.viewers
        for service in everything:
            if service.process and service.process.poll() is None:
                service.process.terminate()
        deadline = time.monotonic() + timeout
        for service in everything:
            if service.process is None:
                continue
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait(timeout=5)
        for pump in self._pumps:
            pump.join(timeout=2)
        if self.kafka is not None and self._started_broker:
            self.out(f"{'kafka':<10}| stopping")
            self.kafka.stop()
        if self.db is not None and self._started_db:
            self.out(f"{'catalog':<10}| stopping PostgreSQL")
            self.db.stop()


def _ended(code: int | None) -> str:
    """How a child ended, in words."""
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def run_system(settings: Settings, *, dashboard: bool = True, observe: bool = False,
               notify: bool = False, catalog: str | None = None) -> int:
    """``sensorlib up``: start everything, print the URLs, run until Ctrl-C or SIGTERM.

    ``observe`` also starts the trace and metrics viewers (:func:`viewer_plan`);
    ``catalog="postgres"`` the local PostgreSQL for the archive's catalog."""
    system = System(settings, dashboard=dashboard, observe=observe, notify=notify,
                    catalog=catalog)
    stop = threading.Event()

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # during start-up: System.start stops what it started

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        system.start()
    except KeyboardInterrupt:
        print("Interrupted during start-up; stopped.", flush=True)
        return 130
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    urls = system.urls()  # first: the catalog's line imports pyiceberg (seconds)
    print("\nsensorlib is up:", flush=True)
    for name, url in urls:
        print(f"  {name:<10} {url}", flush=True)
    print(f"  notebooks  make lab  (JupyterLab on http://127.0.0.1:{settings.jupyter_port})")
    print("Press Ctrl-C to stop everything.\n", flush=True)
    while not stop.is_set():
        system.supervise()  # a crashed child is restarted with back-off; the rest run on
        stop.wait(0.5)
    print("Stopping …", flush=True)
    system.stop()
    print("Stopped.", flush=True)
    return 0
