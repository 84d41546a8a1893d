"""The stuck rule: a sensor repeating exactly the same values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sensorlib.rules import SEQUENCE, Finding, Knob, Moments, Rule, Run, register

if TYPE_CHECKING:
    from sensorlib.engine.detect import RuleConfig
    from sensorlib.model.events import Reading

__all__ = ["Stuck", "StuckSettings", "StuckState"]


@dataclass(frozen=True)
class StuckSettings:
    """Attributes:
    stuck_readings: fires when this many consecutive readings repeat exactly the same
        temperature and humidity.
    """

    stuck_readings: int = 10


@dataclass(slots=True)
class StuckState:
    """The current run of equal readings: its length and values."""

    run: int
    temperature: float
    humidity: float


@register
class Stuck(Rule[StuckState]):
    """Fires on every reading of a run of at least ``stuck_readings`` equal readings (the
    cooldown thins them out); only in-order readings count."""

    name = "stuck"
    Settings = StuckSettings
    sees = SEQUENCE
    order = 30
    quantities = frozenset({"temperature", "humidity"})
    examples = (StuckSettings(3),)
    knobs: ClassVar[Mapping[str, Knob]] = {"stuck count": Knob("stuck_readings", "stuck", "stuck-sensor run", "readings")}

    def __init__(self, settings: StuckSettings | None = None) -> None:
        super().__init__(settings)
        self._n = self.settings.stuck_readings

    @classmethod
    def settings_from(cls, config: RuleConfig) -> StuckSettings:
        """From RuleConfig's ``stuck_readings``."""
        return StuckSettings(config.stuck_readings)

    def start(self, ts: int, temperature: float, humidity: float) -> StuckState:
        """A run of one."""
        return StuckState(1, temperature, humidity)

    def update(self, state: StuckState, reading: Reading, ts: int,  # type: ignore[override]
               moments: Moments | None) -> Finding | None:
        """Extend or restart the run; an alert once it is long enough."""
        t, h = reading.temperature, reading.humidity
        if t == state.temperature and h == state.humidity:
            state.run += 1
            if state.run >= self._n:
                return _finding(state.run)
            return None
        state.run, state.temperature, state.humidity = 1, t, h
        return None

    def update_many(self, state: StuckState, run: Run  # type: ignore[override]
                    ) -> tuple[list[tuple[int, Finding]], StuckState]:
        """Run lengths from where each equal stretch began (a running maximum)."""
        temp, hum = run.temperature, run.humidity
        k = len(temp)
        prev_t, prev_h = np.empty(k), np.empty(k)
        prev_t[0], prev_h[0] = state.temperature, state.humidity
        prev_t[1:], prev_h[1:] = temp[:-1], hum[:-1]
        same = (temp == prev_t) & (hum == prev_h)
        index = np.arange(k)
        reset = np.maximum.accumulate(np.where(same, -1, index))
        runs = np.where(reset >= 0, index - reset + 1, state.run + index + 1)
        hits = np.flatnonzero(runs >= self._n).tolist()
        after = StuckState(int(runs[-1]), float(temp[-1]), float(hum[-1]))
        return [(j, _finding(int(runs[j]))) for j in hits], after


@lru_cache(maxsize=256)
def _finding(run: int) -> Finding:
    # Cached: a stuck spell finds the same run lengths over and over (10, 11, …), and most
    # of them are held back by the cooldown.
    return Finding("warning", f"Stuck: same values for {run} readings", "temperature+humidity")
