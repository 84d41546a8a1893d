"""The record unpacking against the newest kafka-python on PyPI (issue 26 item 3).

``sensorlib.kafka.records`` builds on kafka-python internals; the pinned version is tested
everywhere else. This runs ``tests/unit/test_records.py`` (the differential tests and the
self-test) in a fresh venv holding the newest kafka-python, so an upgrade that would turn
the fast path off, or break it, shows up here before the pin moves. Skipped when PyPI
cannot be reached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.install import unreachable

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
#: What the records tests import besides sensorlib (pinned as in the test run).
TEST_NEEDS = ("pytest", "hypothesis", "crc32c")


def _pin(name: str) -> str:
    """``name==version`` from constraints.txt (the test tools as the suite uses them)."""
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.strip()
    return name


def test_records_tests_pass_on_the_newest_kafka_python(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
         "--disable-pip-version-check", "--upgrade", "kafka-python",
         *map(_pin, TEST_NEEDS)],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0 and (why := unreachable(done)):
        pytest.skip(f"PyPI is not reachable, so the newest kafka-python cannot be tested: {why}")
    assert done.returncode == 0, f"installing the newest kafka-python failed: {done.stderr}"
    newest = subprocess.run([python, "-c", "import kafka; print(kafka.__version__)"],
                            capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    # Only the package's records module and the test file: nothing else of the checkout (its
    # conftest imports the whole stack) and nothing of this environment.
    work = tmp_path / "work"
    (work / "sensorlib" / "kafka").mkdir(parents=True)
    for name in ("sensorlib/__init__.py", "sensorlib/kafka/__init__.py",
                 "sensorlib/kafka/records.py"):
        shutil.copy(REPO / name, work / name)
    shutil.copy(REPO / "tests" / "unit" / "test_records.py", work / "test_records.py")
    (work / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    run = subprocess.run([python, "-m", "pytest", "-q", "test_records.py"], cwd=work,
                         env={**env, "PYTHONPATH": str(work)}, capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, (f"the records tests fail on kafka-python {newest} (pinned: "
                                 f"{_pin('kafka-python')}):\n{run.stdout}\n{run.stderr}")
    self_test = subprocess.run(
        [python, "-c", "from sensorlib.kafka import records; print(records.self_test())"],
        cwd=work, env={**env, "PYTHONPATH": str(work)}, capture_output=True, text=True,
        timeout=60, check=True)
    assert self_test.stdout.strip() == "True", (
        f"on kafka-python {newest} the fast record unpacking turns itself off (its self-test "
        f"fails): the processor would run on kafka-python's slower records")
