"""Distinct, documented exit codes (issue 24, item 11) and --help showing the defaults in force."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sensorlib import errors
from sensorlib.cli import build_parser, exit_codes_text, main
from sensorlib.config import Settings
from sensorlib.kafka.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_every_error_class_has_a_documented_code() -> None:
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.SensorlibError)]
    for cls in classes:
        assert cls.exit_code in errors.EXIT_CODES, cls
    codes = {c: c.exit_code for c in classes}
    assert codes[errors.ConfigError] == 2
    assert codes[errors.KafkaUnavailable] == codes[errors.KafkaSetupFailed] == 3
    assert codes[errors.EmptyReport] == 4
    assert codes[errors.UnknownSensor] == 5
    assert codes[errors.PortInUse] == 6
    assert codes[errors.BrokerError] == 7
    assert codes[errors.ReportError] == 1


def test_the_table_is_in_help_and_readme() -> None:
    top = build_parser().format_help()
    report = build_parser()._subparsers._group_actions[0].choices["report"].format_help()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code in errors.EXIT_CODES:
        assert re.search(rf"^\s+{code}\s", top, re.MULTILINE), code
        assert re.search(rf"^\s+{code}\s", report, re.MULTILINE), code
        assert re.search(rf"^\| {code} \|", readme, re.MULTILINE), f"README lacks exit code {code}"
    assert exit_codes_text() in top


def test_kafka_down_is_3_for_a_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    assert main(["report", "--start", "1h ago", "--end", "now", "--out", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "no report:" in err and "not reachable" in err


def test_a_bad_setting_is_2(monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SENSORLIB_PARTITIONS", "three")
    assert main(["topics"]) == 2
    assert "SENSORLIB_PARTITIONS" in capsys.readouterr().err


def test_a_malformed_period_is_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    assert main(["replay", "--start", "not a time", "--out", str(tmp_path / "x.csv")]) == 2


def test_empty_period_and_unknown_sensor_differ(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """The report notebook's EmptyReport crosses papermill as text: the CLI tells a sensor
    that sent nothing (5) from a period without readings (4) by its words."""
    from sensorlib.notebook import runner

    messages = {
        "no report: no readings on sensor-readings in 2020-01-01 00:00 → 2020-01-02 00:00: "
        "nothing to report (is the producer running? is the period right?)": 4,
        "no report: no readings from 'sensor-99' on sensor-readings in 2026-01-01 → "
        "2026-01-02; the sensors there are sensor-01, sensor-02": 5,
    }
    for message, code in messages.items():
        def fail(*args: object, _m: str = message, **kwargs: object) -> Path:
            raise errors.EmptyReport(_m)

        monkeypatch.setattr(runner, "run_report", fail)
        assert main(["report", "--sensor", "sensor-99", "--out", str(tmp_path)]) == code


def _help(*argv: str, **env: str) -> str:
    import os

    environment = {k: v for k, v in os.environ.items() if not k.startswith("SENSORLIB_")}
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "sensorlib.cli", *argv, "--help"],
                          env=environment, capture_output=True, text=True, check=True,
                          timeout=60).stdout


def test_help_shows_the_defaults_in_force() -> None:
    observe = _help("up", SENSORLIB_ZIPKIN_PORT="19411", SENSORLIB_PROMETHEUS_PORT="19090")
    assert "127.0.0.1:19411" in observe and "127.0.0.1:19090" in observe
    assert ":9411," not in observe and ":9090," not in observe
    producer = " ".join(_help("producer", SENSORLIB_PRODUCER_PORT="18881",
                              SENSORLIB_INTERVAL="4").split())
    assert "default: 18881, from SENSORLIB_PRODUCER_PORT" in producer
    assert "default: 0.25" in producer
    archive = " ".join(_help("archive", SENSORLIB_ARCHIVER_PORT="18883",
                             SENSORLIB_HOST="127.0.0.2").split())
    assert "default: 18883" in archive and "default: 127.0.0.2" in archive
    for name in ("processor", "dashboard"):
        text = " ".join(_help(name).split())
        port = getattr(Settings.from_env({}), f"{name}_port")
        assert f"default: {port}, from SENSORLIB_{name.upper()}_PORT" in text


def test_help_works_with_a_broken_setting() -> None:
    text = _help("status", SENSORLIB_PARTITIONS="three")
    assert "--json" in text
