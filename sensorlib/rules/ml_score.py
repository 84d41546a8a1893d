"""The ML score rule: an online model per sensor (river) that learns its normal behaviour
as readings arrive and flags spikes and slow drift. Off by default; needs ``river``
(``pip install 'sensorlib[ml]'``).

Why this model and not, say, river's ``anomaly.HalfSpaceTrees``: half-space trees score a
point by how empty its region of feature space is, over min-max scaled features that keep
learning. A sensor creeping 0.5–3 °C per hour moves so slowly that the scaler and the trees'
reference windows follow it: the drift is learned as normal and never scores high. What makes
a drift visible is *time scale*: a short-term level that has walked away from the sensor's
long-run baseline by more than the sensor's own normal spread. So the model is a small
robust online model per sensor and quantity, built from river's streaming statistics
(``stats.EWMean``, ``stats.Mean``, ``stats.Var``):

- a fast level (``ml_fast`` readings) that a spike is measured from, and the learned typical
  jump from it (an exponentially weighted mean of squared jumps, learned only from readings
  that are not spikes): the **spike score** is a reading's jump in those units;
- a slow level (``ml_level`` readings) and a long-run baseline (``ml_baseline`` readings:
  a plain average over the warm-up, exponentially weighted after it), with the learned
  spread of the gap between them (σ of the gap, learned only from calm readings, whose
  gap is within half the limit, and corrected for that truncation: a plain average until it has ``ml_baseline`` readings, then exponentially weighted): the
  **drift score** is the gap in those σ;
- values enter the levels winsorized (clipped at ``ml_threshold`` typical jumps from the
  fast level), so a spike of 45 °C does not drag the baseline and cause a drift alert later.

A reading fires when, past the ``ml_warmup`` readings the model learns from first, its spike
score exceeds ``ml_threshold`` or its drift score exceeds ``ml_drift`` (temperature or
humidity). The horizons count readings: the reference fleet sends one every 2 s, so the
defaults are 30 s, 15 min and 24 h, with a one-hour warm-up.

The state is rebuilt like the windows: the rule judges in-order readings (``SEQUENCE``), so
the processor's replay of recent history on assignment (``Pipeline.warm``) feeds it the same
readings in the same order. Both checks run the same sequential step (river models are
sequential), so they give the same findings and state, deterministically.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from sensorlib.errors import ConfigError
from sensorlib.rules import SEQUENCE, Finding, Knob, Moments, Rule, Run, register

if TYPE_CHECKING:
    import pandas as pd

    from sensorlib.model.events import Reading

__all__ = ["INSTALL_HINT", "MLScore", "MLScoreSettings", "MLState", "river_missing"]

#: What to do when the rule is turned on without river.
INSTALL_HINT = ("the ml_score rule needs the river package: pip install 'sensorlib[ml]' "
                "(or pip install river==0.26.1)")


def river_missing() -> str | None:
    """None when river can be imported; else why not and how to install it."""
    try:
        import river  # noqa: F401
    except ImportError as exc:
        return f"{INSTALL_HINT} ({exc})"
    return None


@dataclass(frozen=True)
class MLScoreSettings:
    """Attributes:
    ml_threshold: the spike limit: fires when a reading jumps from the sensor's fast level by
        more than this many of its learned typical jumps (an RMS, so about σ of the jump).
        Lower finds smaller spikes and raises more false alerts; 8 is quiet on the reference
        fleet's wandering while its 38–50 °C spikes score in the hundreds.
    ml_drift: the drift limit: fires when the sensor's slow level is more than this many σ
        of its learned gap away from its long-run baseline. On simulated sensors that wander
        ±1.5 °C (5-minute reversion), 4.5 finds a 3 °C/h creep in about 1.6 h, 1 °C/h in
        about 4.3 h and 0.5 °C/h in about 8 h, with no false alert in 28 sensor-days of
        fault-free readings (4 finds them sooner, 1.0 h for 3 °C/h, but raised one false
        drift episode in those days, on the Cold Storage sensor 9 h in).
    ml_warmup: readings the model learns from before it may fire (and the baseline is a
        plain average over them).
    ml_fast, ml_level, ml_baseline: the horizons, in readings, of the fast level (spikes
        are jumps from it), the slow level and the long-run baseline (drift is the gap
        between the two). At one reading every 2 s: 30 s, 15 min and 24 h.
    ml_min_jump_temperature, ml_min_jump_humidity: the typical jump is taken as at least
        this (°C, %): a very quiet sensor's tiny wobble is not a spike.
    ml_min_spread_temperature, ml_min_spread_humidity: the spread around the baseline is
        taken as at least this (°C, %).
    ml_history: the event-time history a restarted processor replays to rebuild the models
        (:attr:`Rule.warmup <sensorlib.rules.Rule.warmup>`): by default a day, the baseline's
        horizon at one reading every 2 s (so the warm-up and most of the baseline's memory
        come back; bounded by :data:`sensorlib.processor.warmup.MAX_WARMUP`).
    """

    ml_threshold: float = 8.0
    ml_drift: float = 4.5
    ml_warmup: int = 1800
    ml_fast: int = 15
    ml_level: int = 450
    ml_baseline: int = 43_200
    ml_min_jump_temperature: float = 0.1
    ml_min_jump_humidity: float = 0.2
    ml_min_spread_temperature: float = 0.5
    ml_min_spread_humidity: float = 1.0
    ml_history: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if not (self.ml_threshold > 0 and self.ml_drift > 0):
            raise ConfigError("ml_threshold and ml_drift must be positive")
        if not 1 <= self.ml_fast <= self.ml_level <= self.ml_baseline:
            raise ConfigError("need 1 <= ml_fast <= ml_level <= ml_baseline (readings)")
        if self.ml_warmup < 1:
            raise ConfigError(f"ml_warmup must be at least 1 (got {self.ml_warmup})")
        if not isinstance(self.ml_history, timedelta) or self.ml_history < timedelta(0):
            raise ConfigError(f"ml_history must be a timedelta of 0 or more (got "
                              f"{self.ml_history!r})")


class _Quantity:
    """The model of one quantity of one sensor (river streaming statistics)."""

    __slots__ = ("base", "fast", "jump2", "level", "plain", "spread2", "warm_mean", "warm_var")

    def __init__(self, stats: Any, s: MLScoreSettings, value: float) -> None:
        self.fast = stats.EWMean(1.0 / s.ml_fast)
        self.level = stats.EWMean(1.0 / s.ml_level)
        self.jump2 = stats.EWMean(1.0 / s.ml_level)  # squared jumps from the fast level
        self.warm_mean = stats.Mean()  # the baseline during the warm-up
        self.warm_var = stats.Var()  # the spread during the warm-up
        self.base: Any = None  # EWMean after the warm-up
        self.spread2: Any = None  # squared gaps of the slow level from the baseline after it
        self.plain = True  # spread2 is still a plain average (Mean), not an EWMean
        for stat in (self.fast, self.level, self.warm_mean, self.warm_var):
            stat.update(value)

    def snapshot(self) -> tuple[float, ...]:
        out = [self.fast.get(), self.level.get(), self.warm_mean.get(), self.warm_var.get()]
        out.append(self.jump2.get())
        if self.base is not None:
            out += [self.base.get(), self.spread2.get(), float(self.plain)]
        return tuple(out)


@dataclass(slots=True, eq=False)
class MLState:
    """One sensor's model: readings learned, and a model per quantity."""

    seen: int
    temperature: _Quantity
    humidity: _Quantity

    def snapshot(self) -> tuple[Any, ...]:
        """The model's numbers (what equality and repr compare)."""
        return self.seen, self.temperature.snapshot(), self.humidity.snapshot()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MLState) and self.snapshot() == other.snapshot()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MLState{self.snapshot()!r}"


