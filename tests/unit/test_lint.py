"""The code base stays ruff-clean (the same check as `make lint`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(__import__("sys").executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: `make setup` installs it with the test extras")
    result = subprocess.run(
        [ruff, "check", "sensorlib", "tests", "benchmarks", "dashboards", "notebooks"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
