"""Time periods (sensorlib.replay.periods): what users type for "when", as UTC timestamps."""

from __future__ import annotations

import pandas as pd
import pytest

from sensorlib.errors import ReplayError
from sensorlib.replay import reader as replay
from sensorlib.replay.periods import resolve_period, to_utc


def test_to_utc() -> None:
    now = pd.Timestamp("2026-01-02T12:00:00Z")
    assert to_utc("2026-01-01") == pd.Timestamp("2026-01-01T00:00:00Z")
    assert to_utc("2026-01-01T12:00:00+02:00") == pd.Timestamp("2026-01-01T10:00:00Z")
    assert to_utc("yesterday", now=now) == pd.Timestamp("2026-01-01T00:00:00Z")
    assert to_utc("today", now=now) == pd.Timestamp("2026-01-02T00:00:00Z")
    assert to_utc("90min ago", now=now) == pd.Timestamp("2026-01-02T10:30:00Z")
    assert to_utc("-2 days", now=now) == pd.Timestamp("2025-12-31T12:00:00Z")
    with pytest.raises(ReplayError):
        to_utc("the day after tomorrow")
    with pytest.raises(ReplayError, match="not after"):
        resolve_period("2026-01-02", "2026-01-01")


def test_a_bare_duration_is_not_a_time() -> None:
    with pytest.raises(ReplayError, match="is a duration, not a time"):
        to_utc("1h")


def test_open_ends_stay_open() -> None:
    t0, t1 = resolve_period(None, "2026-01-01")
    assert t0 is None and t1 == pd.Timestamp("2026-01-01T00:00:00Z")
    assert resolve_period(None, None) == (None, None)


def test_replay_reexports_the_period_functions() -> None:
    assert replay.to_utc is to_utc
    assert replay.resolve_period is resolve_period


@pytest.mark.parametrize("number", [1764000000, 1764000000.5, 0, True])
def test_a_number_is_refused_not_read_as_nanoseconds(number: object) -> None:
    # pandas reads 1764000000 as 1.764 s after 1970 (issue 25).
    with pytest.raises(ReplayError, match="is a number, not a time"):
        to_utc(number)  # type: ignore[arg-type]
