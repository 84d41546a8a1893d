"""Fixtures of the observability tests: services started with extra environment."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sensorlib.broker import free_port
from sensorlib.config import Settings
from tests.support import Running, Spawner, service_env, wait_http


class EnvSpawner(Spawner):
    """:class:`tests.support.Spawner` whose services get extra environment variables."""

    def start(self, command: str, settings: Settings, *args: str,
              env: dict[str, str] | None = None, wait: bool = True) -> Running:
        port = free_port()
        log = self.folder / f"{command}-{len(self.started)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sensorlib.cli", command, "--port", str(port), *args],
                env=service_env(settings, **(env or {})), stdout=out, stderr=subprocess.STDOUT)
        running = Running(command, f"http://127.0.0.1:{port}", proc, log)
        self.started.append(running)
        if not wait:
            return running
        try:
            wait_http(running.url + "/health")
        except AssertionError:
            raise AssertionError(f"{command} did not start:\n{running.log_text()[-3000:]}") from None
        return running


@pytest.fixture
def spawn_env(tmp_path: Path) -> Iterator[EnvSpawner]:
    spawner = EnvSpawner(tmp_path)
    yield spawner
    spawner.stop_all()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``GET url/metrics`` parsed by prometheus_client: {(sample name, labels): value}."""
    answer = httpx.get(url + "/metrics", timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))
