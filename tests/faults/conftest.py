"""Fixtures of the fault tests: brokers of our own to kill, a paced producer that knows
what Kafka acknowledged, and the offline run the live alerts are compared with."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from kafka.errors import KafkaError

from sensorlib.config import Settings
from sensorlib.engine.pipeline import run_frame
from sensorlib.errors import BrokerError
from sensorlib.ingest.produce import PublishError, ReadingProducer
from sensorlib.ingest.simulate import Simulator
from sensorlib.kafka.admin import ensure_topics, group_lag
from sensorlib.kafka.broker import LocalKafka
from sensorlib.kafka.ports import free_port
from sensorlib.model.events import Alert, Reading, parse_reading
from sensorlib.processor.loop import rules_from_settings
from tests.conftest import private_settings
from tests.support import Spawner, read_alerts, read_topic

#: Heap of each broker JVM we start: small, several run at once on a 2-core machine.
HEAP = "384m"

Key = tuple[str, datetime]


def key_of(reading: Reading) -> Key:
    """What identifies a reading: its sensor and event time (unique per sensor here)."""
    return (reading.sensor_id, reading.timestamp)


def start_kafka(directory: Path, base: Settings, nodes: int = 1, attempts: int = 2) -> LocalKafka:
    """A started LocalKafka of ``nodes`` nodes on free ports in ``directory``.

    Only a lost port race is retried (on new ports): between :func:`free_port` closing its
    probe socket and the JVM binding, another process on this shared machine may take the
    port, and the broker's log then says "Address already in use". Any other failure is
    raised as it is (LocalKafka once reported healthy starting nodes as exited: fixed in
    ``LocalKafka._exited``, no longer hidden by a retry here).
    """
    for attempt in range(attempts):
        folder = directory / f"try-{attempt}"
        kafka = LocalKafka(folder, nodes=nodes, ports=[free_port() for _ in range(nodes)],
                           controller_ports=[free_port() for _ in range(nodes)],
                           settings=base, heap=HEAP)
        try:
            return kafka.start(timeout=180)
        except BrokerError as exc:
            kafka.stop()
            _kill_jvms_under(folder)
            if attempt == attempts - 1 or "Address already in use" not in str(exc):
                raise
    raise AssertionError("not reached")


def _kill_jvms_under(folder: Path) -> None:
    """SIGKILL the broker JVMs started from ``folder`` that LocalKafka lost track of."""
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "kafka.Kafka" in cmdline and any(str(folder) in part for part in cmdline):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                proc.wait(10)


@pytest.fixture(scope="module")
def lone_kafka(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A single-node broker of this module's own, free to be killed (never the session's)."""
    kafka = start_kafka(tmp_path_factory.mktemp("lone-kafka"), base_settings)
    yield kafka
    kafka.stop()


@pytest.fixture
def lone(lone_kafka: LocalKafka, base_settings: Settings) -> Iterator[Settings]:
    """Private, created topics on ``lone_kafka``; the broker is running (and not paused)
    again afterwards."""
    if not lone_kafka.running():
        lone_kafka.start(timeout=120)
    settings = private_settings(base_settings, lone_kafka.bootstrap_servers)
    ensure_topics(settings)
    yield settings
    pid = lone_kafka.pid(lone_kafka.nodes[0])
    with contextlib.suppress(psutil.Error):
        if pid is not None and psutil.Process(pid).status() == psutil.STATUS_STOPPED:
            psutil.Process(pid).resume()
    if not lone_kafka.running():
        lone_kafka.start(timeout=120)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    """Start ``sensorlib`` services as real processes; all are stopped after the test."""
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.stop_all()


