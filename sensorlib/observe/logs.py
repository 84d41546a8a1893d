"""Logs: text, or one JSON object per line (``SENSORLIB_LOG_FORMAT=json``) with the trace and
span ids inside a span; registered secrets blanked out; kafka-python's retried errors quieted."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace

from sensorlib.errors import SensorlibError

# --------------------------------------------------------------------------- logs

#: Standard LogRecord attributes (anything else passed in ``extra`` is logged as a field).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {
    "message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, trace/span ids.

    ``secrets`` (and any registered with kafka_io's client error log) are replaced by
    ``***`` wherever they appear in the line.
    """

    def __init__(self, service: str = "sensorlib", secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.service = service
        self.secrets = {s for s in secrets if s}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            out["trace_id"] = format(span.trace_id, "032x")
            out["span_id"] = format(span.span_id, "016x")
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool)) else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        for key, value in out.items():
            if isinstance(value, str):
                out[key] = self.redact(value)
        return json.dumps(out, ensure_ascii=False, default=str)

    def redact(self, text: str) -> str:
        """``text`` without any secret, as it is or as ``repr`` shows it."""
        from sensorlib.kafka.clients import client_errors

        for secret in self.secrets:
            text = text.replace(secret, "***")
            shown = repr(secret)[1:-1]
            if shown != secret:
                text = text.replace(shown, "***")
        return client_errors.redact(text)


def _iso_ms(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + \
        f".{int(created * 1000) % 1000:03d}Z"


#: Seconds after the logging set-up that count as start-up (:class:`KafkaNoise`).
START_UP_SECONDS = 120.0


class KafkaNoise(logging.Filter):
    """Demotes kafka-python's known-benign warnings and errors to DEBUG, so that what is
    logged as WARNING or ERROR needs someone's attention.

    - A transient, retriable error the client retries by itself: a record of a ``kafka.*``
      logger whose arguments carry a retriable :class:`kafka.errors.KafkaError`
      (``NotCoordinatorError`` while the group coordinator loads, ``Metadata refresh:
      failed Cancelled`` when a request is superseded, ``NodeNotReadyError``) or that says
      it is ``retrying`` (``NotEnoughReplicasError … Unable to verify the partition has been
      added to the transaction`` while a new broker's transaction state loads).
    - During start-up (the first :data:`START_UP_SECONDS`): its event loop's "Task … is
      blocking the event loop" (imports and first connections on a busy machine).

    Non-retriable errors (authorisation, SASL, unknown topic, fatal producer errors) and
    sensorlib's own records pass unchanged. A demoted record is shown only when its logger
    is enabled for DEBUG.
    """

    _START_UP = ("blocking the event loop", "left RUNNING after step")

    def __init__(self, started: float | None = None) -> None:
        super().__init__()
        self.started = time.monotonic() if started is None else started

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not record.name.startswith("kafka"):
            return True
        if not self.benign(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    def benign(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` (of a kafka-python logger) is a benign, transient one."""
        from kafka.errors import KafkaError

        args = record.args if isinstance(record.args, tuple) else (record.args,)
        if record.exc_info and record.exc_info[1] is not None:
            args = (*args, record.exc_info[1])
        for arg in args:
            if isinstance(arg, KafkaError) or (isinstance(arg, type)
                                               and issubclass(arg, KafkaError)):
                return bool(getattr(arg, "retriable", False))
        message = str(record.msg)
        if "retrying" in message and record.levelno == logging.WARNING:
            return True
        return (time.monotonic() - self.started < START_UP_SECONDS
                and any(part in message for part in self._START_UP))


def quiet_kafka_noise(*handlers: logging.Handler) -> None:
    """Put a :class:`KafkaNoise` on ``handlers`` and on Python's last-resort handler (what
    prints warnings in a process that set no logging up: the CLI, the archiver)."""
    for handler in (*handlers, logging.lastResort):
        if handler is not None and not any(isinstance(f, KafkaNoise) for f in handler.filters):
            handler.addFilter(KafkaNoise())


def configure_logging(service: str, *, text_format: str, secrets: Iterable[str | None] = (),
                      log_format: str = "text") -> None:
    """Set up the root logger: ``log_format`` ``json`` (``Settings.log_format``, from
    ``SENSORLIB_LOG_FORMAT``) gives JSON lines, ``text`` lines in ``text_format``."""
    kind = log_format.strip().lower() or "text"
    if kind not in ("text", "json"):
        raise SensorlibError(f"SENSORLIB_LOG_FORMAT={kind!r}: use text or json")
    handler = logging.StreamHandler()
    if kind == "json":
        handler.setFormatter(JsonFormatter(service, secrets))
    else:
        handler.setFormatter(logging.Formatter(text_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    quiet_kafka_noise(handler)  # kafka-python's retried, transient errors are not ERRORs