@register
class MLScore(Rule[MLState]):
    """Fires on a spike or a slow drift that the sensor's own online model finds unusual
    (see the module docstring). Off by default: add ``ml_score`` to the rules."""

    name = "ml_score"
    Settings = MLScoreSettings
    sees = SEQUENCE
    order = 60
    quantities = frozenset({"temperature", "humidity"})
    examples = (MLScoreSettings(ml_threshold=5.0, ml_drift=1.0, ml_warmup=50, ml_fast=5,
                                ml_level=20, ml_baseline=200),)
    # No tuning knob: a Knob names a RuleConfig field, and this rule's settings live in
    # RuleConfig.rule_settings (sweep it by building RuleConfigs with MLScoreSettings).
    knobs: ClassVar[Mapping[str, Knob]] = {}

    def __init__(self, settings: MLScoreSettings | None = None) -> None:
        super().__init__(settings)
        try:
            from river import stats
        except ImportError as exc:
            raise ConfigError(INSTALL_HINT) from exc
        self._stats = stats
        s: MLScoreSettings = self.settings
        self.warmup = s.ml_history
        self._s = s
        self._base_ff = 1.0 / s.ml_baseline
        # The gap's spread learns only from calm readings (drift score at most half the
        # limit): a slow drift is never learned as normal, however slowly it builds. A
        # Gaussian truncated at c σ has a smaller variance; the factor undoes that, so the
        # learned spread neither shrinks nor grows on a sensor that does not drift.
        c = self._learn_below = s.ml_drift / 2
        inside = math.erf(c / math.sqrt(2))
        self._truncated = inside / (inside - 2 * c * math.exp(-c * c / 2) / math.sqrt(2 * math.pi))
        self._min_jump2 = {"temperature": s.ml_min_jump_temperature ** 2,
                           "humidity": s.ml_min_jump_humidity ** 2}
        self._min_spread2 = {"temperature": s.ml_min_spread_temperature ** 2,
                             "humidity": s.ml_min_spread_humidity ** 2}

    @classmethod
    def missing(cls) -> str | None:
        """Why the rule cannot run here (river is not installed), or None."""
        return river_missing()

    @classmethod
    def quantities_of(cls, alerts: pd.DataFrame) -> pd.DataFrame:
        """The quantity the alert names."""
        import pandas as pd

        reason = alerts["reason"].astype("str")
        return pd.DataFrame({q: reason.str.startswith(f"ML score: {q} ").to_numpy()
                             for q in ("temperature", "humidity")}, index=alerts.index)

    def start(self, ts: int, temperature: float, humidity: float) -> MLState:
        """A model that has seen the first reading."""
        s = self._s
        return MLState(1, _Quantity(self._stats, s, temperature),
                       _Quantity(self._stats, s, humidity))

    def update(self, state: MLState, reading: Reading, ts: int,  # type: ignore[override]
               moments: Moments | None) -> Finding | None:
        """Score the reading against the model, then learn it."""
        return self._step(state, reading.temperature, reading.humidity)

    def update_many(self, state: MLState, run: Run  # type: ignore[override]
                    ) -> tuple[list[tuple[int, Finding]], MLState]:
        """The same step over the run, on a copy of the state (river models are
        sequential: a Python loop, deterministic)."""
        after = copy.deepcopy(state)
        step, found = self._step, []
        for j, (t, h) in enumerate(zip(run.temperature.tolist(), run.humidity.tolist(),
                                       strict=True)):
            f = step(after, t, h)
            if f is not None:
                found.append((j, f))
        return found, after

    def _step(self, state: MLState, t: float, h: float) -> Finding | None:
        state.seen += 1
        warm = state.seen > self._s.ml_warmup
        best: tuple[float, Finding] | None = None
        for name, q, x, unit in (("temperature", state.temperature, t, "°C"),
                                 ("humidity", state.humidity, h, "%")):
            spike, drift, level, base = self._learn(name, q, x)
            if not warm:
                continue
            s = self._s
            # The worse of the two, relative to its limit; ties: temperature, then spike.
            for ratio, kind in ((spike / s.ml_threshold, "spike"), (drift / s.ml_drift, "drift")):
                if ratio > 1.0 and (best is None or ratio > best[0]):
                    if kind == "spike":
                        reason = (f"ML score: {name} {x:.1f}{unit} is a spike, "
                                  f"{round(spike, 9):.1f}σ from its level "
                                  f"(limit {s.ml_threshold:g}σ)")
                    else:
                        reason = (f"ML score: {name} drifting, level {round(level, 9):.1f}{unit} "
                                  f"vs baseline {round(base, 9):.1f}{unit}, "
                                  f"{round(drift, 9):.1f}σ (limit {s.ml_drift:g}σ)")
                    best = (ratio, Finding("warning", reason, name))
        if state.seen == self._s.ml_warmup:  # the warm-up ends: exponentially weighted on
            for q in (state.temperature, state.humidity):
                q.base = self._stats.EWMean(self._base_ff)
                q.base.update(q.warm_mean.get())
                # The gap's spread: a plain average, the warm-up's spread as a prior worth
                # ml_level readings, until it has ml_baseline readings; then weighted.
                q.spread2 = self._stats.Mean()
                q.spread2.update(q.warm_var.get(), w=self._s.ml_level)
        return None if best is None else best[1]

    def _learn(self, name: str, q: _Quantity, x: float) -> tuple[float, float, float, float]:
        """Score ``x`` (spike, drift) and learn it; also the slow level and baseline."""
        fast = q.fast.get()
        jump = x - fast
        jump2 = q.jump2.get()
        scale2 = max(self._min_jump2[name], jump2)
        spike = abs(jump) / math.sqrt(scale2)
        limit = self._s.ml_threshold * math.sqrt(scale2)
        clipped = fast + (limit if jump > limit else max(jump, -limit))
        if spike <= self._s.ml_threshold:
            q.jump2.update(jump * jump)
        q.fast.update(clipped)
        q.level.update(clipped)
        level = q.level.get()
        if q.base is None:  # warming up
            q.warm_mean.update(clipped)
            q.warm_var.update(clipped)
            return spike, 0.0, level, q.warm_mean.get()
        base = q.base.get()
        gap = level - base
        spread2 = q.spread2.get()
        spread2 = max(self._min_spread2[name], spread2)
        drift = abs(gap) / math.sqrt(spread2)
        q.base.update(clipped)
        if drift <= self._learn_below:  # learn the spread from calm times only
            if q.plain and q.spread2.n >= self._s.ml_baseline:
                seeded = self._stats.EWMean(self._base_ff)
                seeded.update(q.spread2.get())
                q.spread2, q.plain = seeded, False
            q.spread2.update(gap * gap * self._truncated)
        return spike, drift, level, base
