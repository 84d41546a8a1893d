"""Fixtures of the dashboard tests: a served dashboard subprocess and headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.dashboard import app_path, serve_command
from sensorlib.ingest.simulate import FaultRates, Simulator
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.clients import make_producer
from sensorlib.kafka.ports import free_port
from sensorlib.model.events import Alert, Reading, alert_id
from tests.conftest import private_settings

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@dataclass
class Dashboard:
    """A ``panel serve dashboards/live.py`` process under test."""

    url: str
    settings: Settings
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def plain_panel_serve(settings: Settings) -> list[str]:
    """``panel serve dashboards/live.py`` as a user may run it: no Host guard, no flags."""
    return [sys.executable, "-m", "panel", "serve", str(app_path()),
            "--port", str(settings.dashboard_port), "--address", "127.0.0.1"]


def start_dashboard(settings: Settings, log: Path, *, wait: float = 90.0,
                    command: Callable[[Settings], list[str]] = serve_command,
                    env: dict[str, str] | None = None) -> Dashboard:
    """Run the dashboard server as a subprocess on a free port; return once it answers.

    ``command`` builds the argv (default: what ``sensorlib dashboard`` runs); ``env``
    adds variables (e.g. ``SENSORLIB_STALE_AFTER``).
    """
    port = free_port()
    settings = settings.replace(dashboard_port=port)
    env = {**os.environ, **settings.to_env(), "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as out:
        process = subprocess.Popen(command(settings), env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    dashboard = Dashboard(f"http://127.0.0.1:{port}/live", settings, process, log)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dashboard exited with {process.returncode}:\n{dashboard.log_text()}")
        try:
            if httpx.get(dashboard.url, timeout=5.0).status_code == 200:
                return dashboard
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    dashboard.stop()
    raise AssertionError(f"dashboard did not answer within {wait}s:\n{dashboard.log_text()}")


def seed_fleet(settings: Settings, seconds: float = 120.0) -> int:
    """Publish the reference fleet's last ``seconds`` (event time up to now)."""
    start = datetime.now(UTC) - timedelta(seconds=seconds)
    sim = Simulator(seed=11, faults=FaultRates.none(), interval=2.0, start=start)
    producer = make_producer(settings)
    n = 0
    try:
        for reading in sim.stream(duration=seconds):
            producer.send(settings.topic_readings, key=reading.sensor_id, value=reading.to_json())
            n += 1
        producer.flush(30)
    finally:
        producer.close()
    return n


def produce_reading(settings: Settings, sensor_id: str, temperature: float, humidity: float,
                    location: str) -> Reading:
    """Publish one reading stamped now (what a POST to the producer service does)."""
    reading = Reading(sensor_id=sensor_id, temperature=temperature, humidity=humidity,
                      location=location, timestamp=datetime.now(UTC))
    producer = make_producer(settings)
    try:
        producer.send(settings.topic_readings, key=sensor_id, value=reading.to_json())
        producer.flush(30)
    finally:
        producer.close()
    return reading


def produce_alert(settings: Settings, sensor_id: str, location: str, reason: str,
                  severity: str = "critical", temperature: float = 42.5) -> Alert:
    """Publish one alert as the processor would."""
    now = datetime.now(UTC)
    alert = Alert(alert_id=alert_id(sensor_id, f"test-{uuid.uuid4().hex[:6]}", now),
                  sensor_id=sensor_id, location=location, temperature=temperature,
                  humidity=55.0, timestamp=now, detected_at=now, rule="threshold",
                  severity=severity, reason=reason)
    producer = make_producer(settings)
    try:
        producer.send(settings.topic_alerts, key=sensor_id, value=alert.to_json())
        producer.flush(30)
    finally:
        producer.close()
    return alert


class Kit:
    """The helpers above, for tests (they cannot import a conftest)."""

    private_settings = staticmethod(private_settings)
    start_dashboard = staticmethod(start_dashboard)
    plain_panel_serve = staticmethod(plain_panel_serve)
    produce_reading = staticmethod(produce_reading)
    produce_alert = staticmethod(produce_alert)
    seed_fleet = staticmethod(seed_fleet)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    """Helpers to seed Kafka and start dashboards."""
    return Kit


@pytest.fixture(scope="module")
def dash_settings(base_settings: Settings, kafka_cluster: str) -> Settings:
    """Module-wide private topics (one served dashboard per test module keeps this quick)."""
    settings = private_settings(base_settings, kafka_cluster)
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="module")
def dashboard(dash_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The fleet's last two minutes seeded, then the dashboard served (it back-fills them)."""
    seed_fleet(dash_settings)
    running = start_dashboard(dash_settings, tmp_path_factory.mktemp("dashboard") / "panel.log")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A fresh page that records every JavaScript dialog (an XSS would open one)."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})  # type: ignore[attr-defined]
    page = context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]

    def on_dialog(dialog: object) -> None:
        page.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", on_dialog)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def screenshot(page: object) -> Callable[[str], Path]:
    """Save the page to ``artifacts/screenshots/<name>.png`` (for a human to look at)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shoot(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path

    return shoot
