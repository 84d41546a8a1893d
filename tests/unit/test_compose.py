"""compose.yml's structure and wiring match the code (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from sensorlib.cli import build_parser
from sensorlib.config import Settings
from sensorlib.kafka.jars import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_all_parts_are_there() -> None:
    assert set(SERVICES) == {"kafka", "kafka-ui", "producer", "processor", "archiver",
                             "dashboard", "jupyter", "zipkin", "prometheus", "notifier",
                             "alertmanager"}
    assert SERVICES["kafka-ui"]["image"].startswith("kafbat/kafka-ui")


def test_kafka_is_the_pinned_release_in_kraft_mode() -> None:
    kafka = SERVICES["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "9092:9092" in kafka["ports"][0]


def test_services_use_the_default_ports_and_known_commands() -> None:
    defaults = Settings.from_env({})
    expected = {"producer": defaults.producer_port, "processor": defaults.processor_port,
                "archiver": defaults.archiver_port, "dashboard": defaults.dashboard_port,
                "jupyter": defaults.jupyter_port}
    parser = build_parser()
    for name, port in expected.items():
        service = SERVICES[name]
        assert any(p.endswith(f":{port}:{port}") for p in service["ports"]), name
        assert all(p.startswith("127.0.0.1:") for p in service["ports"]), "bind to loopback"
        command = service["command"]
        if command[0] == "sensorlib":
            args = parser.parse_args(command[1:])
            assert args.handler is not None


def test_environment_variables_are_ones_the_code_reads() -> None:
    source = "".join(p.read_text() for p in (ROOT / "sensorlib").rglob("*.py"))
    for name in ("producer", "processor", "dashboard", "jupyter"):
        env = SERVICES[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
        for var in env:
            assert re.search(rf'"{var}"', source), f"{var} is not read by sensorlib"
        # The advertised internal listener is what the services are given.
        assert "INTERNAL://kafka:19092" in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        settings = Settings.from_env({k: str(v) for k, v in env.items()})
        assert settings.external and settings.host == "0.0.0.0"


def test_dockerfile_installs_the_package_and_ships_apps() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "constraints.txt" in text and "pip install" in text
    for folder in ("sensorlib", "dashboards", "notebooks"):
        assert f"COPY {folder}" in text
