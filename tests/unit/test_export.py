"""Safe file output (issue 12 item 8): CSV formula injection, no overwrite, no symlinks."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from sensorlib.replay.export import ExportError, neutralise_formulas, write_frame

HOSTILE = pd.DataFrame({
    "sensorId": ['=HYPERLINK("http://evil.example","click")', "+1", "-2", "@SUM(A1)",
                 "\tx", "sensor-01"],
    "temperature": [-5.0, 1.0, 2.0, 3.0, 4.0, 5.0],
    "timestamp": pd.to_datetime(["2026-01-01T00:00:00Z"] * 6, utc=True),
})


def test_csv_cells_that_would_be_formulas_are_written_as_text(tmp_path: Path) -> None:
    out = write_frame(HOSTILE, tmp_path / "x.csv")
    rows = list(csv.DictReader(out.open(newline="")))
    assert [r["sensorId"] for r in rows] == [
        '\'=HYPERLINK("http://evil.example","click")', "'+1", "'-2", "'@SUM(A1)", "'\tx",
        "sensor-01"]
    assert rows[0]["temperature"] == "-5.0"  # numbers stay numbers
    assert rows[0]["timestamp"] == "2026-01-01T00:00:00.000000Z"


def test_parquet_keeps_the_exact_strings(tmp_path: Path) -> None:
    out = write_frame(HOSTILE, tmp_path / "x.parquet")
    assert pd.read_parquet(out)["sensorId"].tolist() == HOSTILE["sensorId"].tolist()


def test_an_existing_file_is_kept_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    out.write_text("precious")
    with pytest.raises(ExportError, match="already exists.*--force"):
        write_frame(HOSTILE, out)
    assert out.read_text() == "precious"
    write_frame(HOSTILE, out, force=True)
    assert out.read_text().startswith("sensorId,")


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "victim.txt"
    target.write_text("do not touch")
    link = tmp_path / "x.csv"
    link.symlink_to(target)
    for force in (False, True):
        with pytest.raises(ExportError, match="symbolic link"):
            write_frame(HOSTILE, link, force=force)
    assert target.read_text() == "do not touch"
    dangling = tmp_path / "y.csv"
    dangling.symlink_to(tmp_path / "nowhere.csv")
    with pytest.raises(ExportError, match="symbolic link"):
        write_frame(HOSTILE, dangling)
    assert not (tmp_path / "nowhere.csv").exists()


def test_only_parquet_and_csv(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"\.parquet or \.csv"):
        write_frame(HOSTILE, tmp_path / "x.xlsx")


def test_neutralising_leaves_the_input_alone() -> None:
    before = HOSTILE.copy()
    neutralise_formulas(HOSTILE)
    pd.testing.assert_frame_equal(HOSTILE, before)
