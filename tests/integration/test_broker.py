"""The local broker: real kafka.Kafka JVM, clean stop, cache and storage reuse, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sensorlib.config import Settings
from sensorlib.kafka.broker import LocalKafka, jvm_main_class
from sensorlib.kafka.clients import make_consumer
from sensorlib.kafka.jars import resolve_libs
from sensorlib.kafka.ports import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_start_stop_restart_reuses_cache_and_storage(base_settings: Settings, tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "k", ports=[free_port()], controller_ports=[free_port()],
                       settings=base_settings, heap="384m")
    libs_before = resolve_libs(base_settings)
    kafka.start(timeout=120)
    pid = kafka.pid(kafka.nodes[0])
    assert pid is not None
    assert jvm_main_class(pid) == "kafka.Kafka"
    consumer = make_consumer(base_settings.replace(bootstrap_servers=kafka.bootstrap_servers))
    assert isinstance(consumer.topics(), set)
    consumer.close()
    meta = (kafka.nodes[0].data_dir / "meta.properties").read_text()

    kafka.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert kafka.pid(kafka.nodes[0]) is None

    # Second start: same jars folder, same formatted storage (cluster id kept).
    assert resolve_libs(base_settings) == libs_before
    kafka.start(timeout=120)
    try:
        assert (kafka.nodes[0].data_dir / "meta.properties").read_text() == meta
    finally:
        kafka.stop()
    assert kafka.pid(kafka.nodes[0]) is None


def test_cli_start_detach_status_stop(base_settings: Settings, tmp_path: Path) -> None:
    port, cport = free_port(), free_port()
    env = dict(os.environ, SENSORLIB_DATA=str(tmp_path), SENSORLIB_KAFKA_PORT=str(port),
               SENSORLIB_CONTROLLER_PORT=str(cport), SENSORLIB_KAFKA_HEAP="384m",
               SENSORLIB_CACHE=str(base_settings.cache_dir))
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("ConnectionStrings__messaging", None)
    cli = [sys.executable, "-m", "sensorlib.cli"]
    started = subprocess.run([*cli, "broker", "start", "--detach"], env=env, capture_output=True, check=False,
                             text=True, timeout=180)
    assert started.returncode == 0, started.stderr
    try:
        status = subprocess.run([*cli, "broker", "status"], env=env, capture_output=True, text=True, check=False)
        assert status.returncode == 0 and "running" in status.stdout
        pid = int(status.stdout.split("pid=")[1].split()[0])
        assert jvm_main_class(pid) == "kafka.Kafka"
        topics = subprocess.run([*cli, "topics"], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert topics.returncode == 0, topics.stderr
        assert "sensor-readings: created" in topics.stdout
    finally:
        stopped = subprocess.run([*cli, "broker", "stop"], env=env, capture_output=True, text=True,
                                 timeout=60, check=False)
    assert stopped.returncode == 0
    time.sleep(0.2)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    status = subprocess.run([*cli, "broker", "status"], env=env, capture_output=True, text=True, check=False)
    assert status.returncode == 3 and "stopped" in status.stdout


def test_missing_tools_are_named(base_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sensorlib.errors import BrokerError

    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor mvn here
    fresh = base_settings.replace(cache_dir=tmp_path / "cache")
    with pytest.raises(BrokerError, match="apt-get install maven"):
        resolve_libs(fresh)
