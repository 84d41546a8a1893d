"""The error hierarchy: each message says what happened and what to do about it."""

from __future__ import annotations


class SensorlibError(Exception):
    """Base class of every error sensorlib raises on purpose."""


class ConfigError(SensorlibError, ValueError):
    """A setting (usually an environment variable) has an unusable value."""


class BrokerError(SensorlibError):
    """The local Apache Kafka broker could not be provisioned, started or stopped."""


class KafkaUnavailable(SensorlibError):
    """Kafka did not answer at the configured bootstrap servers."""

    def __init__(self, bootstrap_servers: str, detail: str = "") -> None:
        self.bootstrap_servers = bootstrap_servers
        hint = (
            f"Kafka is not reachable at {bootstrap_servers} — start it with "
            "`sensorlib broker start` (or `make run`), or set KAFKA_BOOTSTRAP_SERVERS"
        )
        super().__init__(f"{hint} ({detail})" if detail else hint)


class KafkaSetupFailed(KafkaUnavailable):
    """Kafka answered, but the connection set-up (SASL, TLS) failed."""

    def __init__(self, bootstrap_servers: str, cause: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.cause = cause
        SensorlibError.__init__(
            self,
            f"Kafka at {bootstrap_servers} answered but the connection set-up failed: {cause} — "
            "check KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, "
            "KAFKA_SASL_PASSWORD and KAFKA_SSL_CAFILE")


class PublishError(SensorlibError):
    """Kafka refused or failed to acknowledge one or more readings."""


class ReplayError(SensorlibError, ValueError):
    """A replay was asked for something impossible (bad period, missing topic)."""


class HistoryError(SensorlibError, ValueError):
    """The archive cannot answer (no such table, bad query, unusable warehouse)."""


class ExportError(SensorlibError):
    """A frame could not be written where asked (the message says what to do)."""


class ReportError(SensorlibError):
    """A report could not be produced (the message names the failing cell)."""


class EmptyReport(ReportError):
    """Nothing to report: no reading in the period, or a sensor asked for sent none."""


class ArchiveError(SensorlibError):
    """The archiver cannot run (another one holds the warehouse, a topic is missing)."""
