"""Fixtures of the replay, report and notebook tests: private topics with a fleet's history."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensorlib.config import Settings
from sensorlib.engine.pipeline import Pipeline
from sensorlib.ingest.simulate import Simulator
from sensorlib.kafka.clients import make_producer
from sensorlib.model.events import Alert, Reading

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"

# The notebook tools (back-fill, screenshots) are scripts, not a package; the tests import
# them from their folder (the seeding here sends like the back-fill does).
sys.path.insert(0, str(NOTEBOOKS / "tools"))
from backfill import send_history


@dataclass(frozen=True)
class Seeded:
    """What was published: the readings (in send order) and the alerts the rules raised."""

    settings: Settings
    readings: list[Reading]
    alerts: list[Alert]


def publish(settings: Settings, readings: list[Reading], alerts: list[Alert] = ()) -> None:
    """Send readings (and alerts) keyed by sensor id, and wait for every acknowledgement."""
    producer = make_producer(settings, client_id="test-seed", linger_ms=20)
    try:
        send_history(producer, settings, readings, alerts)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def seed_history(settings: Settings, *, minutes: float = 15.0, interval: float = 1.0,
                 seed: int = 7) -> Seeded:
    """The simulated fleet's last ``minutes`` (event times up to now) and its alerts."""
    start = datetime.now(UTC) - timedelta(minutes=minutes)
    sim = Simulator(seed=seed, interval=interval, start=start)
    readings = list(sim.stream(duration=minutes * 60))
    pipeline = Pipeline(clock="event")
    alerts = list(pipeline.replay(readings))
    publish(settings, readings, alerts)
    return Seeded(settings, readings, alerts)


@pytest.fixture
def seeded(topics: Settings) -> Seeded:
    """Private topics holding 15 minutes of the simulated fleet and its alerts."""
    return seed_history(topics)


def subprocess_env(settings: Settings) -> dict[str, str]:
    """The environment of a child (pytest --nbval, papermill kernel) on these topics."""
    env = dict(os.environ)
    env.update(settings.to_env())
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


PYTHON = sys.executable
