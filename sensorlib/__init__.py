"""sensorlib: watch, analyse and replay IoT sensor event streams on Apache Kafka.

The public surface, importable from the top level (loaded on first use, so the CLI
and small scripts don't pay for pandas unless they use it)::

    from sensorlib import Settings, Reading, parse_reading, Pipeline, run_frame
    from sensorlib import read_readings, read_alerts, LocalKafka, ReadingProducer

Modules, one concept each: ``config``, ``events``, ``simulate``, ``windows``,
``detect``, ``pipeline`` (the pure core); ``kafka_io``, ``broker``, ``produce``,
``processor``, ``replay``, ``report``, ``services``, ``dashboard``, ``supervise``, ``cli``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:  # one version, from the package metadata (pyproject.toml), for the CLI and every API
    __version__ = version("sensorlib")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "Settings": "sensorlib.config",
    "SensorlibError": "sensorlib.errors",
    "KafkaUnavailable": "sensorlib.errors",
    "ConfigError": "sensorlib.errors",
    "BrokerError": "sensorlib.errors",
    "Reading": "sensorlib.events",
    "Alert": "sensorlib.events",
    "FieldError": "sensorlib.events",
    "InvalidReading": "sensorlib.events",
    "parse_reading": "sensorlib.events",
    "parse_alert": "sensorlib.events",
    "alert_id": "sensorlib.events",
    "status_of": "sensorlib.events",
    "Simulator": "sensorlib.simulate",
    "SensorSpec": "sensorlib.simulate",
    "FaultRates": "sensorlib.simulate",
    "REFERENCE_FLEET": "sensorlib.simulate",
    "Aggregate": "sensorlib.windows",
    "SensorWindow": "sensorlib.windows",
    "WindowStore": "sensorlib.windows",
    "Detector": "sensorlib.detect",
    "RuleConfig": "sensorlib.detect",
    "Pipeline": "sensorlib.pipeline",
    "run_frame": "sensorlib.pipeline",
    "alerts_to_frame": "sensorlib.pipeline",
    "aggregates_to_frame": "sensorlib.pipeline",
    "LocalKafka": "sensorlib.broker",
    "ReadingProducer": "sensorlib.produce",
    "run_simulation": "sensorlib.produce",
    "Processor": "sensorlib.processor",
    "read_readings": "sensorlib.replay",
    "read_alerts": "sensorlib.replay",
}

__all__ = ["__version__", *_EXPORTS]  # noqa: PLE0604 - the keys are strings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sensorlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
