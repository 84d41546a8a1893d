"""Settings from environment variables, with the defaults of the design contract.

One frozen :class:`Settings` object carries everything a component needs: where Kafka
is, the topic and group names, ports, thresholds and local paths. Build it with
:meth:`Settings.from_env` (what the CLI, services and notebooks do) and derive variants
with :meth:`Settings.replace` (what tests do to get private topics).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from sensorlib.errors import ConfigError

#: The local broker's default client port, used when no cluster is configured.
LOCAL_BOOTSTRAP = "localhost:9092"


def bootstrap_from_env(env: Mapping[str, str]) -> tuple[str, bool]:
    """Return ``(bootstrap_servers, external)`` following the design's precedence.

    ``KAFKA_BOOTSTRAP_SERVERS`` wins; else the reference sample's
    ``ConnectionStrings__messaging`` (the part before the first ``;``, itself possibly a
    comma list); else the local broker. ``external`` is True when the user pointed us at
    a cluster of their own, in which case no local broker is ever started.

    >>> bootstrap_from_env({"ConnectionStrings__messaging": "k1:9092,k2:9092;SecurityProtocol=Plaintext"})
    ('k1:9092,k2:9092', True)
    >>> bootstrap_from_env({})
    ('localhost:9092', False)
    """
    explicit = env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if explicit:
        return _normalise_servers(explicit, "KAFKA_BOOTSTRAP_SERVERS"), True
    aspire = env.get("ConnectionStrings__messaging", "").strip()
    if aspire:
        first = aspire.split(";", 1)[0].strip()
        if first:
            return _normalise_servers(first, "ConnectionStrings__messaging"), True
    return LOCAL_BOOTSTRAP, False


def _normalise_servers(value: str, variable: str) -> str:
    servers = [s.strip() for s in value.split(",") if s.strip()]
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(
                f"{variable} must be a comma-separated list of host:port, got {server!r}"
            )
    return ",".join(servers)


_N = TypeVar("_N", int, float)


def _number(env: Mapping[str, str], name: str, default: _N, kind: type[_N], what: str) -> _N:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    """The integer in ``env[name]`` (``default`` when unset or blank).

    Raises:
        ConfigError: naming the variable when it is not an integer.
    """
    return _number(env, name, default, int, "an integer")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float, "a number")


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


#: What ``SENSORLIB_DASHBOARD_ALLOCATOR`` takes (see :mod:`sensorlib.dashboard.allocator`).
DASHBOARD_ALLOCATORS = ("auto", "jemalloc", "python")

#: What Kafka accepts as a topic name (its own rule: 1-249 of these characters).
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _topic(env: Mapping[str, str], name: str, default: str) -> str:
    """A topic name from ``name``, refused (naming the variable) unless Kafka accepts it."""
    value = _str(env, name, default)
    if not _TOPIC.fullmatch(value) or value in (".", ".."):
        raise ConfigError(f"{name} must be a Kafka topic name (1-249 letters, digits, '.', "
                          f"'_' or '-'), got {value[:60]!r}")
    return value


def _check_tz(name: str) -> None:
    """Raise :class:`ConfigError` naming ``SENSORLIB_TZ`` unless ``name`` is an IANA zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        if not name or "\x00" in name:
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(f"SENSORLIB_TZ must be an IANA time zone name such as 'UTC', "
                          f"'Europe/Berlin' or 'America/New_York', got {name!r}") from None


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    raw = env.get(name)
    return default if not raw else Path(raw).expanduser()


#: Seconds per duration unit; a year is 365 days (no calendar: durations are exact).
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
#: The spelled-out names of the units (``2 weeks``, ``3 years``, ``90 sec``).
_UNIT_NAMES = {
    **{word: "s" for word in ("sec", "secs", "second", "seconds")},
    **{word: "m" for word in ("min", "mins", "minute", "minutes")},
    **{word: "h" for word in ("hr", "hrs", "hour", "hours")},
    **{word: "d" for word in ("day", "days")},
    **{word: "w" for word in ("wk", "wks", "week", "weeks")},
    **{word: "y" for word in ("yr", "yrs", "year", "years")},
}
_DURATION_HINT = "like 90s, 5m, 12h, 365d, 2w or 3y"


