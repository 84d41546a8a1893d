"""The threshold rule: a reading above a temperature or humidity limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sensorlib.model.events import status_of
from sensorlib.rules import EVERY, Finding, Knob, Moments, Rule, Run, register

if TYPE_CHECKING:
    import pandas as pd

    from sensorlib.engine.detect import RuleConfig
    from sensorlib.model.events import Reading

__all__ = ["Threshold", "ThresholdSettings"]

_HOT, _WET = "High temperature:", "High humidity:"


@dataclass(frozen=True)
class ThresholdSettings:
    """Attributes:
    temperature_threshold: fires when a reading is strictly above this (°C).
    humidity_threshold: ... or strictly above this (%).
    """

    temperature_threshold: float = 35.0
    humidity_threshold: float = 90.0


@register
class Threshold(Rule[None]):
    """Fires when a reading is strictly above either limit; late readings too (they are real
    measurements). Severity: the dashboard's status of the reading
    (:func:`~sensorlib.model.events.status_of`: ``critical`` above 35 °C or 90 %), else
    ``warning``: one definition of critical everywhere."""

    name = "threshold"
    Settings = ThresholdSettings
    sees = EVERY
    order = 10
    quantities = frozenset({"temperature", "humidity"})
    examples = (ThresholdSettings(25.0, 60.0),)
    knobs: ClassVar[Mapping[str, Knob]] = {
        "temperature threshold": Knob("temperature_threshold", "threshold",
                                      "temperature threshold", "°C"),
        "humidity threshold": Knob("humidity_threshold", "threshold", "humidity threshold", "%"),
    }

    def __init__(self, settings: ThresholdSettings | None = None) -> None:
        super().__init__(settings)
        self._hot = self.settings.temperature_threshold
        self._wet = self.settings.humidity_threshold

    @classmethod
    def settings_from(cls, config: RuleConfig) -> ThresholdSettings:
        """From RuleConfig's ``temperature_threshold`` and ``humidity_threshold``."""
        return ThresholdSettings(config.temperature_threshold, config.humidity_threshold)

    @classmethod
    def quantities_of(cls, alerts: pd.DataFrame) -> pd.DataFrame:
        """The value(s) the alert names (its reason lists the limits crossed)."""
        import pandas as pd

        reason = alerts["reason"].astype("str")
        return pd.DataFrame({
            "temperature": reason.str.contains(_HOT, regex=False).to_numpy(),
            "humidity": reason.str.contains(_WET, regex=False).to_numpy()}, index=alerts.index)

    def update(self, state: None, reading: Reading, ts: int,
               moments: Moments | None) -> Finding | None:
        """The alert of one reading above a limit."""
        t, h = reading.temperature, reading.humidity
        if t > self._hot or h > self._wet:
            return self._finding(t, h)
        return None

    def update_many(self, state: None, run: Run) -> tuple[list[tuple[int, Finding]], None]:
        """The same, over a run's arrays (the same IEEE comparisons on the same values)."""
        temp, hum = run.temperature, run.humidity
        hits = np.flatnonzero((temp > self._hot) | (hum > self._wet)).tolist()
        return [(j, self._finding(float(temp[j]), float(hum[j]))) for j in hits], None

    def _finding(self, t: float, h: float) -> Finding:
        hot, wet = t > self._hot, h > self._wet
        parts = []
        if hot:
            parts.append(f"{_HOT} {t:.1f}°C")
        if wet:
            parts.append(f"{_WET} {h:.1f}%")
        critical = status_of(t, h) == "critical"  # as the cards show
        quantity = "+".join(q for q, on in (("temperature", hot), ("humidity", wet)) if on)
        return Finding("critical" if critical else "warning", ", ".join(parts), quantity)
