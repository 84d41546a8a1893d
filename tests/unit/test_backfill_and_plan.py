"""Back-fills end at their end time (never in the future); `sensorlib up` runs the archiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sensorlib.config import Settings
from sensorlib.errors import SensorlibError
from sensorlib.ingest.produce import backfill_simulator
from sensorlib.ingest.simulate import Simulator
from sensorlib.services.supervise import service_plan

END = datetime(2026, 11, 30, 12, tzinfo=UTC)


@pytest.mark.parametrize("count", [1, 7, 5_000])
def test_a_counted_backfill_ends_exactly_at_its_end(count: int) -> None:
    sim, duration = backfill_simulator(seed=4, interval=2.0, count=count, end=END)
    readings = list(sim.stream(count=count, duration=duration))
    assert len(readings) == count
    assert max(r.timestamp for r in readings) == END


def test_ticks_for_leaves_the_simulator_untouched() -> None:
    sim = Simulator(seed=3, interval=1.0, start=END)
    assert sim.ticks_for(10_000) >= 2_000  # silent sensors need extra ticks
    again = Simulator(seed=3, interval=1.0, start=END)
    assert list(sim.stream(count=50)) == list(again.stream(count=50))


def test_start_and_end_bound_the_event_times() -> None:
    sim, duration = backfill_simulator(seed=1, interval=60.0, start="2026-11-23T12:00",
                                       end=END)
    times = [r.timestamp for r in sim.stream(duration=duration)]
    assert min(times) == END - timedelta(days=7)
    assert max(times) < END
    with pytest.raises(SensorlibError, match="not after"):
        backfill_simulator(seed=1, interval=2.0, start=END, end=END)
    with pytest.raises(SensorlibError, match="duration, not a time"):
        backfill_simulator(seed=1, interval=2.0, start="1h", end=END)


def test_a_duration_backfill_ends_now_not_in_the_future() -> None:
    before = datetime.now(UTC)
    sim, duration = backfill_simulator(seed=1, interval=2.0, duration=600)
    times = [r.timestamp for r in sim.stream(duration=duration)]
    assert before <= max(times) <= datetime.now(UTC)
    assert max(times) - min(times) == timedelta(seconds=598)


def test_up_starts_the_archiver_with_a_health_check() -> None:
    settings = Settings.from_env({"SENSORLIB_ARCHIVER_PORT": "18083"})
    plan = {s.name: s for s in service_plan(settings, dashboard=False)}
    archiver = plan["archiver"]
    assert archiver.argv[-3:] == ["archive", "--port", "18083"]
    assert archiver.health_url == "http://127.0.0.1:18083/health"


def test_archiver_settings_from_the_environment() -> None:
    default = Settings.from_env({})
    assert (default.archiver_port, default.archiver_group) == (8083, "archiver-group")
    assert Settings.from_env({"SENSORLIB_ARCHIVER_PORT": "9000"}).archiver_port == 9000
    with pytest.raises(SensorlibError, match="SENSORLIB_ARCHIVER_PORT"):
        Settings.from_env({"SENSORLIB_ARCHIVER_PORT": "http"})
