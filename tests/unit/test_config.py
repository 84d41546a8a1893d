"""Configuration precedence and validation (pure, no broker)."""

from __future__ import annotations

import pytest

from sensorlib.config import LOCAL_BOOTSTRAP, Settings, bootstrap_from_env
from sensorlib.errors import ConfigError


def test_local_broker_when_nothing_is_set() -> None:
    assert bootstrap_from_env({}) == (LOCAL_BOOTSTRAP, False)


def test_kafka_bootstrap_servers_wins_over_aspire_variable() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2", "ConnectionStrings__messaging": "c:3"}
    assert bootstrap_from_env(env) == ("a:1,b:2", True)


def test_aspire_connection_string_takes_part_before_first_semicolon() -> None:
    env = {"ConnectionStrings__messaging": "k1:9092, k2:9092;SecurityProtocol=Plaintext;x=y"}
    assert bootstrap_from_env(env) == ("k1:9092,k2:9092", True)


def test_blank_variables_are_ignored() -> None:
    assert bootstrap_from_env({"KAFKA_BOOTSTRAP_SERVERS": "  ", "ConnectionStrings__messaging": ""}) == (
        LOCAL_BOOTSTRAP,
        False,
    )


def test_malformed_bootstrap_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        bootstrap_from_env({"KAFKA_BOOTSTRAP_SERVERS": "localhost"})


def test_defaults_follow_the_design_contract() -> None:
    s = Settings.from_env({})
    assert s.topics == ("sensor-readings", "sensor-alerts", "sensor-readings-dlq")
    assert (s.partitions, s.dlq_partitions) == (3, 1)
    assert s.processor_group == "python-consumer-group"
    assert s.dashboard_readings_group == "dashboard-readings-group"
    assert s.dashboard_alerts_group == "dashboard-group"
    assert (s.producer_port, s.processor_port, s.dashboard_port, s.jupyter_port) == (
        8081, 8082, 5006, 8888,
    )
    assert (s.kafka_port, s.controller_port) == (9092, 9093)
    assert s.host == "127.0.0.1"
    assert (s.temperature_threshold, s.humidity_threshold) == (35.0, 90.0)
    assert s.window_seconds == 300.0 and s.interval == 2.0
    assert not s.external


def test_everything_is_overridable() -> None:
    s = Settings.from_env(
        {
            "SENSORLIB_TOPIC_READINGS": "r",
            "SENSORLIB_PARTITIONS": "6",
            "SENSORLIB_PRODUCER_PORT": "9001",
            "SENSORLIB_TEMP_THRESHOLD": "33.5",
            "SENSORLIB_SEED": "42",
            "SENSORLIB_KAFKA_PORT": "19092",
            "SENSORLIB_HOST": "0.0.0.0",
        }
    )
    assert (s.topic_readings, s.partitions, s.producer_port) == ("r", 6, 9001)
    assert s.temperature_threshold == 33.5 and s.seed == 42
    assert s.bootstrap_servers == "localhost:19092" and not s.external
    assert s.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("var", "value"),
    [("SENSORLIB_PARTITIONS", "three"), ("SENSORLIB_PARTITIONS", "0"), ("SENSORLIB_INTERVAL", "-1"),
     ("SENSORLIB_PRODUCER_PORT", "70000"), ("SENSORLIB_TEMP_THRESHOLD", "hot"),
     ("SENSORLIB_METRICS_URLS", "dashboard=http://d:5006/metrics"),
     ("SENSORLIB_METRICS_URLS", "producer=producer:8081/metrics"),
     ("SENSORLIB_METRICS_URLS", "producer")],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value})


def test_password_never_in_repr_or_description() -> None:
    s = Settings.from_env(
        {"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "s3cr3t"}
    )
    assert "s3cr3t" not in repr(s)
    assert "s3cr3t" not in str(s.describe())
    assert s.sasl_password == "s3cr3t"


def test_to_env_round_trips_through_from_env() -> None:
    s = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "h:1", "SENSORLIB_TOPIC_ALERTS": "a",
                           "SENSORLIB_SEED": "7", "SENSORLIB_TEMP_THRESHOLD": "33.3",
                           "SENSORLIB_METRICS_URLS": "producer=http://producer:8081/metrics",
                           "HOME": "/home/x"})
    assert Settings.from_env(s.to_env() | {"HOME": "/home/x"}) == s


def test_the_ops_tab_scrapes_the_metrics_urls_given() -> None:
    from sensorlib.dashboard.ops_tab import metrics_urls

    s = Settings.from_env({"SENSORLIB_METRICS_URLS": " processor = http://processor:8082/metrics ,"
                                                     "archiver=https://a.example/metrics"})
    assert metrics_urls(s) == {"producer": "http://127.0.0.1:8081/metrics",
                               "processor": "http://processor:8082/metrics",
                               "archiver": "https://a.example/metrics"}


@pytest.mark.parametrize("name", ["SENSORLIB_TOPIC_READINGS", "SENSORLIB_TOPIC_FAULTS",
                                  "SENSORLIB_TOPIC_RULES"])
@pytest.mark.parametrize("value", ["a b", "x" * 250, "..", "bad\u202etopic", "é"])
def test_a_topic_name_kafka_would_refuse_is_refused_naming_the_variable(name: str,
                                                                         value: str) -> None:
    from sensorlib.config import Settings
    from sensorlib.errors import ConfigError

    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
    assert Settings.from_env({name: "ok.topic-1"}).replace() is not None
