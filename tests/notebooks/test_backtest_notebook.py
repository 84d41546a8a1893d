"""07_backtest_rules.ipynb runs top to bottom under nbval, in memory: no Kafka at all."""

from __future__ import annotations

import os
import subprocess

import pytest

from sensorlib.kafka.ports import free_port

from .conftest import NOTEBOOKS, PYTHON, REPO

pytestmark = pytest.mark.slow

NOTEBOOK = NOTEBOOKS / "07_backtest_rules.ipynb"


def test_the_backtest_notebook_runs_with_nbval_and_no_kafka() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    # Nothing listens there: a cell that reached for Kafka would fail.
    env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q",
         "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=300", str(NOTEBOOK)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_the_backtest_notebook_is_stored_without_outputs() -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)
