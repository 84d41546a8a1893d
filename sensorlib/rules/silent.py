"""The silent rule: a sensor that stopped sending, and storms of them folded into one alert.

It judges no reading: it fires as event time passes (``sees = TICK``). Its deadlines live in
:class:`sensorlib.engine.detect.Detector`, which shares them with the eviction of silent sensors;
this module holds its settings and what its alerts say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sensorlib.errors import ConfigError
from sensorlib.rules import TICK, Finding, Rule, Run, register, span_text

if TYPE_CHECKING:
    from sensorlib.engine.detect import RuleConfig

__all__ = ["Silent", "SilentSettings"]


@dataclass(frozen=True)
class SilentSettings:
    """Attributes:
    silent_after: fires when a sensor has sent nothing for longer than this (event time);
        a sensor is watched from its second reading on.
    silent_storm: at most this many sensors get a silent alert of their own per
        ``silent_storm_slot`` of event time (counted by when their silence fell due, first
        due first, then by sensor id); the others of that slot are folded into one
        ``silent`` alert for the fleet, raised at the slot's end. None: never fold.
    silent_storm_slot: the slots of ``silent_storm``, counted from the Unix epoch.
    """

    silent_after: timedelta = timedelta(seconds=30)
    silent_storm: int | None = 20
    silent_storm_slot: timedelta = timedelta(seconds=10)

    def __post_init__(self) -> None:
        if self.silent_storm_slot < timedelta(microseconds=1):
            raise ConfigError(f"silent_storm_slot must be positive (got {self.silent_storm_slot})")
        if self.silent_storm is not None and self.silent_storm < 0:
            raise ConfigError(f"silent_storm must be >= 0 or None (got {self.silent_storm})")


@register
class Silent(Rule[None]):
    """A sensor silent for longer than ``silent_after``: one alert per silence."""

    name = "silent"
    Settings = SilentSettings
    sees = TICK
    order = 50

    @classmethod
    def settings_from(cls, config: RuleConfig) -> SilentSettings:
        """From RuleConfig's ``silent_after``, ``silent_storm``, ``silent_storm_slot``."""
        return SilentSettings(config.silent_after, config.silent_storm, config.silent_storm_slot)

    def update(self, state: None, reading: object, ts: int, moments: object) -> None:
        """Readings raise no silent alert."""
        return

    def update_many(self, state: None, run: Run) -> tuple[list[tuple[int, Finding]], None]:
        """Readings raise no silent alert."""
        return [], None

    def finding(self, silent_us: int) -> Finding:
        """One sensor's alert, ``silent_us`` after its last reading."""
        return Finding("warning", f"Silent: no reading for {silent_us / 1e6:.0f}s", "")

    def fleet_finding(self, folded: int, named: list[str], start: datetime) -> Finding:
        """The fleet alert of a slot (from ``start``) whose ``folded`` silences beyond
        ``silent_storm`` were held; ``named``: the first few sensors. Nothing in it depends
        on when the tick came (the same text in a replay)."""
        s = self.settings
        more = folded - len(named)
        shown = ", ".join(named) + (f" and {more:,} more" if more else "")
        slot_us = s.silent_storm_slot // timedelta(microseconds=1)
        silent_us = s.silent_after // timedelta(microseconds=1)
        return Finding("critical",
                       f"Silent fleet: {folded:,} more sensors fell silent (no reading for "
                       f"over {span_text(silent_us)}) in the {span_text(slot_us)} from "
                       f"{start:%Y-%m-%d %H:%M:%S} UTC, after {s.silent_storm} alerted one by "
                       f"one: {shown}", "")
