"""`sensorlib kafka TOOL` runs Kafka's own tools from the fetched jars, on the configured
cluster (issue 24, item 15)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sensorlib.config import Settings
from sensorlib.kafka.clients import make_producer
from tests.support import service_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _kafka(settings: Settings, *argv: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensorlib.cli", "kafka", *argv],
                          env=service_env(settings), capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_topics_groups_and_console_consumer(topics: Settings) -> None:
    listed = _kafka(topics, "topics", "--list")  # --bootstrap-server filled in
    assert listed.returncode == 0, listed.stderr
    assert topics.topic_readings in listed.stdout.split()

    described = _kafka(topics, "topics", "--describe", "--topic", topics.topic_readings,
                       "--bootstrap-server", topics.bootstrap_servers)  # given: kept
    assert described.returncode == 0 and "PartitionCount: 3" in described.stdout

    producer = make_producer(topics)
    producer.send(topics.topic_alerts, key="sensor-01", value=b"{\"alertId\": \"tool-test\"}")
    producer.flush()
    producer.close()
    consumed = _kafka(topics, "console-consumer", "--topic", topics.topic_alerts,
                      "--from-beginning", "--max-messages", "1", "--timeout-ms", "30000")
    assert consumed.returncode == 0, consumed.stderr
    assert 'tool-test' in consumed.stdout

    groups = _kafka(topics, "consumer-groups", "--list")
    assert groups.returncode == 0, groups.stderr

    missing = _kafka(topics, "topics", "--describe", "--topic", "no-such-topic-here")
    assert missing.returncode != 0  # the tool's own exit code


def test_help_is_the_tools() -> None:
    out = subprocess.run([sys.executable, "-m", "sensorlib.cli", "kafka", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "org.apache.kafka.tools.consumer.ConsoleConsumer" in out
    assert "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand" in out
