"""Backtests: the rules scored against the simulator's known faults (pure, no Kafka)."""

from __future__ import annotations

import doctest
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

import sensorlib
from sensorlib.engine.detect import RuleConfig, SensorRules
from sensorlib.engine.pipeline import run_frame
from sensorlib.errors import UsageError
from sensorlib.ingest.simulate import FAULT_KINDS, FaultLabel, FaultRates, Simulator
from sensorlib.notebook import backtest as module
from sensorlib.notebook.backtest import ANY, COLUMNS, backtest, score, simulated_history

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)


def alerts(*rows: tuple[str, str, float]) -> pd.DataFrame:
    """(sensor, rule, seconds after T0 detected)."""
    return pd.DataFrame({"sensorId": [r[0] for r in rows], "rule": [r[1] for r in rows],
                         "detectedAt": pd.to_datetime([T0 + r[2] * S for r in rows], utc=True)})


def row(table: pd.DataFrame, rule: str, fault: str) -> pd.Series:
    found = table[(table["rule"] == rule) & (table["fault"] == fault)]
    assert len(found) == 1, (rule, fault)
    return found.iloc[0]


def test_score_by_hand() -> None:
    labels = [
        FaultLabel("drift", "a", T0, T0 + 3600 * S, 2.0),
        FaultLabel("spike", "a", T0 + 600 * S, T0 + 602 * S, 2),  # in the middle of the drift
        FaultLabel("silent", "b", T0 + 100 * S, T0 + 160 * S, 60),
        FaultLabel("stuck", "b", T0 + 1000 * S, T0 + 1040 * S, 20),  # nobody sees it
        FaultLabel("stuck", "d", T0, T0 + 200 * S, 20),
        FaultLabel("drift", "d", T0 + 100 * S, T0 + 3600 * S, 1.0),  # began during the stuck
        FaultLabel("spike", "e", T0, T0, 1),
        FaultLabel("silent", "e", T0 + 10 * S, T0 + 100 * S, 90),  # right after the spike
    ]
    found = alerts(
        ("a", "threshold", 600), ("a", "rate_of_change", 650),  # the spike and its echo
        ("a", "threshold", 3000),  # the drift, 50 min in
        ("b", "silent", 130),  # the silence, 30 s in
        ("b", "threshold", 5000), ("c", "threshold", 10),  # false alerts
        ("d", "stuck", 150),  # the stuck spell's, not the drift's
        ("e", "silent", 40),  # the silence's, not the spike's (within its tolerance)
    )
    table = score(found, labels, rules=["threshold", "rate_of_change", "silent", "stuck"],
                  sensors=3, days=0.5, tolerance=timedelta(minutes=1))
    assert row(table, "stuck", "stuck")["detected"] == 1
    assert row(table, "stuck", "drift")["detected"] == 0
    assert list(table.columns) == [c for c in COLUMNS if c != "variant"]
    assert len(table) == 5 * (len(FAULT_KINDS) + 1)
    threshold = row(table, "threshold", "spike")
    assert (threshold["faults"], threshold["detected"], threshold["delay_median_s"]) == (2, 1, 0)
    # The spike explains the alerts it raised: the drift is detected only at 3000 s.
    assert row(table, "threshold", "drift")["delay_median_s"] == 3000
    assert row(table, "rate_of_change", "drift")["detected"] == 0
    assert row(table, "rate_of_change", "spike")["delay_median_s"] == 50  # within tolerance
    assert row(table, "silent", "silent")["delay_median_s"] == 30
    assert row(table, "silent", "silent")["detected"] == 2
    assert row(table, "silent", "spike")["detected"] == 0
    assert row(table, ANY, "stuck")["recall"] == 1 / 2
    assert row(table, ANY, ANY)["recall"] == 5 / 8
    assert threshold["alerts"] == 4 and threshold["false_alerts"] == 2
    assert threshold["precision"] == 0.5
    assert threshold["false_per_sensor_day"] == pytest.approx(2 / (3 * 0.5))
    assert row(table, "silent", ANY)["alerts"] == 2
    assert math.isnan(row(table, "rate_of_change", "stuck")["delay_median_s"])
    assert row(table, ANY, ANY)["precision"] == 6 / 8
    table = score(found, labels, rules=["outlier"], sensors=3, days=0.5)
    assert row(table, "outlier", ANY)["alerts"] == 0
    assert math.isnan(row(table, "outlier", ANY)["precision"])
    # Median and p95 over several faults.
    many = [FaultLabel("spike", "a", T0 + i * 100 * S, T0 + i * 100 * S, 1) for i in range(20)]
    late = alerts(*[("a", "outlier", i * 100 + i) for i in range(20)])
    table = score(late, many, sensors=1, days=1)
    assert row(table, "outlier", "spike")["delay_median_s"] == 9.5
    assert row(table, "outlier", "spike")["delay_p95_s"] == pytest.approx(18.05)


