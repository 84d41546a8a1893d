"""Durations (issue 24, item 3): one set of units wherever a duration is typed — settings such
as SENSORLIB_MAX_PAST and the CLI's/notebooks' "-3y" / "2 weeks ago" — with years (365 days)
and weeks, so the README's `SENSORLIB_MAX_PAST=3y` works."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from sensorlib.config import Settings, env_duration, parse_duration
from sensorlib.errors import ConfigError, ReplayError
from sensorlib.model.acceptance import EventTimeWindow
from sensorlib.model.events import parse_reading
from sensorlib.replay.periods import to_utc

DAY = timedelta(days=1)


@pytest.mark.parametrize(("text", "expected"), [
    ("3y", 3 * 365 * DAY), ("1y", 365 * DAY), ("0.5y", 182.5 * DAY), ("3Y", 3 * 365 * DAY),
    ("2w", 14 * DAY), ("1 week", 7 * DAY), ("2 weeks", 14 * DAY), ("3 years", 3 * 365 * DAY),
    ("1 yr", 365 * DAY), ("365d", 365 * DAY), ("2 days", 2 * DAY), ("12h", timedelta(hours=12)),
    ("5m", timedelta(minutes=5)), ("90s", timedelta(seconds=90)), ("90", timedelta(seconds=90)),
    (" 1.5h ", timedelta(hours=1, minutes=30)), ("100y", 100 * 365 * DAY),
])
def test_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "y", "3x", "3 fortnights", "abc", "nan", "inf", "1h30m"])
def test_not_a_duration(text: str) -> None:
    with pytest.raises(ConfigError, match=r"like 90s, 5m, 12h, 365d, 2w or 3y"):
        parse_duration(text, "SENSORLIB_MAX_PAST")


@pytest.mark.parametrize("text", ["-1h", "101y"])
def test_out_of_range(text: str) -> None:
    with pytest.raises(ConfigError, match="between 0 and 100 years"):
        parse_duration(text)


def test_the_readmes_max_past_setting() -> None:
    """`SENSORLIB_MAX_PAST=5y` (README) is five years, and then the reference sample's
    literal 2024-01-01 timestamp is accepted where the default year refuses it."""
    assert env_duration({"SENSORLIB_MAX_PAST": "3y"}, "SENSORLIB_MAX_PAST", DAY) == 1095 * DAY
    settings = Settings.from_env({"SENSORLIB_MAX_PAST": "5y"})
    assert settings.max_past == 1825 * DAY
    sample = {"sensorId": "sensor-test", "temperature": 42.5, "humidity": 95,
              "location": "Test Area", "timestamp": "2024-01-01T12:00:00Z"}
    now = datetime(2026, 6, 1, tzinfo=UTC)
    parse_reading(sample, now=now, accept=EventTimeWindow(settings.max_past,
                                                          settings.max_future))
    default = Settings.from_env({})
    with pytest.raises(ValueError, match="timestamp"):
        parse_reading(sample, now=now, accept=EventTimeWindow(default.max_past,
                                                              default.max_future))


def test_times_before_now_take_the_same_units() -> None:
    """What --start/--end, replay and reports take: "-3y", "2 weeks ago", and pandas' forms."""
    now = pd.Timestamp("2026-06-01T00:00:00Z")
    assert to_utc("-3y", now=now) == now - pd.Timedelta(days=1095)
    assert to_utc("1 year ago", now=now) == now - pd.Timedelta(days=365)
    assert to_utc("-2w", now=now) == now - pd.Timedelta(days=14)
    assert to_utc("2 weeks ago", now=now) == now - pd.Timedelta(days=14)
    assert to_utc("-1h30m", now=now) == now - pd.Timedelta(minutes=90)  # pandas' form
    with pytest.raises(ReplayError, match="not a duration"):
        to_utc("-3 fortnights", now=now)
