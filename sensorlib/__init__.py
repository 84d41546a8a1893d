"""sensorlib: watch, analyse and replay IoT sensor event streams on Apache Kafka.

The public surface, importable from the top level (loaded on first use, so the CLI
and small scripts don't pay for pandas unless they use it)::

    from sensorlib import Settings, Reading, parse_reading, Pipeline, run_frame
    from sensorlib import read_readings, read_alerts, LocalKafka, ReadingProducer

Folders, one concept each (see "Where things live" in the README): ``model/`` (readings,
alerts, the one validator), ``engine/`` (windows, rules, the pipeline: pure, no I/O),
``kafka/`` (clients, the bounded reader, record unpacking, dead letters, the local broker),
``ingest/`` (simulator, producer, HTTP bridge), ``processor/``, ``history/`` (archiver, SQL),
``replay/``, ``notebook/`` (analysis, tuning, plots, report), ``notify/``, ``observe/``,
``services/`` (every HTTP app and ``sensorlib up``) and ``dashboard/``; ``config``, ``errors``
and ``cli`` at the top.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

# Arrow's allocator is chosen once, when pyarrow loads. Its default (mimalloc) keeps the
# Parquet reader's freed buffers: a month of history peaked at +1.13 GB and took 12.5 s with
# it, +0.76 GB and 7.4 s with the system allocator (same machine, same run). So, unless the
# user chose one, sensorlib's own processes (the command, the services, the dashboard, the
# report's kernel, which inherits the environment) use the system allocator. A notebook that
# imports pandas (which loads pyarrow) before sensorlib keeps Arrow's default: `make lab`
# sets the variable for you.
if "pyarrow" not in sys.modules:
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

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
    "Reading": "sensorlib.model.events",
    "Alert": "sensorlib.model.events",
    "FieldError": "sensorlib.model.rejections",
    "InvalidReading": "sensorlib.model.rejections",
    "parse_reading": "sensorlib.model.events",
    "parse_alert": "sensorlib.model.events",
    "alert_id": "sensorlib.model.events",
    "status_of": "sensorlib.model.events",
    "Simulator": "sensorlib.ingest.simulate",
    "SensorSpec": "sensorlib.ingest.simulate",
    "FaultRates": "sensorlib.ingest.simulate",
    "FaultLabel": "sensorlib.ingest.simulate",
    "REFERENCE_FLEET": "sensorlib.ingest.simulate",
    "Aggregate": "sensorlib.engine.windows",
    "SensorWindow": "sensorlib.engine.windows",
    "WindowStore": "sensorlib.engine.windows",
    "Detector": "sensorlib.engine.detect",
    "RuleConfig": "sensorlib.engine.detect",
    "Pipeline": "sensorlib.engine.pipeline",
    "run_frame": "sensorlib.engine.pipeline",
    "alerts_to_frame": "sensorlib.engine.pipeline",
    "aggregates_to_frame": "sensorlib.engine.pipeline",
    "LocalKafka": "sensorlib.kafka.broker",
    "ReadingProducer": "sensorlib.ingest.produce",
    "run_simulation": "sensorlib.ingest.produce",
    "Processor": "sensorlib.processor.loop",
    "backtest": "sensorlib.notebook.backtest",
    "rules_table": "sensorlib.notebook.rules",
    "set_rules": "sensorlib.notebook.rules",
    "unset_rules": "sensorlib.notebook.rules",
    "read_readings": "sensorlib.replay.reader",
    "read_alerts": "sensorlib.replay.reader",
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
