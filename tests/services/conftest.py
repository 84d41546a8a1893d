"""Fixtures of the service tests: one module-wide set of created topics."""

from __future__ import annotations

import uuid

import pytest

from sensorlib.config import Settings
from sensorlib.kafka.admin import ensure_topics


@pytest.fixture(scope="module")
def module_topics(base_settings: Settings, kafka_cluster: str) -> Settings:
    """Private, created topics shared by one test module (for a module-wide service)."""
    suffix = "m" + uuid.uuid4().hex[:8]
    settings = base_settings.replace(
        bootstrap_servers=kafka_cluster, external=True,
        topic_readings=f"sensor-readings-{suffix}", topic_alerts=f"sensor-alerts-{suffix}",
        topic_dlq=f"sensor-readings-dlq-{suffix}", topic_rules=f"sensor-rules-{suffix}",
        topic_faults=f"sensor-faults-{suffix}",
        processor_group=f"python-consumer-group-{suffix}",
    )
    ensure_topics(settings)
    return settings
