"""`sensorlib up` restarts a crashed child with back-off, says so, and keeps the others running."""

from __future__ import annotations

import signal
import subprocess
import sys

import psutil
import pytest

from sensorlib.config import Settings
from sensorlib.kafka.ports import free_port
from tests.support import eventually, service_env, wait_for_up, wait_http

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _child(up: psutil.Process, command: str) -> psutil.Process | None:
    """The live child of ``up`` running ``sensorlib <command>``."""
    for child in up.children():
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if "sensorlib.cli" in cmdline and command in cmdline and child.is_running() \
                and child.status() != psutil.STATUS_ZOMBIE:
            return child
    return None


def _new_child(up: psutil.Process, command: str, old: psutil.Process,
               timeout: float) -> psutil.Process:
    """The child running ``command`` once it is another process than ``old``."""
    found: list[psutil.Process] = []

    def check() -> bool:
        child = _child(up, command)
        if child is not None and child.pid != old.pid:
            found.append(child)
        return bool(found)

    eventually(check, timeout=timeout)
    return found[0]


def test_up_restarts_a_killed_child_with_back_off_and_keeps_the_others(
        settings: Settings, tmp_path) -> None:
    ports = {"SENSORLIB_PRODUCER_PORT": free_port(), "SENSORLIB_PROCESSOR_PORT": free_port(),
             "SENSORLIB_ARCHIVER_PORT": free_port()}
    env = service_env(settings, **{k: str(v) for k, v in ports.items()}, SENSORLIB_INTERVAL="0.5")
    processor_url = f"http://127.0.0.1:{ports['SENSORLIB_PROCESSOR_PORT']}"
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sensorlib.cli", "up", "--no-dashboard"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    children: list[psutil.Process] = []
    try:
        wait_for_up(proc, log, timeout=180)
        up = psutil.Process(proc.pid)
        producer = _child(up, "producer")
        first = _child(up, "processor")
        assert producer is not None and first is not None
        children = up.children(recursive=True)

        first.send_signal(signal.SIGKILL)
        eventually(lambda: "processor was killed by SIGKILL; restarting in 1 s"
                   in log.read_text(), timeout=10)
        second = _new_child(up, "processor", first, timeout=15)
        wait_http(processor_url + "/health", timeout=120)
        eventually(lambda: "processor | healthy again" in log.read_text(), timeout=30)
        assert proc.poll() is None, "sensorlib up stopped"
        assert producer.is_running() and _child(up, "producer").pid == producer.pid

        # A second crash soon after: the back-off doubles.
        second.send_signal(signal.SIGKILL)
        eventually(lambda: "processor was killed by SIGKILL; restarting in 2 s"
                   in log.read_text(), timeout=10)
        third = _new_child(up, "processor", second, timeout=15)
        wait_http(processor_url + "/health", timeout=120)
        children = up.children(recursive=True)
        assert third in children
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C still stops everything
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "Stopped." in text
    eventually(lambda: not [c for c in children
                            if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], timeout=10)
