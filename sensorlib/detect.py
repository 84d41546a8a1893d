"""Anomaly rules over one sensor's readings: threshold, rate of change, stuck, silent, outlier.

All timing (cooldowns, silence, rates) is in *event time*, so replaying history
raises exactly the alerts a live run raised, with the same ids.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sensorlib.events import Alert, Reading, Severity, alert_id
from sensorlib.times import from_us, to_us, utcnow

if TYPE_CHECKING:
    from sensorlib.windows import SensorWindow

__all__ = ["ALL_RULES", "Detector", "RuleConfig", "utcnow"]

#: Every rule name, as it appears in ``Alert.rule``.
ALL_RULES = frozenset({"threshold", "rate_of_change", "stuck", "silent", "outlier"})

_US_PER_MINUTE = 60_000_000
#: Relative margin on the outlier limit and between the two scores (see Detector.__init__).
Z_MARGIN = 1e-9


@dataclass(frozen=True)
class RuleConfig:
    """What counts as an anomaly.

    Attributes:
        temperature_threshold, humidity_threshold: the threshold rule fires when a
            reading is strictly above either (the reference: 35 °C, 90 %).
        temperature_critical_margin, humidity_critical_margin: the threshold alert is
            ``critical`` when a value exceeds its threshold by more than this
            (35 + 5 = 40 °C, 90 + 5 = 95 %), else ``warning``.
        rate_of_change: °C per minute above which it fires, measured from the sensor's
            newest reading at least ``rate_min_span`` of event time before this one (or its
            oldest, dividing by ``rate_min_span`` then), provided the change is at least
            ``rate_min_delta`` °C: readings a millisecond apart never make a "rate" of
            thousands of degrees per minute, and noise at high rates is not a trend.
        stuck_readings: fires when this many consecutive readings repeat exactly the
            same temperature and humidity.
        silent_after: fires when a sensor has sent nothing for longer than this.
        outlier_z: fires when a value is more than this many standard deviations from
            the mean of the sensor's own window, once the window has ``outlier_min_samples``
            readings. The standard deviation is taken as at least
            ``outlier_min_std_temperature`` / ``outlier_min_std_humidity`` (about a
            sensor's accuracy), so that a steady room's slow drift, or a very quiet
            sensor's tiny wobble, is not an outlier: by default a value must be more
            than 4 °C or 8 % from the window mean.
        cooldown: after an alert, the same rule stays quiet for that sensor for this
            long (event time, either side of the alert).
        rules: which rules are on.
    """

    temperature_threshold: float = 35.0
    humidity_threshold: float = 90.0
    temperature_critical_margin: float = 5.0
    humidity_critical_margin: float = 5.0
    rate_of_change: float = 10.0
    rate_min_delta: float = 2.0
    rate_min_span: timedelta = timedelta(seconds=10)
    stuck_readings: int = 10
    silent_after: timedelta = timedelta(seconds=30)
    outlier_z: float = 4.0
    outlier_min_samples: int = 30
    outlier_min_std_temperature: float = 1.0
    outlier_min_std_humidity: float = 2.0
    cooldown: timedelta = timedelta(minutes=1)
    rules: frozenset[str] = field(default=ALL_RULES)

    def __post_init__(self) -> None:
        if self.rate_min_span <= timedelta(0):
            raise ValueError(f"rate_min_span must be positive (got {self.rate_min_span})")
        unknown = set(self.rules) - ALL_RULES
        if unknown:
            raise ValueError(f"unknown rules {sorted(unknown)}; known: {sorted(ALL_RULES)}")


def _span_text(us: int) -> str:
    seconds = us / 1e6
    if seconds < 120:
        return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms"
    return f"{seconds / 60:.1f} min"


class _SensorState:
    """What the rules remember about one sensor between readings."""

    __slots__ = ("last", "last_us", "recent", "run", "silenced")

    def __init__(self, reading: Reading, ts: int) -> None:
        self.last = reading  # the newest reading (by event time)
        self.last_us = ts
        # (event time, temperature) of in-order readings, from the newest one at least
        # ``rate_min_span`` old on: the rate of change is measured from its head.
        self.recent: deque[tuple[int, float]] = deque([(ts, reading.temperature)])
        self.run = 1  # consecutive readings with exactly these values
        # True while no silent alert is due: after one was raised for the current silence,
        # and before the sensor's second reading. A sensor is watched for silence once it
        # streams, so a one-off reading (a test POST, a back-dated import) never raises one.
        self.silenced = True


class Detector:
    """Applies the rules to each reading of each sensor; remembers cooldowns and silences.

    Call :meth:`observe` with a reading and its sensor's window *before* adding the
    reading to that window: the outlier rule compares the reading with what came before
    it, and lateness is judged as on arrival. (:class:`sensorlib.pipeline.Pipeline` does
    this in the right order.) Late readings only feed the threshold rule: they are real
    measurements worth an alert, but too old to say anything about rates, runs or
    silence. Out-of-order readings inside the window feed the threshold and outlier
    rules, not the ones about consecutive readings.

    ``clock`` gives ``detected_at``; alert ids never depend on it.

    >>> from datetime import UTC
    >>> d = Detector()
    >>> r = Reading(sensor_id="s1", temperature=42.5, humidity=95.0,
    ...             timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    >>> from sensorlib.windows import SensorWindow
    >>> [(a.rule, a.severity, a.reason) for a in d.observe(r, SensorWindow())]
    [('threshold', 'critical', 'High temperature: 42.5°C, High humidity: 95.0%')]
    """

    def __init__(self, config: RuleConfig = RuleConfig(), *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.clock = clock
        on = config.rules
        self._threshold = "threshold" in on
        self._rate = "rate_of_change" in on
        self._stuck = "stuck" in on
        self._silent = "silent" in on
        self._outlier = "outlier" in on
        self._cooldown_us = config.cooldown // timedelta(microseconds=1)
        self._span_us = config.rate_min_span // timedelta(microseconds=1)
        self._silent_us = config.silent_after // timedelta(microseconds=1)
        # Squared z-scores come from running window sums whose last bits depend on the order
        # they were added in. With readings of two decimals a score can land exactly on the
        # limit (4.00 °C from the mean, σ at its floor), so the limit, and the choice between
        # the two scores, carry a margin far above that noise: the decision is the same
        # whichever way the sums went (see sensorlib.runs).
        self._z2 = config.outlier_z ** 2 * (1 + Z_MARGIN)
        self._hot, self._wet = config.temperature_threshold, config.humidity_threshold
        self._min_t_var = config.outlier_min_std_temperature ** 2
        self._min_h_var = config.outlier_min_std_humidity ** 2
        self._sensors: dict[str, _SensorState] = {}
        self._last_alert: dict[tuple[str, str], int] = {}  # (sensor, rule) -> event time

    # -- readings ---------------------------------------------------------------------

    def observe(self, reading: Reading, window: SensorWindow) -> list[Alert]:
        """The alerts one reading raises; call before adding it to ``window``.

        A convenience over :meth:`observe_us`, which takes the window's state as plain values.
        """
        ts = to_us(reading.timestamp)
        return self.observe_us(reading, ts, window.is_late_us(ts),
                               window.moments() if self.wants_moments(len(window)) else None)

    def wants_moments(self, count: int) -> bool:
        """Whether the outlier rule needs the window's moments when it holds ``count`` readings."""
        return self._outlier and count >= self.config.outlier_min_samples

    def observe_us(self, reading: Reading, ts: int, late: bool,
                   moments: tuple[int, float, float, float, float] | None) -> list[Alert]:
        """The alerts one reading raises (hot path), from plain values: its event time in
        epoch µs, whether it is late for its window, and the window's moments before it
        (:meth:`sensorlib.windows.SensorWindow.moments`; only when :meth:`wants_moments`)."""
        alerts: list[Alert] = []
        # The cheap tests are inline (this runs for every reading); the methods only
        # build the alerts.
        if self._threshold and (reading.temperature > self._hot or reading.humidity > self._wet):
            self._check_threshold(reading, ts, alerts)
        if late:
            return alerts
        state = self._sensors.get(reading.sensor_id)
        if state is None:
            self._sensors[reading.sensor_id] = _SensorState(reading, ts)
        elif ts > state.last_us:
            self._check_sequence(state, reading, ts, alerts)
        if moments is not None:
            # Compared squared, without a square root.
            _, t_mean, t_var, h_mean, h_var = moments
            dt, dh = reading.temperature - t_mean, reading.humidity - h_mean
            zt2 = dt * dt / (t_var if t_var > self._min_t_var else self._min_t_var)  # noqa: FURB136 - no call
            zh2 = dh * dh / (h_var if h_var > self._min_h_var else self._min_h_var)  # noqa: FURB136
            if zt2 > self._z2 or zh2 > self._z2:
                self._emit_outlier(reading, ts, zt2, zh2, t_mean, h_mean, alerts)
        return alerts

    def _check_threshold(self, r: Reading, ts: int, alerts: list[Alert]) -> None:
        c = self.config
        hot = r.temperature > c.temperature_threshold
        wet = r.humidity > c.humidity_threshold
        if not (hot or wet):
            return
        parts = []
        if hot:
            parts.append(f"High temperature: {r.temperature:.1f}°C")
        if wet:
            parts.append(f"High humidity: {r.humidity:.1f}%")
        critical = (r.temperature > c.temperature_threshold + c.temperature_critical_margin
                    or r.humidity > c.humidity_threshold + c.humidity_critical_margin)
        self._emit(alerts, r, ts, "threshold", "critical" if critical else "warning",
                   ", ".join(parts))

    def _check_sequence(self, state: _SensorState, r: Reading, ts: int,
                        alerts: list[Alert]) -> None:
        """Rules about consecutive readings; ``r`` is the sensor's newest reading."""
        prev = state.last
        if self._rate:
            recent = state.recent
            cutoff = ts - self._span_us
            while len(recent) > 1 and recent[1][0] <= cutoff:
                recent.popleft()
            since, before = recent[0]
            delta = r.temperature - before
            if abs(delta) >= self.config.rate_min_delta:
                span = max(ts - since, self._span_us)
                per_minute = delta * _US_PER_MINUTE / span
                if abs(per_minute) > self.config.rate_of_change:
                    self._emit_rate(r, ts, since, delta, per_minute, alerts)
            recent.append((ts, r.temperature))
        if r.temperature == prev.temperature and r.humidity == prev.humidity:
            state.run += 1
            if self._stuck and state.run >= self.config.stuck_readings:
                self._emit_stuck(r, ts, state.run, alerts)
        else:
            state.run = 1
        state.last, state.last_us, state.silenced = r, ts, False

    def _emit_rate(self, r: Reading, ts: int, since: int, delta: float, per_minute: float,
                   alerts: list[Alert]) -> None:
        """The rate-of-change alert: ``delta`` °C since the reading at ``since``."""
        self._emit(alerts, r, ts, "rate_of_change", "warning",
                   f"Temperature {'rose' if delta > 0 else 'fell'} {abs(delta):.1f}°C in "
                   f"{_span_text(ts - since)} ({per_minute:+.1f}°C/min)")

    def _emit_stuck(self, r: Reading, ts: int, run: int, alerts: list[Alert]) -> None:
        self._emit(alerts, r, ts, "stuck", "warning", f"Stuck: same values for {run} readings")

    def _emit_outlier(self, r: Reading, ts: int, zt2: float, zh2: float, t_mean: float,
                      h_mean: float, alerts: list[Alert]) -> None:
        """The outlier alert, once :meth:`observe_us` found a squared z-score above the limit."""
        if zt2 >= zh2 * (1 - Z_MARGIN):  # a tie names the temperature
            name, value, mean, z, unit = "temperature", r.temperature, t_mean, zt2, "°C"
        else:
            name, value, mean, z, unit = "humidity", r.humidity, h_mean, zh2, "%"
        # Window statistics carry rounding noise (~1e-15) that depends on the order the
        # sums were taken in: a mean of exactly 14.75 is 14.750000000000004 one way and
        # 14.749999999999998 the other. Rounded to 1e-9 first, the text does not depend on it.
        self._emit(alerts, r, ts, "outlier", "warning",
                   f"Outlier: {name} {value:.1f}{unit} is {round(math.sqrt(z), 9):.1f}σ "
                   f"from window mean {round(mean, 9):.1f}{unit}")

    # -- time passing -----------------------------------------------------------------

    def tick(self, now: datetime) -> list[Alert]:
        """Silent alerts for sensors with no reading for over ``silent_after`` at ``now``.

        One alert per silence (re-armed when the sensor speaks again); a sensor is
        watched from its second reading on, so a one-off reading raises none. ``now`` is event
        time: the live processor passes its watermark plus the time since it advanced;
        a replay passes the replayed event time.
        """
        if not self._silent:
            return []
        now_us = to_us(now)
        alerts: list[Alert] = []
        for sensor_id in sorted(self._sensors):
            state = self._sensors[sensor_id]
            quiet = now_us - state.last_us
            if state.silenced or quiet <= self._silent_us:
                continue
            state.silenced = True
            self._emit(alerts, state.last, now_us, "silent", "warning",
                       f"Silent: no reading for {quiet / 1e6:.0f}s")
        return alerts

    def next_silence(self) -> datetime | None:
        """The earliest time after which :meth:`tick` would raise a silent alert.

        A tick strictly later than this is needed; None when no sensor can fall silent.
        """
        due = [s.last_us for s in self._sensors.values() if not s.silenced]
        if not due or not self._silent:
            return None
        return from_us(min(due) + self._silent_us)

    def forget(self, sensor_ids: Iterable[str]) -> None:
        """Drop what is remembered about these sensors (e.g. decommissioned ones)."""
        gone = set(sensor_ids)
        for sensor_id in gone:
            self._sensors.pop(sensor_id, None)
        self._last_alert = {k: v for k, v in self._last_alert.items() if k[0] not in gone}

    # -- emitting ---------------------------------------------------------------------

    def _emit(self, alerts: list[Alert], r: Reading, at: int, rule: str,
              severity: Severity, reason: str) -> None:
        """Append an alert unless the (sensor, rule) cooldown around ``at`` holds it back.

        The alert's timestamp (and so its id) is always the reading's; ``at`` is the
        event time the cooldown runs on (the tick time for the silent rule).
        """
        key = (r.sensor_id, rule)
        last = self._last_alert.get(key)
        cd = self._cooldown_us
        if last is not None and last - cd < at < last + cd:
            return
        self._last_alert[key] = at if last is None else max(last, at)
        alerts.append(Alert(
            alert_id=alert_id(r.sensor_id, rule, r.timestamp),
            sensor_id=r.sensor_id,
            location=r.location,
            temperature=r.temperature,
            humidity=r.humidity,
            timestamp=r.timestamp,
            detected_at=self.clock(),
            rule=rule,
            severity=severity,
            reason=reason,
        ))
