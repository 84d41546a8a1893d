"""Watching the watchers (issue 28, item 5): sensorlib's own alerting rules, evaluated by a
real Prometheus and routed through the same Alertmanager, reach the webhook when the
processor stops."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensorlib.config import Settings
from sensorlib.kafka.ports import free_port
from sensorlib.notify.alertmanager import alerting_section, operational_rules
from sensorlib.observe.viewers import prometheus_command, prometheus_config
from tests.notify.conftest import Alertmanager, Webhook, needs_alertmanager
from tests.support import Spawner, eventually, wait_http

pytestmark = [pytest.mark.kafka, needs_alertmanager,
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="prometheus is not installed")]


def test_shipped_rules_are_valid() -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed")
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yml") as handle:
        handle.write(operational_rules())
        handle.flush()
        subprocess.run(["promtool", "check", "rules", handle.name], check=True,
                       capture_output=True)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
        proc.wait(timeout=15)


def test_a_stopped_processor_alerts_at_the_webhook(
        topics: Settings, alertmanager: Alertmanager, webhook: Webhook, tmp_path: Path,
        prometheus: list[subprocess.Popen[bytes]]) -> None:
    spawner = Spawner(tmp_path)
    try:
        processor = spawner("processor", topics)
        target = processor.url.split("//", 1)[1]
        rules = tmp_path / "rules.yml"
        rules.write_text(operational_rules(down_for="2s"))
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(prometheus_config({"processor": target}, interval="1s")
                          + alerting_section(f"127.0.0.1:{alertmanager.port}", rules))
        with open(tmp_path / "prometheus.log", "wb") as log:
            prometheus.append(subprocess.Popen(prometheus_command(config, tmp_path / "tsdb", port),
                                               stdout=log, stderr=subprocess.STDOUT))
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=60)
        processor.kill()
        eventually(lambda: any(a["labels"]["alertname"] == "SensorlibServiceDown"
                               and a["labels"]["job"] == "processor" for a in webhook.alerts()),
                   timeout=60, interval=0.5)
        alert = next(a for a in webhook.alerts()
                     if a["labels"]["alertname"] == "SensorlibServiceDown")
        assert alert["labels"]["source"] == "sensorlib-ops"
        assert "processor is down" in alert["annotations"]["summary"]
    finally:
        spawner.stop_all()
