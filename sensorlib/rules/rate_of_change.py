"""The rate-of-change rule: temperature rising or falling too fast."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sensorlib.errors import ConfigError
from sensorlib.rules import SEQUENCE, Finding, Knob, Moments, Rule, Run, register, span_text

if TYPE_CHECKING:
    from sensorlib.engine.detect import RuleConfig
    from sensorlib.model.events import Reading

__all__ = ["RateOfChange", "RateSettings", "RateState"]

_US_PER_MINUTE = 60_000_000


@dataclass(frozen=True)
class RateSettings:
    """Attributes:
    rate_of_change: °C per minute above which it fires, measured from the sensor's newest
        reading at least ``rate_min_span`` of event time before this one (or its oldest,
        dividing by ``rate_min_span`` then) ...
    rate_min_delta: ... provided the change is at least this many °C: readings a
        millisecond apart never make a "rate" of thousands of degrees per minute, and noise
        at high rates is not a trend.
    rate_min_span: see ``rate_of_change``.
    """

    rate_of_change: float = 10.0
    rate_min_delta: float = 2.0
    rate_min_span: timedelta = timedelta(seconds=10)

    def __post_init__(self) -> None:
        if self.rate_min_span <= timedelta(0):
            raise ConfigError(f"rate_min_span must be positive (got {self.rate_min_span})")


@dataclass(slots=True)
class RateState:
    """(event time µs, temperature) of the sensor's in-order readings from the newest one at
    least ``rate_min_span`` old on: the rate is measured from its head."""

    recent: deque[tuple[int, float]] = field(default_factory=deque)


@register
class RateOfChange(Rule[RateState]):
    """Fires when the temperature changes faster than ``rate_of_change`` °C/min."""

    name = "rate_of_change"
    Settings = RateSettings
    sees = SEQUENCE
    order = 20
    quantities = frozenset({"temperature"})
    examples = (RateSettings(1.0, 0.1, timedelta(seconds=2)),)
    knobs: ClassVar[Mapping[str, Knob]] = {"rate of change": Knob("rate_of_change", "rate_of_change", "rate-of-change limit",
                                    "°C/min")}

    def __init__(self, settings: RateSettings | None = None) -> None:
        super().__init__(settings)
        self._span_us = self.settings.rate_min_span // timedelta(microseconds=1)
        self._delta = self.settings.rate_min_delta
        self._limit = self.settings.rate_of_change

    @classmethod
    def settings_from(cls, config: RuleConfig) -> RateSettings:
        """From RuleConfig's ``rate_of_change``, ``rate_min_delta``, ``rate_min_span``."""
        return RateSettings(config.rate_of_change, config.rate_min_delta, config.rate_min_span)

    def start(self, ts: int, temperature: float, humidity: float) -> RateState:
        """The first reading is the reference."""
        return RateState(deque([(ts, temperature)]))

    def update(self, state: RateState, reading: Reading, ts: int,  # type: ignore[override]
               moments: Moments | None) -> Finding | None:
        """The change since the reference reading, per minute."""
        recent = state.recent
        cutoff = ts - self._span_us
        while len(recent) > 1 and recent[1][0] <= cutoff:
            recent.popleft()
        since, before = recent[0]
        t = reading.temperature
        recent.append((ts, t))
        delta = t - before
        if abs(delta) >= self._delta:
            per_minute = delta * _US_PER_MINUTE / max(ts - since, self._span_us)
            if abs(per_minute) > self._limit:
                return _finding(ts - since, delta, per_minute)
        return None

    def update_many(self, state: RateState, run: Run  # type: ignore[override]
                    ) -> tuple[list[tuple[int, Finding]], RateState]:
        """Each reading's reference found by a binary search over the run and the deque."""
        recent, ts, temp = state.recent, run.ts, run.temperature
        r_ts = np.concatenate((np.fromiter([e[0] for e in recent], np.int64, len(recent)), ts))
        r_t = np.concatenate((np.fromiter([e[1] for e in recent], np.float64, len(recent)),
                              temp))
        head = np.maximum(np.searchsorted(r_ts, ts - self._span_us, side="right") - 1, 0)
        since, before = r_ts[head], r_t[head]
        delta = temp - before
        per_minute = delta * _US_PER_MINUTE / np.maximum(ts - since, self._span_us).astype(
            np.float64)
        hits = np.flatnonzero((np.abs(delta) >= self._delta)
                              & (np.abs(per_minute) > self._limit)).tolist()
        keep = int(head[-1])
        after = RateState(deque(zip(r_ts[keep:].tolist(), r_t[keep:].tolist(), strict=True)))
        return [(j, _finding(int(ts[j] - since[j]), float(delta[j]), float(per_minute[j])))
                for j in hits], after


def _finding(span_us: int, delta: float, per_minute: float) -> Finding:
    return Finding("warning",
                   f"Temperature {'rose' if delta > 0 else 'fell'} {abs(delta):.1f}°C in "
                   f"{span_text(span_us)} ({per_minute:+.1f}°C/min)", "temperature")
