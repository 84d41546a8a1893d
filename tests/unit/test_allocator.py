"""The dashboard server's allocator choice (``SENSORLIB_DASHBOARD_ALLOCATOR``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sensorlib.config import Settings
from sensorlib.dashboard import allocator
from sensorlib.errors import ConfigError

FAKE = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def test_python_keeps_cpythons_allocator() -> None:
    assert allocator.allocator_env("python", {}) is None


def test_auto_uses_jemalloc_when_found_and_keeps_what_was_preloaded(monkeypatch) -> None:
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: FAKE)
    env = allocator.allocator_env("auto", {"LD_PRELOAD": "/opt/other.so"})
    assert env is not None
    assert env["LD_PRELOAD"] == f"{FAKE} /opt/other.so"
    assert env["PYTHONMALLOC"] == "malloc" and env["MALLOC_CONF"] == allocator.JEMALLOC_CONF
    mine = allocator.allocator_env("auto", {"MALLOC_CONF": "narenas:4"})
    assert mine is not None and mine["MALLOC_CONF"] == "narenas:4"  # the user's own tuning


def test_auto_without_jemalloc_stays_and_jemalloc_without_it_refuses(monkeypatch) -> None:
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: None)
    assert allocator.allocator_env("auto", {}) is None
    with pytest.raises(ConfigError, match="apt install libjemalloc2"):
        allocator.allocator_env("jemalloc", {})
    with pytest.raises(ConfigError, match="auto, jemalloc, python"):
        allocator.allocator_env("tcmalloc", {})


def test_the_setting_is_checked_and_passed_on() -> None:
    assert Settings.from_env({}).dashboard_allocator == "auto"
    assert Settings.from_env({"SENSORLIB_DASHBOARD_ALLOCATOR": "Python"}).dashboard_allocator == "python"
    with pytest.raises(ConfigError, match="SENSORLIB_DASHBOARD_ALLOCATOR"):
        Settings.from_env({"SENSORLIB_DASHBOARD_ALLOCATOR": "tcmalloc"})
    settings = Settings.from_env({"SENSORLIB_DASHBOARD_ALLOCATOR": "jemalloc"})
    assert settings.to_env()["SENSORLIB_DASHBOARD_ALLOCATOR"] == "jemalloc"


def test_the_reexecuted_process_takes_the_variables_out_again(monkeypatch) -> None:
    monkeypatch.setenv("SENSORLIB_ALLOCATOR_APPLIED", "/opt/other.so")
    monkeypatch.setenv("LD_PRELOAD", f"{FAKE} /opt/other.so")
    monkeypatch.setenv("PYTHONMALLOC", "malloc")
    monkeypatch.setenv("MALLOC_CONF", allocator.JEMALLOC_CONF)
    allocator.use_allocator("auto", ["-c", "pass"])  # returns: nothing to re-execute
    assert os.environ["LD_PRELOAD"] == "/opt/other.so"
    assert "PYTHONMALLOC" not in os.environ and "MALLOC_CONF" not in os.environ
    assert "SENSORLIB_ALLOCATOR_APPLIED" not in os.environ


def _server_says(choice: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SENSORLIB_DASHBOARD_ALLOCATOR": choice}
    return subprocess.run([sys.executable, "-m", "sensorlib.dashboard.server", "--help"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_server_says_which_allocator_it_runs_on() -> None:
    plain = _server_says("python")
    assert plain.returncode == 0 and "dashboard: memory from python" in plain.stderr
    if allocator.find_jemalloc() is None:
        refused = _server_says("jemalloc")
        assert refused.returncode == 2 and "libjemalloc2" in refused.stderr
    else:
        done = _server_says("jemalloc")
        assert done.returncode == 0 and "dashboard: memory from jemalloc" in done.stderr
