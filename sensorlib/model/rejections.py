"""Why a record was refused: :class:`FieldError` (one field, one reason in words a person can
act on), :class:`InvalidReading` (all of them), the Unicode rules for ids and text, and the
translation of pydantic's errors into those reasons."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import (
    ValidationError,
)

from sensorlib.errors import InvalidInput
from sensorlib.model.limits import HUMIDITY_RANGE, MAX_LOCATION, MAX_SENSOR_ID, TEMPERATURE_RANGE

__all__ = ["FieldError", "InvalidReading", "errors_of", "surrogate_errors", "text_problem"]

# -- reasons -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a reading was rejected; ``field`` is the camelCase wire name."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class InvalidReading(InvalidInput):
    """A reading failed validation; ``errors`` says which fields and why.

    >>> try:
    ...     parse_reading(b'{"sensorId": "s", "temperature": 20, "humidity": 120,'
    ...                   b' "timestamp": "2026-01-01T12:00:00Z"}')
    ... except InvalidReading as exc:
    ...     print(exc)
    humidity: must be between 0 and 100 (got 120.0)
    """

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


_WIRE_NAMES = {
    alias: camel
    for camel in ("sensorId", "temperature", "humidity", "location", "timestamp")
    for alias in (camel, camel[0].upper() + camel[1:])
} | {"sensor_id": "sensorId"}

_RANGES = {"temperature": TEMPERATURE_RANGE, "humidity": HUMIDITY_RANGE}


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (bool, str)) or value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _non_finite(value: float) -> str:
    # Spelled as the JSON literals Python's json module writes and reads.
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _number(value: float) -> str:
    return f"{value:g}"


def _reason(field: str, kind: str, value: Any, message: str) -> str:
    """A readable reason for one pydantic error (only on the rejection path)."""
    if kind == "missing" or value is None:
        return "required"
    if field in _RANGES and kind in ("greater_than_equal", "less_than_equal"):
        low, high = _RANGES[field]
        return f"must be between {_number(low)} and {_number(high)} (got {float(value)!r})"
    if kind == "finite_number":
        return f"must be a finite number (got {_non_finite(value)})"
    if kind == "float_type":
        return f"must be a number, not {_shown(value)}"
    if kind == "string_type":
        return f"must be a string, not {_shown(value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        limit = MAX_SENSOR_ID if field == "sensorId" else MAX_LOCATION
        return f"must be at most {limit} characters (got {len(value)})"
    if kind == "string_pattern_mismatch":
        return text_problem(field, value) or "must not be blank"
    if field == "timestamp":
        if kind == "value_error":
            return message.removeprefix("Value error, ")
        if kind == "datetime_type":
            return ("must be an ISO-8601 date-time such as 2026-01-01T12:00:00Z, "
                    f"not {_shown(value)}")
        return f"not an ISO-8601 timestamp: {_shown(value)}"
    return message


_INVISIBLE = {"Cf": "invisible or bidi control characters", "Zl": "line separators",
              "Zp": "paragraph separators", "Cc": "control characters"}
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def text_problem(field: str, value: str) -> str | None:
    """Why ``value`` may not be the ``sensorId`` (or ``location``), character-wise; None if it may.

    The same rules the model checks with its patterns, for bulk decoders (replay) and for
    reasons: a sensorId has no control, format (invisible, bidi), line or paragraph
    separator characters; a location no control, bidi or separator characters.

    >>> text_problem("sensorId", "a\u200bb"), text_problem("location", "a\u200db")
    ('must not contain invisible or bidi control characters (U+200B)', None)
    """
    for ch in value:
        category = unicodedata.category(ch)
        if category in _INVISIBLE and (field == "sensorId" or category != "Cf" or ch in _BIDI):
            return f"must not contain {_INVISIBLE[category]} (U+{ord(ch):04X})"
    return None


def _errors_of(exc: ValidationError) -> list[FieldError]:
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        if not loc:  # the body itself: not JSON, or not an object
            reason = ("must be a JSON object" if err["type"] == "model_type"
                      else err["msg"].replace("Invalid JSON", "not valid JSON"))
            out.append(FieldError("body", reason))
            continue
        field = _WIRE_NAMES.get(str(loc[0]), str(loc[0]))
        out.append(FieldError(field, _reason(field, err["type"], err.get("input"), err["msg"])))
    return out


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def surrogate_errors(data: Mapping[str, Any]) -> list[FieldError]:
    """Fields holding a lone UTF-16 surrogate escape (``"\\ud800"``), which is no character
    (Python's json module reads it into a string that cannot be written as UTF-8)."""
    return [FieldError(_WIRE_NAMES.get(k, k), "contains a lone UTF-16 surrogate escape "
                       f"(\\u{ord(m.group()):04x}), which is not a Unicode character")
            for k, v in data.items()
            if isinstance(k, str) and isinstance(v, str) and (m := _SURROGATE.search(v))]


errors_of = _errors_of
