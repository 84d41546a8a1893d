"""05_history_sql runs under nbval over a week of back-filled, archived history."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

from sensorlib.config import Settings
from sensorlib.engine.pipeline import Pipeline
from sensorlib.history.archiver import Archiver
from sensorlib.ingest.produce import backfill_simulator

from .conftest import NOTEBOOKS, PYTHON, REPO, publish, subprocess_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

NOTEBOOK = NOTEBOOKS / "05_history_sql.ipynb"


def seed_week(settings: Settings, *, interval: float = 60.0, seed: int = 11) -> tuple[int, int]:
    """A week of the fleet back-filled up to now, its alerts, both archived; (readings, alerts)."""
    sim, duration = backfill_simulator(seed=seed, interval=interval, start="-7d",
                                       end=datetime.now(UTC))
    readings = list(sim.stream(duration=duration))
    alerts = list(Pipeline(clock="event").replay(readings))
    publish(settings, readings, alerts)
    Archiver(settings).run(until_caught_up=True)
    return len(readings), len(alerts)


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)


def test_history_notebook_runs_with_nbval(topics: Settings, tmp_path: Path,
                                          history_catalog: str | None) -> None:
    """On the sqlite catalog and on PostgreSQL: the notebook is the same, only its
    environment's SENSORLIB_CATALOG_URI differs."""
    settings = topics.replace(warehouse_dir=tmp_path / "warehouse", catalog_uri=history_catalog)
    readings, alerts = seed_week(settings)
    assert readings > 40_000 and alerts > 0
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q",
         "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=300", str(NOTEBOOK)],
        cwd=REPO, env=subprocess_env(settings), capture_output=True, text=True,
        timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
