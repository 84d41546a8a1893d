"""A healthy `sensorlib up` logs no ERROR; a second one, and any service whose port is taken,
refuses at once naming the port and its holder (issue 24, items 5 and 12)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from sensorlib.config import Settings
from sensorlib.errors import PortInUse
from sensorlib.kafka.ports import free_port
from tests.support import service_env, wait_for_up

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_second_up_refuses_and_a_healthy_console_has_no_error(settings: Settings, tmp_path) -> None:
    ports = {"SENSORLIB_PRODUCER_PORT": free_port(), "SENSORLIB_PROCESSOR_PORT": free_port(),
             "SENSORLIB_DASHBOARD_PORT": free_port(), "SENSORLIB_ARCHIVER_PORT": free_port()}
    env = service_env(settings, **{k: str(v) for k, v in ports.items()},
                      SENSORLIB_INTERVAL="0.5", SENSORLIB_DATA=str(tmp_path / "data"))
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        first = subprocess.Popen([sys.executable, "-m", "sensorlib.cli", "up"], env=env,
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_up(first, log, timeout=150)
        time.sleep(5)  # readings flow: the processor has joined its group, the archiver too
        errors = [line for line in log.read_text(errors="replace").splitlines()
                  if re.search(r"\bERROR\b|Traceback", line)]
        assert not errors, "\n".join(errors)

        started = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "sensorlib.cli", "up"], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == PortInUse.exit_code, second.stdout + second.stderr
        assert time.monotonic() - started < 20  # at once: nothing was started
        assert "healthy" not in second.stdout and "sensorlib is up" not in second.stdout
        for variable, port in ports.items():
            assert f"port {port} " in second.stderr and variable in second.stderr
        assert f"another `sensorlib up` is running (pid {first.pid})" in second.stderr.replace(
            "Another", "another")

        # Each service alone says the same, without a traceback.
        for command, variable in (("producer", "SENSORLIB_PRODUCER_PORT"),
                                  ("processor", "SENSORLIB_PROCESSOR_PORT"),
                                  ("archive", "SENSORLIB_ARCHIVER_PORT"),
                                  ("dashboard", "SENSORLIB_DASHBOARD_PORT")):
            alone = subprocess.run([sys.executable, "-m", "sensorlib.cli", command], env=env,
                                   capture_output=True, text=True, timeout=60, check=False)
            assert alone.returncode == PortInUse.exit_code, (command, alone.stderr)
            assert f"port {ports[variable]} " in alone.stderr and variable in alone.stderr
            assert f"started by pid {first.pid} (sensorlib up)" in alone.stderr, alone.stderr
            assert "Traceback" not in alone.stderr
        assert first.poll() is None  # the first one is unharmed
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)


def test_a_port_held_by_another_program_is_named(settings: Settings, tmp_path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = service_env(settings, SENSORLIB_PRODUCER_PORT=str(port))
        result = subprocess.run([sys.executable, "-m", "sensorlib.cli", "producer"], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
    import os

    assert result.returncode == PortInUse.exit_code, result.stderr
    assert f"port {port} (producer API, SENSORLIB_PRODUCER_PORT)" in result.stderr
    assert f"pid {os.getpid()} " in result.stderr  # this test's process holds it
    assert "choose other ports (SENSORLIB_PRODUCER_PORT)" in result.stderr