def parse_duration(raw: str, name: str = "duration") -> timedelta:
    """A duration like ``90s``, ``5m``, ``12h``, ``365d``, ``2w``, ``3y`` or ``2 days``
    (units s, m, h, d, w = 7 days, y = 365 days, or their names; a bare number is seconds).

    >>> parse_duration("5m"), parse_duration("1.5h")
    (datetime.timedelta(seconds=300), datetime.timedelta(seconds=5400))
    >>> parse_duration("3y") == parse_duration("1095 days")
    True
    """
    text = raw.strip().lower()
    stem = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    word = text[len(stem):]
    unit = _UNIT_NAMES.get(word, word or "s")
    try:
        if unit not in _UNITS:
            raise ValueError(word)
        value = float(stem.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a duration {_DURATION_HINT}, got {raw!r}") from None
    if not 0 <= value * _UNITS[unit] <= 100 * 365 * 86400:  # also refuses NaN
        raise ConfigError(f"{name} must be a duration between 0 and 100 years, got {raw!r}")
    return timedelta(seconds=value * _UNITS[unit])


def env_duration(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    """The duration in ``env[name]`` (:func:`parse_duration`; ``default`` when unset or blank)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return parse_duration(raw, name)


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name) or ""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


#: The services whose /metrics the dashboard's Ops tab reads.
METRICS_SERVICES = ("producer", "processor", "archiver")


def _metrics_urls(env: Mapping[str, str], name: str) -> tuple[tuple[str, str], ...]:
    """``producer=http://producer:8081/metrics,…`` as ``((service, url), …)``.

    Raises:
        ConfigError: naming the variable for an unknown service or a URL that is not http(s).
    """
    out = []
    for item in _list(env, name):
        service, sep, url = (part.strip() for part in item.partition("="))
        if not sep or service not in METRICS_SERVICES:
            raise ConfigError(f"{name}: expected service=URL with service one of "
                              f"{', '.join(METRICS_SERVICES)}, got {item!r}")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{name}: {service}'s URL must start with http:// or https://, "
                              f"got {url!r}")
        out.append((service, url))
    return tuple(out)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server reachable from this machine only: a
    ``localhost`` name or an address in 127.0.0.0/8 or ``::1``. ``0.0.0.0``, ``::``, an
    empty host and any other name or address are "beyond loopback".

    >>> is_loopback("127.0.0.1"), is_loopback("127.0.0.2"), is_loopback("[::1]")
    (True, True, True)
    >>> is_loopback("0.0.0.0"), is_loopback(""), is_loopback("192.168.1.5"), is_loopback("::")
    (False, False, False, False)
    """
    import ipaddress

    name = host.strip().lower().strip("[]").rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


#: The configuration file: ``$SENSORLIB_CONFIG``, else ``sensorlib.toml`` in the current folder.
CONFIG_FILE = "sensorlib.toml"

#: Every variable sensorlib reads (``sensorlib config`` lists them; a config file's key must
#: be one of them, or its lower-case form with or without ``sensorlib_``).
VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS", "ConnectionStrings__messaging", "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE",
    "KAFKA_HOME", "SENSORLIB_TOPIC_READINGS", "SENSORLIB_TOPIC_ALERTS", "SENSORLIB_TOPIC_DLQ",
    "SENSORLIB_TOPIC_RULES", "SENSORLIB_TOPIC_FAULTS",
    "SENSORLIB_PARTITIONS", "SENSORLIB_REPLICATION_FACTOR", "SENSORLIB_RETENTION_HOURS",
    "SENSORLIB_PROCESSOR_GROUP", "SENSORLIB_ARCHIVER_GROUP",
    "SENSORLIB_DASHBOARD_READINGS_GROUP", "SENSORLIB_DASHBOARD_ALERTS_GROUP", "SENSORLIB_HOST",
    "SENSORLIB_PRODUCER_PORT", "SENSORLIB_PROCESSOR_PORT", "SENSORLIB_ARCHIVER_PORT",
    "SENSORLIB_DASHBOARD_PORT", "SENSORLIB_JUPYTER_PORT", "SENSORLIB_KAFKA_PORT",
    "SENSORLIB_CONTROLLER_PORT", "SENSORLIB_KAFKA_HEAP", "SENSORLIB_ZIPKIN_PORT",
    "SENSORLIB_PROMETHEUS_PORT", "SENSORLIB_TEMP_THRESHOLD", "SENSORLIB_HUMIDITY_THRESHOLD",
    "SENSORLIB_WINDOW_SECONDS", "SENSORLIB_INTERVAL", "SENSORLIB_SEED", "SENSORLIB_CACHE",
    "SENSORLIB_DATA", "SENSORLIB_WAREHOUSE", "SENSORLIB_NOTEBOOKS", "SENSORLIB_MAX_PAST",
    "SENSORLIB_MAX_FUTURE", "SENSORLIB_MAX_SENSORS", "SENSORLIB_MAX_SESSIONS",
    "SENSORLIB_DASHBOARD_ALLOCATOR",
    "SENSORLIB_STALE_AFTER", "SENSORLIB_ALLOWED_HOSTS", "SENSORLIB_CORS_ORIGINS",
    "SENSORLIB_METRICS_URLS", "SENSORLIB_API_TOKEN", "SENSORLIB_INSECURE",
    "SENSORLIB_BODY_TIMEOUT", "SENSORLIB_HEADER_TIMEOUT", "SENSORLIB_MAX_HEADER_BYTES",
    "SENSORLIB_MAX_IN_FLIGHT", "SENSORLIB_MAX_BATCH", "SENSORLIB_MAX_BATCH_BYTES",
    "SENSORLIB_ACK_TIMEOUT", "SENSORLIB_RETRY_AFTER", "SENSORLIB_IDEMPOTENCY_TTL",
    "SENSORLIB_IDEMPOTENCY_KEYS", "SENSORLIB_LOG_FORMAT", "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_ZIPKIN_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_SDK_DISABLED",
    "SENSORLIB_NOTIFICATION_GROUP", "SENSORLIB_NOTIFIER_PORT", "SENSORLIB_ALERTMANAGER_PORT",
    "SENSORLIB_ALERTMANAGER_URL", "SENSORLIB_SMTP_HOST", "SENSORLIB_SMTP_PORT",
    "SENSORLIB_SMTP_FROM", "SENSORLIB_SMTP_TO", "SENSORLIB_SMTP_USER", "SENSORLIB_SMTP_PASSWORD",
    "SENSORLIB_SMTP_TLS", "SENSORLIB_WEBHOOK_URLS", "SENSORLIB_SLACK_WEBHOOK_URL",
    "SENSORLIB_TZ", "SENSORLIB_CATALOG_URI", "SENSORLIB_DB_PORT",
)
#: Variables whose values are never shown (``***`` in ``sensorlib config``).
SECRET_VARIABLES = frozenset({"KAFKA_SASL_PASSWORD", "SENSORLIB_API_TOKEN",
                              "SENSORLIB_SMTP_PASSWORD", "SENSORLIB_SLACK_WEBHOOK_URL"})
#: Prefixes of variable names a config file may set even when not in :data:`VARIABLES`
#: (a setting added since, or one of another tool: ``OTEL_*``).
_VARIABLE_PREFIXES = ("SENSORLIB_", "KAFKA_", "OTEL_")


def config_file_path(env: Mapping[str, str] | None = None) -> Path | None:
    """The configuration file in force: ``$SENSORLIB_CONFIG`` (which must exist), else
    ``./sensorlib.toml`` when there is one, else None."""
    env = os.environ if env is None else env
    explicit = (env.get("SENSORLIB_CONFIG") or "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"SENSORLIB_CONFIG={explicit}: there is no such file")
        return path
    local = Path.cwd() / CONFIG_FILE
    return local if local.is_file() else None


def _variable_name(key: str, path: Path) -> str:
    """The variable a config file's key stands for: its own name (``SENSORLIB_HOST``),
    the lower-case form (``sensorlib_host``) or without the prefix (``host``)."""
    by_upper = {name.upper(): name for name in VARIABLES}
    for candidate in (key.upper(), "SENSORLIB_" + key.upper()):
        if candidate in by_upper:
            return by_upper[candidate]
    if key.isupper() and key.startswith(_VARIABLE_PREFIXES):
        return key
    import difflib

    near = (difflib.get_close_matches(key.upper(), list(by_upper), n=1, cutoff=0.75)
            or difflib.get_close_matches("SENSORLIB_" + key.upper(), list(by_upper), n=1,
                                         cutoff=0.75))
    hint = f" (did you mean {by_upper[near[0]]}?)" if near else ""
    raise ConfigError(f"{path}: {key!r} is not a sensorlib setting{hint}; keys are the "
                      "environment variables' names (`sensorlib config` lists them), in "
                      "upper or lower case, with or without SENSORLIB_")


def read_config_file(path: Path) -> dict[str, str]:
    """The settings in a TOML config file as environment variables (name -> text).

    Numbers, booleans (``1``/``0``) and lists of strings (comma-joined) are accepted.
    """
    import tomllib

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            raise ConfigError(f"{path}: [{key}] is a table; the file has no tables, one key per "
                              "setting (e.g. producer_port = 8081)")
        name = _variable_name(key, path)
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, (int, float, str)):
            text = str(value)
        elif isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            text = ",".join(str(v) for v in value)
        else:
            raise ConfigError(f"{path}: {key} must be a string, number, boolean or list, "
                              f"not {type(value).__name__} (no tables: one key per setting)")
        if name in out:
            raise ConfigError(f"{path}: {name} is set twice")
        out[name] = text
    return out


def with_config_file(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` over the config file's settings (:func:`config_file_path`): a variable set
    in the environment wins over the file, the file over the defaults."""
    path = config_file_path(env)
    if path is None:
        return dict(env)
    from_file = read_config_file(path)
    # A variable set but blank in the environment counts as unset (as everywhere else).
    return {**from_file, **{k: v for k, v in env.items() if v.strip() or k not in from_file}}


#: SQLAlchemy URL schemes (``dialect`` or ``dialect+driver``) the archive's catalog may use.
CATALOG_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgres")


def check_catalog_uri(uri: str) -> None:
    """Raise :class:`ConfigError` naming ``SENSORLIB_CATALOG_URI`` unless ``uri`` is a
    SQLAlchemy URL sensorlib can open: ``sqlite:///PATH`` or
    ``postgresql[+psycopg]://USER[:PASSWORD]@HOST[:PORT]/DATABASE`` (psycopg 3 is the driver).

    >>> check_catalog_uri("postgresql+psycopg://me:pw@db:5432/catalog")
    >>> check_catalog_uri("mysql://db/catalog")
    Traceback (most recent call last):
    ...
    sensorlib.errors.ConfigError: SENSORLIB_CATALOG_URI must be a SQLAlchemy URL of sqlite or PostgreSQL (sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE), got 'mysql://db/catalog'
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() not in CATALOG_SCHEMES or not rest.strip("/"):
        raise ConfigError("SENSORLIB_CATALOG_URI must be a SQLAlchemy URL of sqlite or "
                          "PostgreSQL (sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@"
                          f"HOST:PORT/DATABASE), got {mask_uri(uri)!r}")


def mask_uri(uri: str) -> str:
    """``uri`` with its password (in the user part or a ``password=`` parameter) shown as
    ``***``: what status lines, errors and logs print of a database URL.

    >>> mask_uri("postgresql+psycopg://me:s3cret@db:5432/cat?password=x&sslmode=require")
    'postgresql+psycopg://me:***@db:5432/cat?password=***&sslmode=require'
    >>> mask_uri("sqlite:////data/warehouse/catalog.db")
    'sqlite:////data/warehouse/catalog.db'
    """

    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    rest, question, query = rest.partition("?")
    # The user part ends at the last "@" (a password may hold "/" or "@"); the path after it.
    at = rest.rfind("@")
    if at >= 0:
        userinfo, host_path = rest[:at], rest[at + 1:]
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        rest = f"{userinfo}@{host_path}"
    query = re.sub(r"(?i)((?:^|&)password=)[^&]*", r"\1***", query)
    return f"{scheme}{sep}{rest}{question}{query}"


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


@dataclass(frozen=True)
class IngestSettings:
    """Limits of the HTTP ingestion path (environment variables in brackets).

    - ``max_in_flight`` [``SENSORLIB_MAX_IN_FLIGHT``, 20000]: readings handed to Kafka and
      not yet acknowledged; past it requests get 429. A batch must fit whole.
    - ``max_batch`` [``SENSORLIB_MAX_BATCH``, 10000]: readings per batch request.
    - ``max_batch_bytes`` [``SENSORLIB_MAX_BATCH_BYTES``, 16 MiB]: a batch body's size
      (10,000 readings of up to ~1.6 KiB each; a typical reading is ~130 bytes).
    - ``ack_timeout`` [``SENSORLIB_ACK_TIMEOUT``, 5s]: longest a request waits for Kafka's
      acknowledgement (then 503), and how long Kafka may make no progress before new
      requests are refused with 503 at once.
    - ``retry_after`` [``SENSORLIB_RETRY_AFTER``, 1]: seconds in ``Retry-After``.
    - ``idempotency_ttl`` [``SENSORLIB_IDEMPOTENCY_TTL``, 10m]: how long an event id is
      remembered; ``idempotency_keys`` [``SENSORLIB_IDEMPOTENCY_KEYS``, 100000]: at most
      this many (the oldest are forgotten first).
    """

    max_in_flight: int = 20_000
    max_batch: int = 10_000
    max_batch_bytes: int = 16 * 1024 * 1024
    ack_timeout: float = 5.0
    retry_after: int = 1
    idempotency_ttl: float = 600.0
    idempotency_keys: int = 100_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        """Read the limits from ``env`` (default ``os.environ``); unset means the default.

        Raises:
            ConfigError: naming the variable when a value is not usable.
        """
        env = os.environ if env is None else env
        d = cls()
        limits = cls(
            max_in_flight=env_int(env, "SENSORLIB_MAX_IN_FLIGHT", d.max_in_flight),
            max_batch=env_int(env, "SENSORLIB_MAX_BATCH", d.max_batch),
            max_batch_bytes=env_int(env, "SENSORLIB_MAX_BATCH_BYTES", d.max_batch_bytes),
            ack_timeout=_seconds(env, "SENSORLIB_ACK_TIMEOUT", d.ack_timeout),
            retry_after=env_int(env, "SENSORLIB_RETRY_AFTER", d.retry_after),
            idempotency_ttl=_seconds(env, "SENSORLIB_IDEMPOTENCY_TTL", d.idempotency_ttl),
            idempotency_keys=env_int(env, "SENSORLIB_IDEMPOTENCY_KEYS", d.idempotency_keys),
        )
        limits.validate()
        return limits

    def to_env(self) -> dict[str, str]:
        """The variables that make a child's :meth:`from_env` equal these limits."""
        return {"SENSORLIB_MAX_IN_FLIGHT": str(self.max_in_flight),
                "SENSORLIB_MAX_BATCH": str(self.max_batch),
                "SENSORLIB_MAX_BATCH_BYTES": str(self.max_batch_bytes),
                "SENSORLIB_ACK_TIMEOUT": f"{self.ack_timeout!r}s",
                "SENSORLIB_RETRY_AFTER": str(self.retry_after),
                "SENSORLIB_IDEMPOTENCY_TTL": f"{self.idempotency_ttl!r}s",
                "SENSORLIB_IDEMPOTENCY_KEYS": str(self.idempotency_keys)}

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the variable of an unusable value."""
        for name, value in (("MAX_IN_FLIGHT", self.max_in_flight), ("MAX_BATCH", self.max_batch),
                            ("MAX_BATCH_BYTES", self.max_batch_bytes),
                            ("IDEMPOTENCY_KEYS", self.idempotency_keys)):
            if value < 1:
                raise ConfigError(f"SENSORLIB_{name} must be at least 1, got {value}")
        if self.ack_timeout <= 0:
            raise ConfigError("SENSORLIB_ACK_TIMEOUT must be positive")
        if self.retry_after < 0:
            raise ConfigError("SENSORLIB_RETRY_AFTER must not be negative")
        if self.idempotency_ttl <= 0:
            raise ConfigError("SENSORLIB_IDEMPOTENCY_TTL must be positive")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    return env_duration(env, name, timedelta(seconds=default)).total_seconds()


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the design contract's defaults.

    Environment variables (all optional):

    ========================================  =====================================
    ``KAFKA_BOOTSTRAP_SERVERS``               cluster to use (no local broker then)
    ``ConnectionStrings__messaging``          the reference sample's variable
    ``KAFKA_SECURITY_PROTOCOL``               e.g. ``SASL_SSL``
    ``KAFKA_SASL_MECHANISM`` / ``_USERNAME`` / ``_PASSWORD``, ``KAFKA_SSL_CAFILE``
    ``SENSORLIB_TOPIC_READINGS`` / ``_ALERTS`` / ``_DLQ``   topic names
    ``SENSORLIB_TOPIC_RULES``                 the compacted rule-settings table (``sensor-rules``)
    ``SENSORLIB_TOPIC_FAULTS``                the simulator's fault labels (``sensor-faults``)
    ``SENSORLIB_PARTITIONS``                  partitions of readings and alerts (3)
    ``SENSORLIB_RETENTION_HOURS``             retention of readings, alerts, DLQ, faults (168)
    ``SENSORLIB_PROCESSOR_GROUP``             ``python-consumer-group``
    ``SENSORLIB_ARCHIVER_GROUP``              ``archiver-group``
    ``SENSORLIB_HOST``                        bind address of the services (127.0.0.1)
    ``SENSORLIB_PRODUCER_PORT`` / ``_PROCESSOR_PORT`` / ``_DASHBOARD_PORT`` / ``_JUPYTER_PORT``
    ``SENSORLIB_ARCHIVER_PORT``               the archiver's ``/health`` (8083)
    ``SENSORLIB_TEMP_THRESHOLD`` / ``SENSORLIB_HUMIDITY_THRESHOLD``  (35, 90)
    ``SENSORLIB_WINDOW_SECONDS``              aggregate window (300)
    ``SENSORLIB_INTERVAL``                    seconds between a sensor's readings (2)
    ``SENSORLIB_SEED``                        simulator seed (random when unset)
    ``SENSORLIB_CACHE``                       Kafka jars cache (~/.cache/sensorlib)
    ``SENSORLIB_DATA``                        local broker data (~/.local/share/sensorlib)
    ``KAFKA_HOME``                            use this Kafka installation's libs/
    ``SENSORLIB_KAFKA_PORT`` / ``_CONTROLLER_PORT``  local broker ports (9092, 9093)
    ``SENSORLIB_KAFKA_HEAP``                  local broker heap (512m)
    ``SENSORLIB_MAX_PAST`` / ``_MAX_FUTURE``   accepted event-time window around the
                                              receiver's clock (``365d`` / ``5m``)
    ``SENSORLIB_ALLOWED_HOSTS``               Host header values the APIs and the
                                              dashboard answer (comma list; default:
                                              localhost, 127.0.0.1, ::1 and the bind host)
    ``SENSORLIB_CORS_ORIGINS``                browser origins allowed to POST (comma list;
                                              default: none but the service's own)
    ``SENSORLIB_WAREHOUSE``                   the history archive (``<data>/warehouse``)
    ``SENSORLIB_CATALOG_URI``                 the archive's Iceberg catalog as a SQLAlchemy URL,
                                              e.g. ``postgresql+psycopg://user:pw@db:5432/cat``
                                              (default: the sqlite file
                                              ``<warehouse>/catalog.db``; the password is
                                              never shown)
    ``SENSORLIB_DB_PORT``                     the PostgreSQL ``sensorlib db start`` runs (5433)
    ``SENSORLIB_NOTEBOOKS``                   a folder whose ``04_report.ipynb``
                                              ``sensorlib report`` runs instead of the one
                                              shipped in the package (unset)
    ``SENSORLIB_BODY_TIMEOUT``                seconds a client may take to send a body (10)
    ``SENSORLIB_HEADER_TIMEOUT``              seconds a client may take to send a request
                                              head: idle connections are closed after it (5)
    ``SENSORLIB_MAX_HEADER_BYTES``            largest request head (line and headers) the
                                              APIs read; larger gets 431 (16384)
    ``SENSORLIB_API_TOKEN``                   bearer token every API write must carry
                                              (required when bound beyond loopback; also
                                              the dashboard's login password; never shown)
    ``SENSORLIB_INSECURE``                    ``1``: bound beyond loopback without a token,
                                              anyone may write (``sensorlib up --insecure``)
    ``SENSORLIB_MAX_SENSORS``                 distinct sensors the processor keeps state for
                                              (per partition); a reading of one more is
                                              dead-lettered (10000)
    ``SENSORLIB_MAX_SESSIONS``                dashboard browser sessions open at once; one
                                              more gets a "try again later" page (50)
    ``SENSORLIB_DASHBOARD_ALLOCATOR``         the dashboard server's allocator: ``auto``
                                              (jemalloc when installed), ``jemalloc``
                                              (required) or ``python`` (``auto``)
    ``SENSORLIB_STALE_AFTER``                 no reading for this long: STALE on the dashboard
                                              (default 3 × SENSORLIB_INTERVAL, at least 10 s)
    ``SENSORLIB_METRICS_URLS``                where the dashboard's Ops tab scrapes the
                                              services, ``producer=URL,processor=URL,
                                              archiver=URL`` (default: SENSORLIB_HOST and
                                              each service's port)
    ``SENSORLIB_NOTIFICATION_GROUP``          the notifier's group (``notification-group``)
    ``SENSORLIB_NOTIFIER_PORT``               the notifier's ``/health`` and ``/metrics`` (8084)
    ``SENSORLIB_ALERTMANAGER_PORT``           the Alertmanager ``sensorlib up --notify`` starts
                                              (9095; never its default 9093, Kafka's controller)
    ``SENSORLIB_ALERTMANAGER_URL``            an Alertmanager of your own (then none is
                                              started); default ``http://127.0.0.1:<port>``
    ``SENSORLIB_SMTP_HOST`` / ``_PORT``       mail server of the e-mail receiver (none: no
                                              e-mail; port 25)
    ``SENSORLIB_SMTP_FROM`` / ``_TO``         sender and recipients (comma list) of the e-mails
    ``SENSORLIB_SMTP_USER`` / ``_PASSWORD``   SMTP login (the password is never shown)
    ``SENSORLIB_SMTP_TLS``                    ``1``: require STARTTLS (default ``0``)
    ``SENSORLIB_WEBHOOK_URLS``                webhooks Alertmanager posts notifications to
                                              (comma list; its webhook JSON)
    ``SENSORLIB_SLACK_WEBHOOK_URL``           a Slack incoming webhook for notifications
    ``SENSORLIB_TZ``                          IANA time zone of the days in notebooks and
                                              reports, e.g. ``Europe/Berlin`` (``UTC``)
    ========================================  =====================================
    """

    bootstrap_servers: str = LOCAL_BOOTSTRAP
    external: bool = False
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None

    topic_readings: str = "sensor-readings"
    topic_alerts: str = "sensor-alerts"
    topic_dlq: str = "sensor-readings-dlq"
    topic_rules: str = "sensor-rules"
    #: The simulator's fault labels (kind, sensor, start, end): archived as the ``faults``
    #: table, what backtests score against. Not in :attr:`topics` (it holds no readings).
    topic_faults: str = "sensor-faults"
    partitions: int = 3
    dlq_partitions: int = 1
    replication_factor: int = 1
    retention_hours: int = 168

    processor_group: str = "python-consumer-group"
    archiver_group: str = "archiver-group"
    dashboard_readings_group: str = "dashboard-readings-group"
    dashboard_alerts_group: str = "dashboard-group"

    host: str = "127.0.0.1"
    producer_port: int = 8081
    processor_port: int = 8082
    dashboard_port: int = 5006
    archiver_port: int = 8083
    jupyter_port: int = 8888

    temperature_threshold: float = 35.0
    humidity_threshold: float = 90.0
    window_seconds: float = 300.0
    interval: float = 2.0
    seed: int | None = None

    cache_dir: Path = field(default_factory=lambda: _home({}) / ".cache" / "sensorlib")
    data_dir: Path = field(default_factory=lambda: _home({}) / ".local" / "share" / "sensorlib")
    kafka_home: Path | None = None
    kafka_port: int = 9092
    controller_port: int = 9093
    kafka_heap: str = "512m"

    max_past: timedelta = timedelta(days=365)
    max_future: timedelta = timedelta(minutes=5)
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    warehouse_dir: Path | None = None
    notebooks_dir: Path | None = None
    body_timeout: float = 10.0
    header_timeout: float = 5.0
    max_header_bytes: int = 16384
    api_token: str | None = field(default=None, repr=False)
    insecure: bool = False
    stale_after: timedelta | None = None
    max_sensors: int = 10_000
    max_sessions: int = 50
    dashboard_allocator: str = "auto"
    metrics_urls: tuple[tuple[str, str], ...] = ()
    notification_group: str = "notification-group"
    notifier_port: int = 8084
    alertmanager_port: int = 9095
    alertmanager_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "sensorlib@localhost"
    smtp_to: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_tls: bool = False
    webhook_urls: tuple[str, ...] = ()
    slack_webhook_url: str | None = field(default=None, repr=False)
    tz: str = "UTC"
    log_format: str = "text"
    zipkin_port: int = 9411
    prometheus_port: int = 9090
    catalog_uri: str | None = field(default=None, repr=False)
    db_port: int = 5433
    ingest: IngestSettings = field(default_factory=lambda: IngestSettings())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: ``os.environ`` over the config file
        ``sensorlib.toml`` or ``$SENSORLIB_CONFIG``, see :func:`with_config_file`)."""
        env = with_config_file(os.environ) if env is None else env
        bootstrap, external = bootstrap_from_env(env)
        home = _home(env)
        seed = env.get("SENSORLIB_SEED", "").strip()
        kafka_port = env_int(env, "SENSORLIB_KAFKA_PORT", 9092)
        if not external and kafka_port != 9092:
            bootstrap = f"localhost:{kafka_port}"
        settings = cls(
            bootstrap_servers=bootstrap,
            external=external,
            security_protocol=_str(env, "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper(),
            sasl_mechanism=env.get("KAFKA_SASL_MECHANISM") or None,
            sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
            sasl_password=env.get("KAFKA_SASL_PASSWORD") or None,
            ssl_cafile=env.get("KAFKA_SSL_CAFILE") or None,
            topic_readings=_topic(env, "SENSORLIB_TOPIC_READINGS", "sensor-readings"),
            topic_alerts=_topic(env, "SENSORLIB_TOPIC_ALERTS", "sensor-alerts"),
            topic_dlq=_topic(env, "SENSORLIB_TOPIC_DLQ", "sensor-readings-dlq"),
            topic_rules=_topic(env, "SENSORLIB_TOPIC_RULES", "sensor-rules"),
            topic_faults=_topic(env, "SENSORLIB_TOPIC_FAULTS", "sensor-faults"),
            partitions=env_int(env, "SENSORLIB_PARTITIONS", 3),
            replication_factor=env_int(env, "SENSORLIB_REPLICATION_FACTOR", 1),
            retention_hours=env_int(env, "SENSORLIB_RETENTION_HOURS", 168),
            processor_group=_str(env, "SENSORLIB_PROCESSOR_GROUP", "python-consumer-group"),
            archiver_group=_str(env, "SENSORLIB_ARCHIVER_GROUP", "archiver-group"),
            dashboard_readings_group=_str(
                env, "SENSORLIB_DASHBOARD_READINGS_GROUP", "dashboard-readings-group"
            ),
            dashboard_alerts_group=_str(env, "SENSORLIB_DASHBOARD_ALERTS_GROUP", "dashboard-group"),
            host=_str(env, "SENSORLIB_HOST", "127.0.0.1"),
            producer_port=env_int(env, "SENSORLIB_PRODUCER_PORT", 8081),
            processor_port=env_int(env, "SENSORLIB_PROCESSOR_PORT", 8082),
            dashboard_port=env_int(env, "SENSORLIB_DASHBOARD_PORT", 5006),
            archiver_port=env_int(env, "SENSORLIB_ARCHIVER_PORT", 8083),
            jupyter_port=env_int(env, "SENSORLIB_JUPYTER_PORT", 8888),
            temperature_threshold=_float(env, "SENSORLIB_TEMP_THRESHOLD", 35.0),
            humidity_threshold=_float(env, "SENSORLIB_HUMIDITY_THRESHOLD", 90.0),
            window_seconds=_float(env, "SENSORLIB_WINDOW_SECONDS", 300.0),
            interval=_float(env, "SENSORLIB_INTERVAL", 2.0),
            seed=int(seed) if seed.lstrip("-").isdigit() else None,
            cache_dir=_path(env, "SENSORLIB_CACHE", home / ".cache" / "sensorlib"),
            data_dir=_path(env, "SENSORLIB_DATA", home / ".local" / "share" / "sensorlib"),
            kafka_home=_path(env, "KAFKA_HOME", Path()) if env.get("KAFKA_HOME") else None,
            kafka_port=kafka_port,
            controller_port=env_int(env, "SENSORLIB_CONTROLLER_PORT", 9093),
            kafka_heap=_str(env, "SENSORLIB_KAFKA_HEAP", "512m"),
            max_past=env_duration(env, "SENSORLIB_MAX_PAST", timedelta(days=365)),
            max_future=env_duration(env, "SENSORLIB_MAX_FUTURE", timedelta(minutes=5)),
            allowed_hosts=_list(env, "SENSORLIB_ALLOWED_HOSTS"),
            cors_origins=_list(env, "SENSORLIB_CORS_ORIGINS"),
            metrics_urls=_metrics_urls(env, "SENSORLIB_METRICS_URLS"),
            warehouse_dir=(_path(env, "SENSORLIB_WAREHOUSE", Path())
                           if env.get("SENSORLIB_WAREHOUSE") else None),
            notebooks_dir=(Path(env["SENSORLIB_NOTEBOOKS"].strip()).expanduser()
                           if (env.get("SENSORLIB_NOTEBOOKS") or "").strip() else None),
            body_timeout=_float(env, "SENSORLIB_BODY_TIMEOUT", 10.0),
            header_timeout=_float(env, "SENSORLIB_HEADER_TIMEOUT", 5.0),
            max_header_bytes=env_int(env, "SENSORLIB_MAX_HEADER_BYTES", 16384),
            api_token=(env.get("SENSORLIB_API_TOKEN") or "").strip() or None,
            insecure=_str(env, "SENSORLIB_INSECURE", "0").lower() in ("1", "true", "yes"),
            stale_after=(env_duration(env, "SENSORLIB_STALE_AFTER", timedelta(0))
                         if (env.get("SENSORLIB_STALE_AFTER") or "").strip() else None),
            max_sensors=env_int(env, "SENSORLIB_MAX_SENSORS", 10_000),
            max_sessions=env_int(env, "SENSORLIB_MAX_SESSIONS", 50),
            dashboard_allocator=_str(env, "SENSORLIB_DASHBOARD_ALLOCATOR", "auto").lower(),
            notification_group=_str(env, "SENSORLIB_NOTIFICATION_GROUP", "notification-group"),
            notifier_port=env_int(env, "SENSORLIB_NOTIFIER_PORT", 8084),
            alertmanager_port=env_int(env, "SENSORLIB_ALERTMANAGER_PORT", 9095),
            alertmanager_url=(env.get("SENSORLIB_ALERTMANAGER_URL") or "").strip().rstrip("/")
            or None,
            smtp_host=(env.get("SENSORLIB_SMTP_HOST") or "").strip() or None,
            smtp_port=env_int(env, "SENSORLIB_SMTP_PORT", 25),
            smtp_from=_str(env, "SENSORLIB_SMTP_FROM", "sensorlib@localhost"),
            smtp_to=_list(env, "SENSORLIB_SMTP_TO"),
            smtp_user=(env.get("SENSORLIB_SMTP_USER") or "").strip() or None,
            smtp_password=env.get("SENSORLIB_SMTP_PASSWORD") or None,
            smtp_tls=_str(env, "SENSORLIB_SMTP_TLS", "0").lower() in ("1", "true", "yes"),
            webhook_urls=_list(env, "SENSORLIB_WEBHOOK_URLS"),
            slack_webhook_url=(env.get("SENSORLIB_SLACK_WEBHOOK_URL") or "").strip() or None,
            tz=_str(env, "SENSORLIB_TZ", "UTC"),
            log_format=_str(env, "SENSORLIB_LOG_FORMAT", "text").lower(),
            zipkin_port=env_int(env, "SENSORLIB_ZIPKIN_PORT", 9411),
            prometheus_port=env_int(env, "SENSORLIB_PROMETHEUS_PORT", 9090),
            catalog_uri=(env.get("SENSORLIB_CATALOG_URI") or "").strip() or None,
            db_port=env_int(env, "SENSORLIB_DB_PORT", 5433),
            ingest=IngestSettings.from_env(env),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`ConfigError` with the variable to fix when a value is unusable."""
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"SENSORLIB_LOG_FORMAT={self.log_format!r}: use text or json")
        for name, port in (("ZIPKIN", self.zipkin_port), ("PROMETHEUS", self.prometheus_port)):
            if not 0 < port < 65536:
                raise ConfigError(f"SENSORLIB_{name}_PORT={port} is not a TCP port (1-65535)")
        if self.partitions < 1:
            raise ConfigError("SENSORLIB_PARTITIONS must be at least 1")
        if self.window_seconds <= 0:
            raise ConfigError("SENSORLIB_WINDOW_SECONDS must be positive")
        if self.interval <= 0:
            raise ConfigError("SENSORLIB_INTERVAL must be positive")
        for name in ("producer_port", "processor_port", "dashboard_port", "jupyter_port",
                     "archiver_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"SENSORLIB_{name.upper()} must be a TCP port, got {port}")
        if self.catalog_uri is not None:
            check_catalog_uri(self.catalog_uri)
        if not 0 < self.db_port < 65536:
            raise ConfigError(f"SENSORLIB_DB_PORT={self.db_port} is not a TCP port (1-65535)")
        for name in ("notifier_port", "alertmanager_port", "smtp_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"SENSORLIB_{name.upper()} must be a TCP port, got {port}")
        if self.alertmanager_url and not self.alertmanager_url.startswith(("http://", "https://")):
            raise ConfigError("SENSORLIB_ALERTMANAGER_URL must start with http:// or https://, "
                              f"got {self.alertmanager_url!r}")
        if self.stale_after is not None and self.stale_after <= timedelta(0):
            raise ConfigError("SENSORLIB_STALE_AFTER must be positive")
        if self.max_sensors < 1:
            raise ConfigError("SENSORLIB_MAX_SENSORS must be at least 1")
        if self.max_sessions < 1:
            raise ConfigError("SENSORLIB_MAX_SESSIONS must be at least 1")
        if self.dashboard_allocator not in DASHBOARD_ALLOCATORS:
            raise ConfigError("SENSORLIB_DASHBOARD_ALLOCATOR must be one of "
                              f"{', '.join(DASHBOARD_ALLOCATORS)}, got {self.dashboard_allocator!r}")
        if self.body_timeout <= 0:
            raise ConfigError("SENSORLIB_BODY_TIMEOUT must be positive")
        if self.header_timeout <= 0:
            raise ConfigError("SENSORLIB_HEADER_TIMEOUT must be positive")
        if not 1024 <= self.max_header_bytes <= 1 << 20:
            raise ConfigError("SENSORLIB_MAX_HEADER_BYTES must be between 1024 and 1048576")
        if self.max_past <= timedelta(0) or self.max_future < timedelta(0):
            raise ConfigError("SENSORLIB_MAX_PAST must be positive and SENSORLIB_MAX_FUTURE not negative")
        if self.sasl_mechanism and not self.sasl_username:
            raise ConfigError("KAFKA_SASL_MECHANISM is set but KAFKA_SASL_USERNAME is not")
        _check_tz(self.tz)

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (settings are immutable)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def warehouse(self) -> Path:
        """Folder of the history archive (Iceberg catalog and data files)."""
        return self.warehouse_dir or self.data_dir / "warehouse"

    def hosts(self) -> tuple[str, ...]:
        """Host names (without port) the HTTP servers answer to (DNS-rebinding guard): the
        loopback names, the bind address and ``SENSORLIB_ALLOWED_HOSTS``. Loopback names
        are always allowed: a rebinding page cannot make a browser send them."""
        own = {"localhost", "127.0.0.1", "::1", "[::1]", *self.allowed_hosts}
        if self.host not in ("0.0.0.0", "::", ""):
            own.add(self.host)
        return tuple(sorted(own))

    @property
    def alertmanager(self) -> str:
        """Base URL of the Alertmanager the notifier posts to: ``SENSORLIB_ALERTMANAGER_URL``,
        else the local one ``sensorlib up --notify`` starts."""
        return self.alertmanager_url or f"http://127.0.0.1:{self.alertmanager_port}"

    def service_url(self, service: str) -> str:
        """Base URL of one of sensorlib's own services (``producer``, ``processor``,
        ``archiver``, ``notifier``, ``dashboard``) as a client on this machine reaches it:
        ``SENSORLIB_HOST`` (a wildcard bind address is reached on 127.0.0.1) and its port.

        >>> Settings(host="0.0.0.0").service_url("processor")
        'http://127.0.0.1:8082'
        """
        ports = {"producer": self.producer_port, "processor": self.processor_port,
                 "archiver": self.archiver_port, "notifier": self.notifier_port,
                 "dashboard": self.dashboard_port}
        if service not in ports:
            raise ConfigError(f"no service {service!r}; one of {', '.join(ports)}")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{ports[service]}"

    @property
    def loopback_only(self) -> bool:
        """Whether the services are bound to loopback only (:func:`is_loopback`)."""
        return is_loopback(self.host)

    @property
    def topics(self) -> tuple[str, str, str]:
        """The three topics of the data flow: readings, alerts, dead letters (the dashboard's
        Kafka tab lists these, then ``topic_rules`` and ``topic_faults``)."""
        return (self.topic_readings, self.topic_alerts, self.topic_dlq)

    def to_env(self) -> dict[str, str]:
        """Environment variables that make a child process's ``from_env`` equal this.

        Used to start services and notebooks as subprocesses on the same broker and
        topics (``sensorlib up``, papermill runs, tests).
        """
        env = {
            "SENSORLIB_TOPIC_READINGS": self.topic_readings,
            "SENSORLIB_TOPIC_ALERTS": self.topic_alerts,
            "SENSORLIB_TOPIC_DLQ": self.topic_dlq,
            "SENSORLIB_TOPIC_RULES": self.topic_rules,
            "SENSORLIB_TOPIC_FAULTS": self.topic_faults,
            "SENSORLIB_PARTITIONS": str(self.partitions),
            "SENSORLIB_REPLICATION_FACTOR": str(self.replication_factor),
            "SENSORLIB_RETENTION_HOURS": str(self.retention_hours),
            "SENSORLIB_PROCESSOR_GROUP": self.processor_group,
            "SENSORLIB_ARCHIVER_GROUP": self.archiver_group,
            "SENSORLIB_DASHBOARD_READINGS_GROUP": self.dashboard_readings_group,
            "SENSORLIB_DASHBOARD_ALERTS_GROUP": self.dashboard_alerts_group,
            "SENSORLIB_HOST": self.host,
            "SENSORLIB_PRODUCER_PORT": str(self.producer_port),
            "SENSORLIB_PROCESSOR_PORT": str(self.processor_port),
            "SENSORLIB_DASHBOARD_PORT": str(self.dashboard_port),
            "SENSORLIB_ARCHIVER_PORT": str(self.archiver_port),
            "SENSORLIB_JUPYTER_PORT": str(self.jupyter_port),
            "SENSORLIB_TEMP_THRESHOLD": repr(self.temperature_threshold),
            "SENSORLIB_HUMIDITY_THRESHOLD": repr(self.humidity_threshold),
            "SENSORLIB_WINDOW_SECONDS": repr(self.window_seconds),
            "SENSORLIB_INTERVAL": repr(self.interval),
            "SENSORLIB_CACHE": str(self.cache_dir),
            "SENSORLIB_DATA": str(self.data_dir),
            "SENSORLIB_KAFKA_PORT": str(self.kafka_port),
            "SENSORLIB_CONTROLLER_PORT": str(self.controller_port),
            "SENSORLIB_KAFKA_HEAP": self.kafka_heap,
            "KAFKA_SECURITY_PROTOCOL": self.security_protocol,
            "SENSORLIB_MAX_PAST": f"{self.max_past.total_seconds()!r}s",
            "SENSORLIB_MAX_FUTURE": f"{self.max_future.total_seconds()!r}s",
            "SENSORLIB_BODY_TIMEOUT": repr(self.body_timeout),
            "SENSORLIB_HEADER_TIMEOUT": repr(self.header_timeout),
            "SENSORLIB_MAX_HEADER_BYTES": str(self.max_header_bytes),
        }
        if self.insecure:
            env["SENSORLIB_INSECURE"] = "1"
        if self.stale_after is not None:
            env["SENSORLIB_STALE_AFTER"] = f"{self.stale_after.total_seconds()!r}s"
        env["SENSORLIB_MAX_SENSORS"] = str(self.max_sensors)
        env["SENSORLIB_MAX_SESSIONS"] = str(self.max_sessions)
        env["SENSORLIB_DASHBOARD_ALLOCATOR"] = self.dashboard_allocator
        env["SENSORLIB_NOTIFICATION_GROUP"] = self.notification_group
        env["SENSORLIB_NOTIFIER_PORT"] = str(self.notifier_port)
        env["SENSORLIB_ALERTMANAGER_PORT"] = str(self.alertmanager_port)
        if self.alertmanager_url:
            env["SENSORLIB_ALERTMANAGER_URL"] = self.alertmanager_url
        if self.smtp_host:
            env.update(SENSORLIB_SMTP_HOST=self.smtp_host, SENSORLIB_SMTP_PORT=str(self.smtp_port),
                       SENSORLIB_SMTP_FROM=self.smtp_from, SENSORLIB_SMTP_TO=",".join(self.smtp_to),
                       SENSORLIB_SMTP_TLS="1" if self.smtp_tls else "0")
        if self.smtp_user:
            env["SENSORLIB_SMTP_USER"] = self.smtp_user
        if self.smtp_password:
            env["SENSORLIB_SMTP_PASSWORD"] = self.smtp_password
        if self.webhook_urls:
            env["SENSORLIB_WEBHOOK_URLS"] = ",".join(self.webhook_urls)
        if self.slack_webhook_url:
            env["SENSORLIB_SLACK_WEBHOOK_URL"] = self.slack_webhook_url
        if self.tz != "UTC":
            env["SENSORLIB_TZ"] = self.tz
        if self.log_format != "text":
            env["SENSORLIB_LOG_FORMAT"] = self.log_format
        env["SENSORLIB_ZIPKIN_PORT"] = str(self.zipkin_port)
        env["SENSORLIB_PROMETHEUS_PORT"] = str(self.prometheus_port)
        env["SENSORLIB_DB_PORT"] = str(self.db_port)
        if self.catalog_uri:
            env["SENSORLIB_CATALOG_URI"] = self.catalog_uri
        env.update(self.ingest.to_env())
        if self.allowed_hosts:
            env["SENSORLIB_ALLOWED_HOSTS"] = ",".join(self.allowed_hosts)
        if self.cors_origins:
            env["SENSORLIB_CORS_ORIGINS"] = ",".join(self.cors_origins)
        if self.metrics_urls:
            env["SENSORLIB_METRICS_URLS"] = ",".join(f"{k}={v}" for k, v in self.metrics_urls)
        if self.warehouse_dir is not None:
            env["SENSORLIB_WAREHOUSE"] = str(self.warehouse_dir)
        if self.notebooks_dir is not None:
            env["SENSORLIB_NOTEBOOKS"] = str(self.notebooks_dir)
        if self.external:
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap_servers
        if self.seed is not None:
            env["SENSORLIB_SEED"] = str(self.seed)
        if self.kafka_home is not None:
            env["KAFKA_HOME"] = str(self.kafka_home)
        for name, value in (("KAFKA_SASL_MECHANISM", self.sasl_mechanism),
                            ("KAFKA_SASL_USERNAME", self.sasl_username),
                            ("KAFKA_SASL_PASSWORD", self.sasl_password),
                            ("SENSORLIB_API_TOKEN", self.api_token),
                            ("KAFKA_SSL_CAFILE", self.ssl_cafile)):
            if value:
                env[name] = value
        return env

    def describe(self) -> dict[str, object]:
        """A loggable summary: never contains the SASL password or the API token."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for secret in ("sasl_password", "api_token", "smtp_password", "slack_webhook_url"):
            if out.get(secret):
                out[secret] = "***"
        if self.catalog_uri:
            out["catalog_uri"] = mask_uri(self.catalog_uri)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}
