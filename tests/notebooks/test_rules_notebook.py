"""08_sensor_rules.ipynb runs top to bottom under nbval against the real broker (private
topics): it reads, changes and restores one sensor's rule settings in ``sensor-rules``."""

from __future__ import annotations

import subprocess

import pytest

from sensorlib.config import Settings
from sensorlib.kafka.ruletable import read_rules, write_layer

from .conftest import NOTEBOOKS, PYTHON, REPO, subprocess_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

NOTEBOOK = NOTEBOOKS / "08_sensor_rules.ipynb"


def test_the_rules_notebook_runs_with_nbval_and_restores_the_table(topics: Settings) -> None:
    write_layer(topics, "sensor:sensor-03", {"humidity_threshold": 70})
    before = read_rules(topics)
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q",
         "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=120", str(NOTEBOOK)],
        cwd=REPO, env=subprocess_env(topics), capture_output=True, text=True, timeout=600,
        check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
    after = read_rules(topics)
    assert after.layers == before.layers and after.version == before.version
    assert after.offset > before.offset  # it did write (set, unset, set back)