@pytest.fixture
def chromium_page(browser: Any) -> Iterator[Any]:
    """A page in the session's headless Chromium (see ``tests/conftest.py``)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


# --------------------------------------------------------------------------- data


def spiked_stream(ticks: int, start: datetime, *, seed: int = 11,
                  probe_every: int = 0, probe_prefix: str = "probe") -> list[Reading]:
    """The fleet over ``ticks`` ticks, sensor-02 spiking every 40th tick, with probes.

    A probe (every ``probe_every`` readings) is the only reading of a sensor of its
    own at 45 °C: it must raise exactly one threshold alert, so each probe checks on its
    own that its reading was neither skipped nor processed twice.
    """
    sim = Simulator(seed=seed, interval=2.0, start=start)
    out: list[Reading] = []
    for i, reading in enumerate(sim.stream(count=5 * ticks)):
        if reading.sensor_id == "sensor-02" and (i // 5) % 40 == 0:
            reading = reading.model_copy(update={"temperature": 45.0})
        out.append(reading)
        if probe_every and i % probe_every == probe_every - 1:
            out.append(Reading(sensor_id=f"{probe_prefix}-{i:06d}", temperature=45.0,
                               humidity=50.0, location="Fault test", timestamp=reading.timestamp))
    return out


def is_probe(sensor_id: str) -> bool:
    return sensor_id.startswith("probe")


class Feeder(threading.Thread):
    """Sends readings with a :class:`ReadingProducer` in small batches at a steady pace.

    A batch whose flush succeeded was acknowledged by Kafka (acks=all); a batch whose
    send or flush failed is "unknown": it may or may not have been stored.
    """

    def __init__(self, settings: Settings, readings: list[Reading], *, batch: int = 50,
                 pause: float = 0.05, flush_timeout: float = 90.0) -> None:
        super().__init__(daemon=True, name="fault-feeder")
        self.settings = settings
        self.readings = readings
        self.batch = batch
        self.pause = pause
        self.flush_timeout = flush_timeout
        self.acked: list[Reading] = []
        self.unknown: list[Reading] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.crash: BaseException | None = None

    def run(self) -> None:
        try:
            producer = ReadingProducer(self.settings)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.crash = exc
            return
        try:
            for i in range(0, len(self.readings), self.batch):
                if self.stop.is_set():
                    break
                chunk = self.readings[i:i + self.batch]
                try:
                    for reading in chunk:
                        producer.send(reading)
                    producer.flush(timeout=self.flush_timeout)
                    self.acked.extend(chunk)
                except (PublishError, KafkaError) as exc:
                    self.unknown.extend(chunk)
                    self.errors.append(repr(exc))
                self.stop.wait(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.crash = exc
        finally:
            try:
                producer.close(timeout=10)
            except (PublishError, KafkaError) as exc:
                self.errors.append(repr(exc))

    @property
    def sent(self) -> list[Reading]:
        return self.acked + self.unknown


# --------------------------------------------------------------------------- checks


def stored_readings(settings: Settings) -> list[Reading]:
    """Every reading in the readings topic (all partitions, offset order per partition)."""
    return [parse_reading(r.value) for r in read_topic(settings, settings.topic_readings,
                                                         committed_only=False, timeout=60)]


def assert_acknowledged_stored_once(settings: Settings, feeder: Feeder) -> list[Reading]:
    """Every acknowledged reading is in the topic exactly once; nothing foreign is there."""
    stored = stored_readings(settings)
    keys = [key_of(r) for r in stored]
    duplicated = len(keys) - len(set(keys))
    assert duplicated == 0, f"{duplicated} reading(s) stored twice"
    missing = {key_of(r) for r in feeder.acked} - set(keys)
    assert not missing, f"{len(missing)} acknowledged reading(s) lost, e.g. {sorted(missing)[:3]}"
    foreign = set(keys) - {key_of(r) for r in feeder.sent}
    assert not foreign, f"{len(foreign)} reading(s) in the topic that were never sent"
    return stored


def offline_alert_ids(readings: list[Reading], settings: Settings) -> set[str]:
    """What the same rules raise over the same readings offline (silence aside: live it
    is driven by the wall clock)."""
    frame = pd.DataFrame([r.to_dict() for r in readings])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    _, alerts = run_frame(frame, window=timedelta(seconds=settings.window_seconds),
                          rules=rules_from_settings(settings), tick_every=None)
    return set(alerts.loc[alerts["rule"] != "silent", "alertId"])


def live_alerts(settings: Settings) -> list[Alert]:
    """Every committed alert on the alerts topic (what a read_committed reader sees)."""
    return read_alerts(settings)


def caught_up(settings: Settings) -> bool:
    """True when the processor group has committed up to the end of every partition."""
    try:
        lag = group_lag(settings, settings.processor_group, settings.topic_readings)
    except Exception:  # noqa: BLE001 - the cluster may still be settling: "not yet"
        return False
    return bool(lag) and all(p["committed"] is not None and p["lag"] == 0 for p in lag.values())


def alerts_match(settings: Settings, readings: list[Reading]) -> tuple[bool, str]:
    """Compare the live alerts with the offline run; ``(ok, explanation)``."""
    alerts = live_alerts(settings)
    every = [a.alert_id for a in alerts]
    twice = len(every) - len(set(every))
    got = {a.alert_id for a in alerts if a.rule != "silent"}
    expected = offline_alert_ids(readings, settings)
    if twice:
        return False, f"{twice} alert(s) published twice"
    if got != expected:
        return False, (f"{len(expected - got)} alert(s) missing, {len(got - expected)} unexpected "
                       f"(expected {len(expected)})")
    return True, f"{len(got)} alerts, as offline"


def assert_alerts_as_offline(settings: Settings, readings: list[Reading],
                             timeout: float = 30.0) -> str:
    """Wait (bounded) until the live alerts equal the offline run's; fail with why not.

    The wait only covers the last transaction's markers becoming visible; a real
    difference persists and fails.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        ok, why = alerts_match(settings, readings)
        if ok:
            return why
        if time.monotonic() > deadline:
            raise AssertionError(f"the live alerts differ from an uninterrupted offline run: {why}")
        time.sleep(1.0)
