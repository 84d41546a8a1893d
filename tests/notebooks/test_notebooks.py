"""Every notebook runs top to bottom against the real broker; the papermill report end to end."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sensorlib.cli import main
from sensorlib.errors import EmptyReport, ReportError
from sensorlib.kafka.ports import free_port
from sensorlib.notebook.runner import run_report

from .conftest import NOTEBOOKS, PYTHON, REPO, Seeded, subprocess_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ALL = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def test_the_notebooks_exist_without_outputs() -> None:
    import nbformat

    names = [p.name for p in ALL]
    for mine in ("01_live_tail.ipynb", "02_replay_analysis.ipynb", "03_tune_rules.ipynb",
                 "04_report.ipynb", "06_dead_letters.ipynb"):
        assert mine in names
    for path in ALL:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name
        assert any("parameters" in c.metadata.get("tags", []) for c in code), path.name


def test_notebooks_run_with_nbval(seeded: Seeded) -> None:
    """pytest --nbval-lax in a child process: the kernels inherit the private topics' env."""
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q",
         "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=300",
         *[str(p) for p in ALL]],
        cwd=REPO, env=subprocess_env(seeded.settings), capture_output=True, text=True,
        timeout=900, check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


def test_report_end_to_end(seeded: Seeded, tmp_path: Path) -> None:
    executed = run_report("1h ago", "now", tmp_path, settings=seeded.settings)
    html = executed.with_suffix(".html")
    assert executed.is_file() and html.is_file()
    assert executed.name.startswith("report_") and executed.parent == tmp_path
    page = html.read_text(encoding="utf-8")
    assert "Summary per sensor" in page
    for text in ("sensor-01", "sensor-05", "Warehouse A", "temperature (°C)", "humidity (%)",
                 "worst", "Worst status of the period", "Parameters"):
        assert text in page, text
    assert "<table" in page
    assert "import hvplot" not in page and "from sensorlib" not in page  # no code in the HTML
    assert "Traceback" not in page and "Warning" not in page
    stem = executed.stem
    assert (tmp_path / f"{stem}_alerts.parquet").is_file()
    assert (tmp_path / f"{stem}_alerts.csv").is_file()
    assert f'href="{stem}_alerts.csv"' in page
    assert stem in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_report_fails_on_an_empty_period(monkeypatch: pytest.MonkeyPatch, seeded: Seeded,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    for name, value in subprocess_env(seeded.settings).items():
        monkeypatch.setenv(name, value)
    code = main(["report", "--start", "2026-01-02", "--end", "2026-01-01", "--out", str(tmp_path)])
    assert code != 0
    assert "not after" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_report_fails_when_kafka_is_unreachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    code = main(["report", "--start", "1h ago", "--end", "now", "--out", str(tmp_path)])
    assert code != 0
    assert "not reachable" in capsys.readouterr().err


def test_a_failing_cell_names_itself(seeded: Seeded, tmp_path: Path) -> None:
    broken = seeded.settings.replace(topic_readings="no-such-readings-topic")
    with pytest.raises(ReportError, match=r"failed in cell \d+ .*ReplayError.*does not exist"):
        run_report("1h ago", "now", tmp_path, settings=broken)


def test_report_of_a_quiet_period_fails_and_writes_nothing(seeded: Seeded, tmp_path: Path
                                                          ) -> None:
    """A period without readings is an error cron shows (exit non-zero), not an empty page."""
    with pytest.raises(EmptyReport, match=r"no readings on .* 2020-01-01 00:00 → 2020-01-02"):
        run_report("2020-01-01", "2020-01-02", tmp_path, settings=seeded.settings)
    assert not list(tmp_path.iterdir())


def test_report_keep_prunes_older_reports(seeded: Seeded, tmp_path: Path) -> None:
    first = run_report("14min ago", "10min ago", tmp_path, settings=seeded.settings)
    second = run_report("10min ago", "5min ago", tmp_path, settings=seeded.settings, keep=1)
    assert not first.exists() and second.exists()
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert second.stem in index and first.stem not in index
