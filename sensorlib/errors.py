"""The error hierarchy: each message says what happened and what to do about it.

Each class carries the exit code the ``sensorlib`` command ends with when it is raised
(``exit_code``; :data:`EXIT_CODES` is the documented table, shown by ``sensorlib --help``),
so a cron job or a script can tell "Kafka is down" from "nothing to report" from "a typo".
"""

from __future__ import annotations

#: Exit codes of the ``sensorlib`` command: code -> meaning (README, ``--help``).
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "failed: any other error (a report cell failed, the archive is unusable, "
       "`status` found a part unhealthy)",
    2: "usage: a bad argument, setting or config file (`sensorlib config` shows them), "
       "a malformed period, an output file that exists",
    3: "Kafka unreachable (or its SASL/TLS set-up failed)",
    4: "nothing in the period: no reading to report",
    5: "unknown sensor: a sensor asked for sent nothing in the period",
    6: "a port is in use (another `sensorlib up`?); the message names it and its process",
    7: "the local broker or database could not be fetched or started (Java, Maven, "
       "PostgreSQL, its log's first error)",
    130: "interrupted (Ctrl-C)",
}


class SensorlibError(Exception):
    """Base class of every error sensorlib raises on purpose."""

    #: The ``sensorlib`` command's exit code for this error (:data:`EXIT_CODES`).
    exit_code = 1


class ConfigError(SensorlibError, ValueError):
    """A setting (usually an environment variable) has an unusable value."""

    exit_code = 2


class InvalidSetting(ConfigError):
    """A rule setting (of a layer of ``sensor-rules``, a ``sensorlib rules set`` argument, a
    ``PUT /api/rules`` body) is refused: ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UsageError(SensorlibError, ValueError):
    """A function or command was given an argument it cannot use (the message says which and
    what it accepts). A ``ValueError``, as Python code expects of a bad argument."""

    exit_code = 2


class InvalidInput(SensorlibError, ValueError):
    """Data from outside (a reading, a request body) was refused; subclasses say why."""


class BodyTooLarge(InvalidInput):
    """A request body exceeds its limit (64 KiB for one reading; the batch limit for batches)."""


class BodyTooSlow(InvalidInput):
    """A client did not send its whole request body within the body timeout."""


class Conflict(InvalidInput):
    """An event id was already used for a different reading of the same sensor (HTTP 409)."""


class Refused(SensorlibError):
    """A request cannot be taken now: 429 (too many in flight) or 503 (Kafka unavailable),
    with the seconds to wait in ``retry_after``."""

    def __init__(self, status: int, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class RebalanceStuck(SensorlibError):
    """A processor owned no partition for long while its group left some unowned: its session
    ends and a fresh consumer joins."""


class DashboardError(SensorlibError):
    """The dashboard server cannot start safely (its message says which setting to change)."""

    exit_code = 2


class BrokerError(SensorlibError):
    """The local Apache Kafka broker could not be provisioned, started or stopped."""

    exit_code = 7


class DatabaseError(SensorlibError):
    """The local PostgreSQL (``sensorlib db``) could not be set up, started or stopped, or
    the catalog database does not answer (the message says what to install or fix)."""

    exit_code = 7


class PortInUse(SensorlibError):
    """A port sensorlib would listen on is taken (the message names the process)."""

    exit_code = 6


class KafkaUnavailable(SensorlibError):
    """Kafka did not answer at the configured bootstrap servers."""

    exit_code = 3

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

    exit_code = 2


class HistoryError(SensorlibError, ValueError):
    """The archive cannot answer (no such table, bad query, unusable warehouse)."""


class ExportError(SensorlibError):
    """A frame could not be written where asked (the message says what to do)."""

    exit_code = 2


class ReportError(SensorlibError):
    """A report could not be produced (the message names the failing cell)."""


class EmptyReport(ReportError):
    """Nothing to report: no reading in the period, or a sensor asked for sent none."""

    exit_code = 4


class UnknownSensor(EmptyReport):
    """Nothing to report for a sensor asked for: it sent no reading in the period."""

    exit_code = 5


class ArchiveError(SensorlibError):
    """The archiver cannot run (a topic is missing, the archive cannot be written)."""


class ClusterMismatch(ArchiveError):
    """The archive holds a topic of another Kafka cluster than the one configured: its
    offsets name other records, so nothing is merged (the message names both clusters)."""


class NotifyError(SensorlibError):
    """Notifications cannot be sent: Alertmanager is not installed, refuses the alerts or
    its configuration is unusable (the message says what to do)."""