def test_a_fault_seen_after_its_tolerance_is_missed_and_its_alert_is_false() -> None:
    labels = [FaultLabel("stuck", "a", T0, T0 + 10 * S, 5)]
    table = score(alerts(("a", "stuck", 71)), labels, sensors=1, days=1,
                  tolerance=timedelta(minutes=1))
    assert row(table, "stuck", "stuck")["detected"] == 0
    assert row(table, "stuck", ANY)["false_alerts"] == 1
    table = score(alerts(("a", "stuck", 70)), labels, sensors=1, days=1,
                  tolerance=timedelta(minutes=1))
    assert row(table, "stuck", "stuck")["detected"] == 1


@pytest.fixture(scope="module")
def day() -> tuple[pd.DataFrame, list[FaultLabel]]:
    return simulated_history(1.0, seed=11, start=T0,
                             faults=replace(module.BACKTEST_FAULTS, drift=1e-4))


def test_the_shipped_rules_against_a_seeded_day(day: tuple[pd.DataFrame, list[FaultLabel]]
                                                ) -> None:
    readings, labels = day
    kinds = {label.kind for label in labels}
    assert kinds == set(FAULT_KINDS), kinds
    table = backtest(readings, labels)
    assert list(table.columns) == list(COLUMNS) and set(table["variant"]) == {"shipped"}
    assert set(table["rule"]) == set(RuleConfig().rules) | {ANY}
    # Each rule catches its own fault, at once or as soon as it can.
    assert row(table, "threshold", "spike")["recall"] >= 0.95
    assert row(table, "threshold", "spike")["delay_median_s"] == 0
    assert row(table, "silent", "silent")["recall"] >= 0.95
    assert row(table, "silent", "silent")["delay_median_s"] == 30  # silent_after
    assert row(table, "stuck", "stuck")["recall"] >= 0.95
    # A drift creeps: no rule catches it early.
    drift = row(table, ANY, "drift")
    assert drift["faults"] >= 3
    assert drift["recall"] < 1 or drift["delay_median_s"] > 1800
    # The alerts scored are run_frame's (the live processor's).
    _, live = run_frame(readings)
    by_rule = live.groupby("rule").size()
    for rule, count in by_rule.items():
        assert row(table, rule, ANY)["alerts"] == count
    assert row(table, ANY, ANY)["alerts"] == len(live)
    # The shipped Cold Storage setting (11 °C, chosen by this backtest) is quiet on the
    # simulated room's own wander; 8 °C (2σ of it) fires on it: false alerts.
    assert row(table, "threshold", ANY)["false_alerts"] <= 1
    eight = replace(RuleConfig(), per_sensor=(
        SensorRules({"temperature_threshold": 8.0}, location="Cold Storage"),))
    threshold = row(backtest(readings, labels, eight), "threshold", ANY)
    assert threshold["false_alerts"] > 10 and threshold["precision"] < 1


