"""The outlier rule: a value far from the mean of the sensor's own window."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sensorlib.rules import WINDOW, Finding, Knob, Moments, Rule, Run, register

if TYPE_CHECKING:
    import pandas as pd

    from sensorlib.engine.detect import RuleConfig
    from sensorlib.model.events import Reading

__all__ = ["Z_MARGIN", "Outlier", "OutlierSettings"]

#: Relative margin on the limit and between the two scores. Squared z-scores come from
#: running window sums whose last bits depend on the order they were added in. With readings
#: of two decimals a score can land exactly on the limit (4.00 °C from the mean, σ at its
#: floor), so the limit, and the choice between the two scores, carry a margin far above
#: that noise: the decision is the same whichever way the sums went.
Z_MARGIN = 1e-9
#: A score this close (relative) to its limit is decided one reading at a time: far below
#: the limit's own margin, far above the sums' rounding noise (~1e-15).
_AMBIGUOUS = 1e-12


@dataclass(frozen=True)
class OutlierSettings:
    """Attributes:
    outlier_z: fires when a value is more than this many standard deviations from the mean
        of the sensor's own window, once the window has ``outlier_min_samples`` readings.
    outlier_min_samples: see ``outlier_z``.
    outlier_min_std_temperature, outlier_min_std_humidity: the standard deviation is taken
        as at least this (about a sensor's accuracy), so that a steady room's slow drift, or
        a very quiet sensor's tiny wobble, is not an outlier: by default a value must be more
        than 4 °C or 8 % from the window mean.
    """

    outlier_z: float = 4.0
    outlier_min_samples: int = 30
    outlier_min_std_temperature: float = 1.0
    outlier_min_std_humidity: float = 2.0


@register
class Outlier(Rule[None]):
    """Fires when temperature or humidity is more than ``outlier_z`` σ from the window mean
    (the window before the reading; out-of-order readings inside the window count)."""

    name = "outlier"
    Settings = OutlierSettings
    sees = WINDOW
    order = 40
    quantities = frozenset({"temperature", "humidity"})
    examples = (OutlierSettings(2.0, 5, 0.1, 0.1),)
    knobs: ClassVar[Mapping[str, Knob]] = {"outlier z": Knob("outlier_z", "outlier", "outlier distance", "σ")}

    def __init__(self, settings: OutlierSettings | None = None) -> None:
        super().__init__(settings)
        s = self.settings
        self.moments_from = s.outlier_min_samples
        self._z2 = s.outlier_z ** 2 * (1 + Z_MARGIN)  # compared squared, with its margin
        self._min_t_var = s.outlier_min_std_temperature ** 2
        self._min_h_var = s.outlier_min_std_humidity ** 2

    @classmethod
    def settings_from(cls, config: RuleConfig) -> OutlierSettings:
        """From RuleConfig's ``outlier_*`` fields."""
        return OutlierSettings(config.outlier_z, config.outlier_min_samples,
                               config.outlier_min_std_temperature,
                               config.outlier_min_std_humidity)

    @classmethod
    def quantities_of(cls, alerts: pd.DataFrame) -> pd.DataFrame:
        """The value the alert names (the one further from the window mean)."""
        import pandas as pd

        reason = alerts["reason"].astype("str")
        return pd.DataFrame({q: reason.str.startswith(f"Outlier: {q} ").to_numpy()
                             for q in ("temperature", "humidity")}, index=alerts.index)

    def update(self, state: None, reading: Reading, ts: int,
               moments: Moments | None) -> Finding | None:
        """Squared z-scores against the window's moments, without a square root."""
        if moments is None or moments[0] < self.moments_from:  # type: ignore[operator]
            return None
        _, t_mean, t_var, h_mean, h_var = moments
        t, h = reading.temperature, reading.humidity
        dt, dh = t - t_mean, h - h_mean
        zt2 = dt * dt / (t_var if t_var > self._min_t_var else self._min_t_var)  # noqa: FURB136
        zh2 = dh * dh / (h_var if h_var > self._min_h_var else self._min_h_var)  # noqa: FURB136
        if zt2 > self._z2 or zh2 > self._z2:
            return _finding(t, h, zt2, zh2, t_mean, h_mean)
        return None

    def update_many(self, state: None, run: Run
                    ) -> tuple[list[tuple[int, Finding]], None] | None:
        """The same scores as arrays; declines when one lies within 1e-12 of a limit (the
        window sums were added in another order: ~1e-15 apart)."""
        if run.t_mean is None or run.t_var is None or run.h_mean is None or run.h_var is None:
            return [], None
        has = run.count >= self.moments_from
        if not has.any():
            return [], None
        temp, hum = run.temperature, run.humidity
        dt, dh = temp - run.t_mean, hum - run.h_mean
        zt2 = dt * dt / np.maximum(run.t_var, self._min_t_var)
        zh2 = dh * dh / np.maximum(run.h_var, self._min_h_var)
        z2 = self._z2
        near = (np.abs(zt2 - z2) <= _AMBIGUOUS * z2) | (np.abs(zh2 - z2) <= _AMBIGUOUS * z2)
        out = has & ((zt2 > z2) | (zh2 > z2))
        pick = zh2 * (1 - Z_MARGIN)  # _finding names the temperature from here
        tie = out & (np.abs(zt2 - pick) <= _AMBIGUOUS * np.maximum(zt2, pick))
        if (has & near).any() or tie.any():
            return None
        return [(j, _finding(float(temp[j]), float(hum[j]), float(zt2[j]), float(zh2[j]),
                             float(run.t_mean[j]), float(run.h_mean[j])))
                for j in np.flatnonzero(out).tolist()], None


def _finding(t: float, h: float, zt2: float, zh2: float, t_mean: float,
             h_mean: float) -> Finding:
    if zt2 >= zh2 * (1 - Z_MARGIN):  # a tie names the temperature
        name, value, mean, z, unit = "temperature", t, t_mean, zt2, "°C"
    else:
        name, value, mean, z, unit = "humidity", h, h_mean, zh2, "%"
    # Window statistics carry rounding noise (~1e-15) that depends on the order the sums
    # were taken in: a mean of exactly 14.75 is 14.750000000000004 one way and
    # 14.749999999999998 the other. Rounded to 1e-9 first, the text does not depend on it.
    return Finding("warning", f"Outlier: {name} {value:.1f}{unit} is {round(math.sqrt(z), 9):.1f}σ "
                              f"from window mean {round(mean, 9):.1f}{unit}", name)
