"""`sensorlib up` starts every part, reports health, and stops with no orphan."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import psutil
import pytest

from sensorlib.config import Settings
from sensorlib.kafka.ports import free_port
from tests.support import eventually, service_env, wait_for_up, wait_http

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_up_starts_services_and_stops_cleanly_on_sigterm(settings: Settings, tmp_path) -> None:
    ports = {"SENSORLIB_PRODUCER_PORT": free_port(), "SENSORLIB_PROCESSOR_PORT": free_port(),
             "SENSORLIB_DASHBOARD_PORT": free_port(), "SENSORLIB_ARCHIVER_PORT": free_port()}
    env = service_env(settings, **{k: str(v) for k, v in ports.items()}, SENSORLIB_INTERVAL="0.5")
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sensorlib.cli", "up"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        text = wait_for_up(proc, log, timeout=120)
        assert "sensorlib is up" in text, text
        assert "producer  | " in text and "processor | " in text  # prefixed log lines
        producer = f"http://127.0.0.1:{ports['SENSORLIB_PRODUCER_PORT']}"
        processor = f"http://127.0.0.1:{ports['SENSORLIB_PROCESSOR_PORT']}"
        assert wait_http(producer + "/health").json()["simulating"] is True
        # The simulator feeds the processor: aggregates appear on their own.
        eventually(lambda: len(httpx.get(processor + "/api/aggregates").json()) == 5, timeout=60)
        status = subprocess.run([sys.executable, "-m", "sensorlib.cli", "status"], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert "producer" in status.stdout and "healthy" in status.stdout
        assert settings.processor_group in status.stdout
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    assert "Stopped." in log.read_text()
    eventually(lambda: not [c for c in children
                            if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], timeout=5)