def test_variants_are_scored_side_by_side(day: tuple[pd.DataFrame, list[FaultLabel]]) -> None:
    readings, labels = day
    shipped = RuleConfig()
    strict = replace(shipped, per_sensor=(  # Cold Storage at 8 °C, 2σ of its wander
        SensorRules({"temperature_threshold": 8.0}, location="Cold Storage"),))
    only = replace(shipped, rules=frozenset({"threshold"}))
    table = backtest(readings, labels, {"shipped": shipped, "strict": strict, "only": only})
    assert list(dict.fromkeys(table["variant"])) == ["shipped", "strict", "only"]
    assert set(table.loc[table["variant"] == "only", "rule"]) == {"threshold", ANY}
    pick = table[(table["rule"] == "threshold") & (table["fault"] == ANY)].set_index("variant")
    assert pick.loc["strict", "false_alerts"] > pick.loc["shipped", "false_alerts"]
    assert pick.loc["only", "alerts"] == pick.loc["shipped", "alerts"]
    single = backtest(readings, labels, shipped)
    assert set(single["variant"]) == {"rules"}
    assert single.drop(columns="variant").equals(
        table[table["variant"] == "shipped"].drop(columns="variant").reset_index(drop=True))


def test_readings_and_labels_in_other_shapes() -> None:
    sim = Simulator(seed=9, start=T0, faults=FaultRates())
    readings = list(sim.stream(duration=1800))
    from_list = backtest(readings, sim.labels)
    frame = pd.DataFrame({"sensorId": [r.sensor_id for r in readings],
                          "temperature": [r.temperature for r in readings],
                          "humidity": [r.humidity for r in readings],
                          "location": [r.location for r in readings],
                          "timestamp": [r.timestamp for r in readings]})
    from_frame = backtest(frame, module.labels_to_frame(sim.labels))
    assert from_list.equals(from_frame)
    assert row(from_list, ANY, ANY)["faults"] == len(sim.labels) > 0


def test_simulated_history_cuts_labels_at_its_end() -> None:
    readings, labels = simulated_history(0.1, seed=2, start=T0, faults=FaultRates(
        drift=1.0, drift_seconds=(86_400.0, 86_400.0)))
    end = T0 + timedelta(days=0.1)
    assert readings["timestamp"].max() < end
    drifts = [f for f in labels if f.kind == "drift"]
    assert len(drifts) == 5 and all(f.end == end for f in drifts)
    with pytest.raises(UsageError):
        simulated_history(0)


def test_bad_input() -> None:
    labels = [FaultLabel("spike", "a", T0, T0, 1)]
    with pytest.raises(UsageError, match="no readings"):
        backtest(pd.DataFrame(columns=["sensorId", "temperature", "humidity", "timestamp"]),
                 labels)
    with pytest.raises(UsageError, match="no column"):
        score(alerts(), pd.DataFrame({"kind": []}), sensors=1, days=1)
    with pytest.raises(UsageError, match="no rule configuration"):
        backtest([], labels, {})


def test_exported_and_documented() -> None:
    assert sensorlib.backtest is backtest
    assert sensorlib.FaultLabel is FaultLabel
    assert doctest.testmod(module).failed == 0


def test_the_command_prints_the_scores_without_kafka(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from sensorlib.cli import main

    # Nothing listens there: the command must not need Kafka.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    csv = tmp_path / "scores.csv"
    assert main(["backtest", "--days", "0.5", "--seed", "3", "--csv", str(csv)]) == 0
    out, err = capsys.readouterr()
    assert "backtest: simulating 0.5 day(s)" in err and "readings, faults injected:" in err
    for text in ("configured: faults detected", "spike (", "stuck (", "silent (", "drift (",
                 "threshold", "precision", "false/sensor/day"):
        assert text in out, text
    table = pd.read_csv(csv)
    assert list(table.columns) == list(COLUMNS) and set(table["variant"]) == {"configured"}
    assert main(["backtest", "--days", "0"]) != 0


def test_the_command_refuses_days_at_their_extremes_with_the_range(capsys) -> None:
    from sensorlib.cli import main

    for days in ("nan", "inf", "1e9", "-1"):
        assert main(["backtest", "--days", days]) == 2
        assert "--days must be in (0, 366]" in capsys.readouterr().err
