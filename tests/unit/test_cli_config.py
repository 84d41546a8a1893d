"""sensorlib.toml, `sensorlib config`, `status --json`, shell completion and the kafka-python
noise filter (issue 24, items 12 and 15)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import errors as kafka_errors

from sensorlib.config import Settings, read_config_file, with_config_file
from sensorlib.errors import ConfigError
from sensorlib.kafka.ports import free_port
from sensorlib.observe.logs import KafkaNoise


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SENSORLIB_", "KAFKA_", "OTEL_"))}
    env.update(extra)
    return env


def _sensorlib(*argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensorlib.cli", *argv], cwd=cwd,
                          env=_env(**env), capture_output=True, text=True, timeout=60,
                          check=False)


def test_config_file_keys_and_precedence(tmp_path: Path) -> None:
    path = tmp_path / "sensorlib.toml"
    path.write_text('producer_port = 18081\nSENSORLIB_PROCESSOR_PORT = 18082\n'
                    'sensorlib_dashboard_port = 18006\nmax_past = "3y"\ninsecure = true\n'
                    'allowed_hosts = ["a.example", "b.example"]\n'
                    'KAFKA_BOOTSTRAP_SERVERS = "k1:9092,k2:9092"\n')
    assert read_config_file(path)["SENSORLIB_PRODUCER_PORT"] == "18081"
    env = {"SENSORLIB_CONFIG": str(path), "SENSORLIB_PROCESSOR_PORT": "28082",
           "SENSORLIB_DASHBOARD_PORT": " "}
    settings = Settings.from_env(with_config_file(env))
    assert settings.producer_port == 18081          # file over default
    assert settings.processor_port == 28082         # environment over file
    assert settings.dashboard_port == 18006         # a blank variable counts as unset
    assert settings.max_past.days == 3 * 365 and settings.insecure
    assert settings.allowed_hosts == ("a.example", "b.example")
    assert settings.bootstrap_servers == "k1:9092,k2:9092" and settings.external


def test_config_file_mistakes_are_named(tmp_path: Path) -> None:
    path = tmp_path / "sensorlib.toml"
    path.write_text("procesor_port = 1\n")
    with pytest.raises(ConfigError, match="did you mean SENSORLIB_PROCESSOR_PORT"):
        read_config_file(path)
    path.write_text("[kafka]\nport = 1\n")
    with pytest.raises(ConfigError, match="no tables"):
        read_config_file(path)
    path.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(path)
    with pytest.raises(ConfigError, match="SENSORLIB_CONFIG=.*no such file"):
        with_config_file({"SENSORLIB_CONFIG": str(tmp_path / "missing.toml")})
    result = _sensorlib("topics", cwd=tmp_path)
    assert result.returncode == 2 and "not valid TOML" in result.stderr  # ./sensorlib.toml


def test_sensorlib_config_says_where_each_setting_came_from(tmp_path: Path) -> None:
    (tmp_path / "sensorlib.toml").write_text(
        'producer_port = 18081\nprocessor_port = 18082\napi_token = "file-secret-123"\n')
    result = _sensorlib("config", "--json", cwd=tmp_path, SENSORLIB_PROCESSOR_PORT="28082",
                        KAFKA_SASL_MECHANISM="PLAIN", KAFKA_SASL_USERNAME="u",
                        KAFKA_SASL_PASSWORD="env-secret-456", SENSORLIB_PROCESOR_PORT="1")
    assert result.returncode == 0, result.stderr
    assert "secret-123" not in result.stdout and "secret-456" not in result.stdout
    doc = json.loads(result.stdout)
    assert doc["configFile"] == str(tmp_path / "sensorlib.toml")
    rows = {r["name"]: r for r in doc["settings"]}
    assert rows["SENSORLIB_PRODUCER_PORT"]["value"] == "18081"
    assert rows["SENSORLIB_PRODUCER_PORT"]["source"].startswith("config file")
    assert (rows["SENSORLIB_PROCESSOR_PORT"]["value"], rows["SENSORLIB_PROCESSOR_PORT"]["source"]
            ) == ("28082", "environment")
    assert (rows["SENSORLIB_DASHBOARD_PORT"]["value"], rows["SENSORLIB_DASHBOARD_PORT"]["source"]
            ) == ("5006", "default")
    assert rows["SENSORLIB_API_TOKEN"]["value"] == "***"
    assert rows["KAFKA_SASL_PASSWORD"]["value"] == "***"
    assert rows["SENSORLIB_MAX_IN_FLIGHT"]["value"] == "20000"
    assert "typo" in rows["SENSORLIB_PROCESOR_PORT"]["note"]
    assert len(rows) >= 40
    text = _sensorlib("config", cwd=tmp_path).stdout
    assert "SENSORLIB_API_TOKEN" in text and "***" in text and "file-secret" not in text


def test_status_json_has_the_same_content(tmp_path: Path) -> None:
    ports = {f"SENSORLIB_{n}_PORT": str(free_port())
             for n in ("PRODUCER", "PROCESSOR", "ARCHIVER", "DASHBOARD")}
    env = dict(ports, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
               SENSORLIB_DATA=str(tmp_path / "data"))
    as_json = _sensorlib("status", "--json", cwd=tmp_path, **env)
    text = _sensorlib("status", cwd=tmp_path, **env)
    assert as_json.returncode == text.returncode == 1  # nothing runs
    doc = json.loads(as_json.stdout)
    assert doc["healthy"] is False and doc["kafka"]["reachable"] is False
    assert [s["name"] for s in doc["services"]] == ["producer", "processor", "archiver",
                                                    "dashboard"]
    for service in doc["services"]:
        assert service["status"] == "not running"
        assert f"{service['url']}: not running" in text.stdout
    assert doc["archive"]["tables"] is None and "none yet" in text.stdout


def _complete(script: str, *words: str) -> list[str]:
    line = " ".join(f"'{w}'" for w in words)
    program = (f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _sensorlib; "
               'printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_bash_completion_from_the_parser(tmp_path: Path) -> None:
    script = _sensorlib("completion", "bash", cwd=tmp_path).stdout
    subprocess.run(["bash", "-n", "-c", script], check=True)
    assert set(_complete(script, "sensorlib", "re")) == {"replay", "report"}
    assert "--json" in _complete(script, "sensorlib", "status", "--")
    assert set(_complete(script, "sensorlib", "broker", "st")) == {"start", "stop", "status"}
    assert set(_complete(script, "sensorlib", "replay", "--source", "")) == {
        "auto", "archive", "kafka"}
    assert "consumer-groups" in _complete(script, "sensorlib", "kafka", "con")
    zsh = _sensorlib("completion", "zsh", cwd=tmp_path).stdout
    assert "bashcompinit" in zsh and "complete -o default -F _sensorlib sensorlib" in zsh


def _record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_kafka_noise_is_demoted_and_real_errors_kept() -> None:
    noise = KafkaNoise()
    benign = [
        _record("kafka.cluster", logging.ERROR, "Metadata refresh: failed %s",
                kafka_errors.Cancelled()),
        _record("kafka.coordinator", logging.WARNING,
                "Marking the coordinator dead (node %s) for group %s: %s.", "coordinator-1",
                "g", kafka_errors.NotCoordinatorError()),
        _record("kafka.producer.sender", logging.WARNING,
                "%s: Got error produce response on topic-partition %s, retrying (%s attempts "
                "left): %s%s", "s", "t-0", 5, "NotEnoughReplicasError",
                ". Error Message: Unable to verify the partition has been added to the "
                "transaction"),
        _record("kafka.net.selector", logging.WARNING,
                "Task %r ran for 0.2s (>0.1s threshold). It is blocking the event loop", "t"),
    ]
    for record in benign:
        assert noise.filter(record) is False, record.getMessage()
        assert record.levelno == logging.DEBUG
    real = [
        _record("kafka.coordinator", logging.ERROR, "Group Coordinator Request failed: %s",
                kafka_errors.GroupAuthorizationFailedError("g")),
        _record("kafka.cluster", logging.ERROR, "Topic %s not found in cluster metadata", "t"),
        _record("sensorlib.processor.loop", logging.ERROR, "retrying %s", "x"),
    ]
    for record in real:
        assert noise.filter(record) is True and record.levelno == logging.ERROR
    late = KafkaNoise(started=-1e9)  # after start-up a slow task is worth a warning
    assert late.filter(_record("kafka.net.selector", logging.WARNING,
                               "Task %r ran. It is blocking the event loop", "t")) is True
