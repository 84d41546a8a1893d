"""Fault labels on a real broker: the simulator publishes what it injects on
``sensor-faults``, the archiver keeps it as the ``faults`` table (``sensorlib sql``), and a
backtest over the archived history scores its rules against it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from sensorlib.cli import build_parser
from sensorlib.config import Settings
from sensorlib.errors import UsageError
from sensorlib.history import query as history
from sensorlib.history.archiver import Archiver
from sensorlib.history.faults import FAULT_DTYPES, decode_faults, read_faults
from sensorlib.ingest.produce import backfill_simulator, run_simulation
from sensorlib.ingest.simulate import labels_to_frame
from sensorlib.notebook.backtest import ANY, backtest, backtest_archive
from sensorlib.replay.reader import read_readings
from tests.support import read_topic

pytestmark = pytest.mark.kafka

END = datetime(2026, 6, 3, tzinfo=UTC)
START = END - timedelta(hours=1)


def test_simulated_faults_reach_the_topic_the_archive_and_a_backtest(
        topics: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = topics.replace(warehouse_dir=tmp_path / "warehouse")
    published = run_simulation(settings, realtime=False, seed=7, interval=2.0, start=START,
                               end=END)
    # The same back-fill in memory: the labels it must have published.
    sim, duration = backfill_simulator(seed=7, interval=2.0, start=START, end=END)
    assert sum(1 for _ in sim.stream(duration=duration)) == published
    expected = labels_to_frame(sim.labels).astype(FAULT_DTYPES)
    assert set(expected["kind"]) >= {"spike", "stuck", "silent"}

    # On the topic: each label once, keyed by its sensor; the readings topic holds readings only.
    records = read_topic(settings, settings.topic_faults)
    assert [r.key for r in records] == expected["sensorId"].tolist()
    on_topic = decode_faults([r.value for r in records])
    assert on_topic["_reason"].isna().all()
    pd.testing.assert_frame_equal(on_topic.drop(columns="_reason"), expected)
    assert len(read_topic(settings, settings.topic_readings)) == published

    # In the archive, next to the readings: a table sensorlib sql queries.
    archived = Archiver(settings).run(until_caught_up=True)
    assert archived[settings.topic_faults] == len(expected)
    assert archived[settings.topic_readings] == published
    counts = history.sql("select kind, count(*) as n, min(event_time) as first from faults "
                         "group by 1 order by 1", settings=settings)
    assert dict(zip(counts["kind"], counts["n"], strict=True)) == \
        expected["kind"].value_counts().to_dict()
    assert counts["first"].min() == expected["start"].min()
    pd.testing.assert_frame_equal(read_faults(settings), expected.sort_values(
        ["start", "sensorId"], kind="stable").reset_index(drop=True))

    # A backtest over the archive takes its labels from the table: the scores of the same
    # readings against the simulator's own labels in memory.
    scores = backtest_archive(START, END, settings=settings)
    readings = read_readings(START, END, settings=settings)
    assert len(readings) == published
    assert scores.equals(backtest(readings, sim.labels))
    spikes = scores[(scores["rule"] == ANY) & (scores["fault"] == "spike")].iloc[0]
    assert spikes["faults"] == (expected["kind"] == "spike").sum() > 0
    assert spikes["recall"] >= 0.9
    # The command does the same: sensorlib backtest --start … --end ….
    parser = build_parser()
    args = parser.parse_args(["backtest", "--start", START.isoformat(), "--end", END.isoformat()])
    assert args.handler(args, settings) == 0
    captured = capsys.readouterr()
    assert f"spike ({spikes['faults']})" in captured.out
    assert f"{published:,} readings, fault labels archived:" in captured.err
    args = parser.parse_args(["backtest", "--end", END.isoformat()])
    with pytest.raises(UsageError, match="--end needs --start"):
        args.handler(args, settings)
