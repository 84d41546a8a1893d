"""Helpers shared by the test suites: service processes on real sockets, topic readers,
waiting for a condition. (Fixtures built on them live in ``tests/conftest.py``.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kafka import TopicPartition

from sensorlib.config import Settings
from sensorlib.kafka.clients import make_consumer
from sensorlib.kafka.ports import free_port
from sensorlib.model.events import Alert, parse_alert


@dataclass
class Running:
    """A service process under test."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    if not settings.catalog_uri:  # the settings' sqlite catalog, not one of the environment's
        env.pop("SENSORLIB_CATALOG_URI", None)
    env.update(settings.to_env())
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_http(url: str, timeout: float = 60.0, ok: tuple[int, ...] = (200,)) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=2.0)
            if answer.status_code in ok:
                return answer
            last = answer.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {ok} within {timeout}s (last: {last})")


class Spawner:
    """Starts ``sensorlib <command>`` processes on free ports; stops them all at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Running] = []

    def __call__(self, command: str, settings: Settings, *args: str, wait: bool = True,
                 health_ok: tuple[int, ...] = (200,),
                 env: dict[str, str] | None = None) -> Running:
        """Start ``sensorlib <command>``; ``env`` adds environment variables."""
        port = free_port()
        log = self.folder / f"{command}-{len(self.started)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sensorlib.cli", command, "--port", str(port), *args],
                env=service_env(settings, **(env or {})), stdout=out, stderr=subprocess.STDOUT,
            )
        running = Running(command, f"http://127.0.0.1:{port}", proc, log)
        self.started.append(running)
        if wait:
            try:
                wait_http(running.url + "/health", ok=health_ok)
            except AssertionError:
                raise AssertionError(f"{command} did not start:\n{running.log_text()[-3000:]}") from None
        return running

    def stop_all(self) -> None:
        for running in self.started:
            if running.process.poll() is None:
                running.process.terminate()
        for running in self.started:
            try:
                running.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                running.process.kill()


def read_topic(settings: Settings, topic: str, *, committed_only: bool = True,
               timeout: float = 10.0) -> list:
    """Every record of ``topic`` up to its current end (no group)."""
    consumer = make_consumer(settings, client_id="test-reader",
                             isolation_level="read_committed" if committed_only else "read_uncommitted")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def read_alerts(settings: Settings) -> list[Alert]:
    return [parse_alert(r.value) for r in read_topic(settings, settings.topic_alerts)]


def owns_partitions(url: str) -> bool:
    """Whether the processor serving ``url`` has been assigned partitions (False if down)."""
    try:
        return bool(httpx.get(url + "/health", timeout=5).json()["assignedPartitions"])
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def eventually(check: Callable[[], object], timeout: float = 30.0, interval: float = 0.2) -> object:
    """Return check()'s first truthy value, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_for_up(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    """Wait until ``sensorlib up`` (writing to ``log``) says it is up and has listed its
    URLs; its log so far.

    Fails at once, with the log, if the process ends first.
    """
    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        return "Press Ctrl-C to stop everything" in log.read_text()

    eventually(up, timeout=timeout, interval=0.5)
    return log.read_text()


@contextmanager
def running_processor(settings: Settings, **options: Any) -> Iterator[Any]:
    """A real :class:`~sensorlib.processor.loop.Processor` running in a thread of the test, so
    the test can read its counters; stopped (and joined) on exit."""
    from sensorlib.processor.loop import Processor

    processor = Processor(settings, **options)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield processor
    finally:
        stop.set()
        thread.join(timeout=30)
