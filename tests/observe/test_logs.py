"""``SENSORLIB_LOG_FORMAT=json`` (issue 17): one JSON object per line, trace and span ids
inside a span, never a secret."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

from sensorlib.config import Settings
from sensorlib.errors import SensorlibError
from sensorlib.observe.logs import JsonFormatter, configure_logging
from tests.support import eventually


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("sensorlib.test", logging.WARNING, __file__, 1, message, args, None)


def test_a_line_inside_a_span_names_its_trace_and_span() -> None:
    formatter = JsonFormatter("producer")
    outside = json.loads(formatter.format(record("plain %s", "line")))
    assert outside["message"] == "plain line" and outside["level"] == "WARNING"
    assert outside["service"] == "producer" and outside["logger"] == "sensorlib.test"
    assert "trace_id" not in outside and "span_id" not in outside
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        inside = json.loads(formatter.format(record("in a span")))
    ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")


def test_secrets_are_blanked_even_json_escaped() -> None:
    secret = 'pa"ss\\word-canary'
    formatter = JsonFormatter("processor", secrets=[secret])
    line = formatter.format(record("connecting with %s and %r", secret, secret))
    assert "canary" not in line
    assert json.loads(line)["message"].count("***") == 2


def test_an_unknown_log_format_is_refused_clearly() -> None:
    with pytest.raises(SensorlibError, match="SENSORLIB_LOG_FORMAT='xml': use text or json"):
        configure_logging("x", text_format="%(message)s", log_format="xml")


@pytest.mark.kafka
def test_a_sasl_failure_logs_json_lines_without_the_password(spawn, topics: Settings) -> None:
    canary = "canary-pw-json-5e1d"
    wrong = topics.replace(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                           sasl_username="sensorlib", sasl_password=canary)
    processor = spawn("processor", wrong, env={"SENSORLIB_LOG_FORMAT": "json"},
                                wait=False)

    def explained() -> bool:
        try:
            body = httpx.get(processor.url + "/health", timeout=5).json()
        except httpx.HTTPError:
            return False
        return bool(body.get("lastError")) and "Sasl" in processor.log_text()
    eventually(explained, timeout=90)
    processor.kill()
    text = processor.log_text()
    assert canary not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message", "service"} <= set(x) for x in lines)
    assert {x["service"] for x in lines} == {"processor"}
    assert any(x["logger"].startswith("uvicorn") for x in lines)  # uvicorn's lines too
    assert any("Sasl" in x["message"] and x["level"] == "ERROR" for x in lines)
    assert not any("color_message" in x for x in lines)  # uvicorn's ANSI copy is dropped
