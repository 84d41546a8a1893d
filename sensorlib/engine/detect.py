"""Anomaly rules over one sensor's readings: threshold, rate of change, stuck, silent, outlier.

All timing (cooldowns, silence, rates) is in *event time*, so replaying history
raises exactly the alerts a live run raised, with the same ids.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import count
from typing import TYPE_CHECKING

from sensorlib.errors import ConfigError
from sensorlib.model.events import Alert, Reading, Severity, alert_id, status_of
from sensorlib.model.times import from_us, to_us, utcnow

if TYPE_CHECKING:
    from sensorlib.engine.windows import SensorWindow

__all__ = ["ALL_RULES", "FLEET", "Detector", "RuleConfig", "utcnow"]

#: Every rule name, as it appears in ``Alert.rule``.
ALL_RULES = frozenset({"threshold", "rate_of_change", "stuck", "silent", "outlier"})
#: The ``sensorId`` of a fleet alert (a storm of silences folded into one alert). Its
#: ``alertId`` also names the slot and the first sensor folded (see Detector.tick), so it
#: never equals the id of an alert of a sensor that happens to be called that.
FLEET = "*fleet*"
#: How many sensor ids a fleet alert's reason names.
FLEET_NAMED = 5

_US_PER_MINUTE = 60_000_000
#: Relative margin on the outlier limit and between the two scores (see Detector.__init__).
Z_MARGIN = 1e-9


@dataclass(frozen=True)
class RuleConfig:
    """What counts as an anomaly.

    Attributes:
        temperature_threshold, humidity_threshold: the threshold rule fires when a
            reading is strictly above either (the reference: 35 °C, 90 %).
            The alert's severity is the dashboard's status of the reading
            (:func:`~sensorlib.model.events.status_of`: ``critical`` above 35 °C or 90 %, the
            sample's rule), else ``warning``: one definition of critical everywhere.
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
        silent_storm: at most this many sensors get a silent alert of their own per
            ``silent_storm_slot`` of event time (counted by when their silence fell due,
            first due first, then by sensor id); the others of that slot are folded into
            one ``silent`` alert for :data:`FLEET`, raised at the slot's end, saying how
            many and naming a few. ``None``: never fold.
        silent_storm_slot: the slots of ``silent_storm``, counted from the Unix epoch.
        rules: which rules are on.
    """

    temperature_threshold: float = 35.0
    humidity_threshold: float = 90.0
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
    silent_storm: int | None = 20
    silent_storm_slot: timedelta = timedelta(seconds=10)
    rules: frozenset[str] = field(default=ALL_RULES)

    def __post_init__(self) -> None:
        if self.rate_min_span <= timedelta(0):
            raise ConfigError(f"rate_min_span must be positive (got {self.rate_min_span})")
        if self.silent_storm_slot < timedelta(microseconds=1):
            raise ConfigError(f"silent_storm_slot must be positive (got {self.silent_storm_slot})")
        if self.silent_storm is not None and self.silent_storm < 0:
            raise ConfigError(f"silent_storm must be >= 0 or None (got {self.silent_storm})")
        unknown = set(self.rules) - ALL_RULES
        if unknown:
            raise ConfigError(f"unknown rules {sorted(unknown)}; known: {sorted(ALL_RULES)}")


def _span_text(us: int) -> str:
    seconds = us / 1e6
    if seconds < 120:
        return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms"
    return f"{seconds / 60:.1f} min"


class _SensorState:
    """What the rules remember about one sensor between readings."""

    __slots__ = ("evict_key", "last", "last_us", "recent", "run", "silence_key", "silenced")

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
        # The key of this state's live entry in the Detector's silence / eviction heap.
        self.silence_key = self.evict_key = -1


class Detector:
    """Applies the rules to each reading of each sensor; remembers cooldowns and silences.

    Call :meth:`observe` with a reading and its sensor's window *before* adding the
    reading to that window: the outlier rule compares the reading with what came before
    it, and lateness is judged as on arrival. (:class:`sensorlib.engine.pipeline.Pipeline` does
    this in the right order.) Late readings only feed the threshold rule: they are real
    measurements worth an alert, but too old to say anything about rates, runs or
    silence. Out-of-order readings inside the window feed the threshold and outlier
    rules, not the ones about consecutive readings.

    ``clock`` gives ``detected_at``; alert ids never depend on it.

    ``evict_after``: :meth:`expire` forgets a sensor (its state and cooldowns) once it has
    sent nothing newer for longer than this (event time); it must be longer than
    ``silent_after``, so the silent alert comes first. None (the default here): never;
    :class:`sensorlib.engine.pipeline.Pipeline` passes its own.

    >>> from datetime import UTC
    >>> d = Detector()
    >>> r = Reading(sensor_id="s1", temperature=42.5, humidity=95.0,
    ...             timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    >>> from sensorlib.engine.windows import SensorWindow
    >>> [(a.rule, a.severity, a.reason) for a in d.observe(r, SensorWindow())]
    [('threshold', 'critical', 'High temperature: 42.5°C, High humidity: 95.0%')]
    """

    def __init__(self, config: RuleConfig = RuleConfig(), *,
                 clock: Callable[[], datetime] = utcnow,
                 evict_after: timedelta | None = None) -> None:
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
        # whichever way the sums went (see sensorlib.engine.runs).
        self._z2 = config.outlier_z ** 2 * (1 + Z_MARGIN)
        self._hot, self._wet = config.temperature_threshold, config.humidity_threshold
        self._min_t_var = config.outlier_min_std_temperature ** 2
        self._min_h_var = config.outlier_min_std_humidity ** 2
        self._sensors: dict[str, _SensorState] = {}
        self._last_alert: dict[tuple[str, str], int] = {}  # (sensor, rule) -> event time
        # Deadlines, so that a tick costs what falls due, not how many sensors there are:
        # min-heaps of (key µs, seq, state). A state has at most one live entry in each, the
        # one whose key it remembers (silence_key, evict_key); its key is never later than
        # the true deadline (last_us only grows), and an entry that comes up early is pushed
        # again with the true one. Entries of states dropped since are skipped.
        self._silences: list[tuple[int, int, _SensorState]] = []  # key: last_us + silent_after
        self._evictions: list[tuple[int, int, _SensorState]] = []  # key: last_us + evict_after
        self._seq = count()
        if evict_after is not None and evict_after <= config.silent_after:
            raise ConfigError(f"evict_after ({evict_after}) must be longer than silent_after "
                             f"({config.silent_after}): a sensor is evicted after its silent alert")
        self._evict_us = None if evict_after is None else evict_after // timedelta(microseconds=1)
        # Silent-alert storms (RuleConfig.silent_storm): silences counted per slot of event
        # time, and the ones folded, held until their slot ends.
        self._storm = config.silent_storm
        self._slot_us = config.silent_storm_slot // timedelta(microseconds=1)
        self._slot_counts: dict[int, int] = {}
        self._folded: dict[int, list[tuple[int, str, Reading]]] = {}
        self.evicted = 0  # sensors evicted so far (expire)

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
        (:meth:`sensorlib.engine.windows.SensorWindow.moments`; only when :meth:`wants_moments`)."""
        alerts: list[Alert] = []
        # The cheap tests are inline (this runs for every reading); the methods only
        # build the alerts.
        if self._threshold and (reading.temperature > self._hot or reading.humidity > self._wet):
            self._check_threshold(reading, ts, alerts)
        if late:
            return alerts
        state = self._sensors.get(reading.sensor_id)
        if state is None:
            state = self._sensors[reading.sensor_id] = _SensorState(reading, ts)
            if self._evict_us is not None:
                state.evict_key = key = ts + self._evict_us
                heapq.heappush(self._evictions, (key, next(self._seq), state))
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
        critical = status_of(r.temperature, r.humidity) == "critical"  # as the cards show
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
        state.last, state.last_us = r, ts
        if state.silenced:
            self._arm(state)

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

    def _arm(self, state: _SensorState) -> None:
        """Watch a sensor for silence again (its reading ended a silence, or it streams now)."""
        state.silenced = False
        if self._silent:
            state.silence_key = key = state.last_us + self._silent_us
            heapq.heappush(self._silences, (key, next(self._seq), state))

    def _live(self, state: _SensorState) -> bool:
        return self._sensors.get(state.last.sensor_id) is state

    def tick(self, now: datetime) -> list[Alert]:
        """Silent alerts for sensors with no reading for over ``silent_after`` at ``now``.

        One alert per silence (re-armed when the sensor speaks again); a sensor is
        watched from its second reading on, so a one-off reading raises none. ``now`` is event
        time: the live processor passes its watermark plus the time since it advanced;
        a replay passes the replayed event time.

        Storms (``RuleConfig.silent_storm``): within one slot of event time, the first
        ``silent_storm`` silences (by when they fell due, then sensor id) are alerted one by
        one; the rest are held and folded into one fleet alert at the slot's end. Which
        sensors are folded does not depend on how often ticks come, so a replay folds as the
        live processor did. Cost: what falls due, never the number of sensors (a heap).
        """
        if not self._silent:
            return []
        now_us = to_us(now)
        silent_us = self._silent_us
        heap = self._silences
        due: list[tuple[int, str, _SensorState]] = []
        while heap and heap[0][0] < now_us:
            key, _, state = heapq.heappop(heap)
            if state.silenced or state.silence_key != key or not self._live(state):
                continue  # superseded, or the sensor was dropped
            true = state.last_us + silent_us
            if true < now_us:
                due.append((true, state.last.sensor_id, state))
            else:  # it spoke since: watch its new deadline
                state.silence_key = true
                heapq.heappush(heap, (true, next(self._seq), state))
        single: list[_SensorState] = []
        storm, slot_us = self._storm, self._slot_us
        due.sort(key=_DUE_ORDER)
        for true, sensor_id, state in due:
            state.silenced = True
            if storm is None:
                single.append(state)
                continue
            slot = true // slot_us
            seen = self._slot_counts[slot] = self._slot_counts.get(slot, 0) + 1
            if seen <= storm:
                single.append(state)
            else:
                self._folded.setdefault(slot, []).append((true, sensor_id, state.last))
        alerts: list[Alert] = []
        single.sort(key=_STATE_SENSOR)
        for state in single:
            self._emit(alerts, state.last, now_us, "silent", "warning",
                       f"Silent: no reading for {(now_us - state.last_us) / 1e6:.0f}s")
        if self._slot_counts:
            # Slots that ended: their fleet alert (if any) goes out now, their count is done.
            ended = [slot for slot in self._slot_counts if (slot + 1) * slot_us <= now_us]
            for slot in sorted(ended):
                del self._slot_counts[slot]
                folded = self._folded.pop(slot, None)
                if folded:
                    alerts.append(self._fleet_alert(slot, folded))
        return alerts

    def _fleet_alert(self, slot: int, folded: list[tuple[int, str, Reading]]) -> Alert:
        """One alert for the silences of ``slot`` beyond ``silent_storm``."""
        slot_us = self._slot_us
        start = from_us(slot * slot_us)
        folded.sort(key=_FOLDED_TIME)  # by when each fell due, then sensor id
        names = [sensor_id for _, sensor_id, _ in folded[:FLEET_NAMED]]
        more = len(folded) - len(names)
        shown = ", ".join(names) + (f" and {more:,} more" if more else "")
        newest = folded[-1][2]
        return Alert(
            # The slot and its first sensor folded: the same in a replay, and two partitions'
            # pipelines folding in the same slot never share an id.
            alert_id=alert_id(f"{FLEET}|{names[0]}", "silent", start),
            sensor_id=FLEET,
            location="",
            temperature=newest.temperature,
            humidity=newest.humidity,
            timestamp=newest.timestamp,
            detected_at=self.clock(),
            rule="silent",
            severity="critical",
            # Nothing in it depends on when the tick came (the same text in a replay).
            reason=f"Silent fleet: {len(folded):,} more sensors fell silent (no reading for "
                   f"over {_span_text(self._silent_us)}) in the {_span_text(slot_us)} from "
                   f"{start:%Y-%m-%d %H:%M:%S} UTC, after {self._storm} alerted one by one: "
                   f"{shown}",
        )

    def next_silence(self) -> datetime | None:
        """The earliest time after which :meth:`tick` would raise a silent alert.

        A tick strictly later than this is needed; None when no sensor can fall silent.
        """
        if not self._silent:
            return None
        heap = self._silences
        while heap:
            key, _, state = heap[0]
            if state.silenced or state.silence_key != key or not self._live(state):
                heapq.heappop(heap)
                continue
            true = state.last_us + self._silent_us
            if true == key:
                return from_us(key)
            state.silence_key = true
            heapq.heapreplace(heap, (true, next(self._seq), state))
        return None

    def next_due(self) -> datetime | None:
        """The earliest time after which :meth:`tick` or :meth:`expire` would do something:
        a silence, the end of a slot holding folded silences, or an eviction. None: nothing."""
        times = []
        silence = self.next_silence()
        if silence is not None:
            times.append(to_us(silence))
        if self._folded:
            times.append((min(self._folded) + 1) * self._slot_us - 1)
        heap = self._evictions
        while heap:
            key, _, state = heap[0]
            if state.evict_key != key or not self._live(state):
                heapq.heappop(heap)
                continue
            true = state.last_us + self._evict_us  # type: ignore[operator]
            if true == key:
                times.append(key)
                break
            state.evict_key = true
            heapq.heapreplace(heap, (true, next(self._seq), state))
        return from_us(min(times)) if times else None

    def expire(self, now: datetime) -> list[str]:
        """Forget the sensors silent for longer than ``evict_after`` at ``now`` (event time)
        and return their ids; call after :meth:`tick`, so their silent alerts come first.
        A sensor that speaks again later starts afresh, as a new one. Cost: what expires."""
        if self._evict_us is None:
            return []
        now_us = to_us(now)
        heap = self._evictions
        gone: list[str] = []
        while heap and heap[0][0] < now_us:
            key, _, state = heapq.heappop(heap)
            if state.evict_key != key or not self._live(state):
                continue
            true = state.last_us + self._evict_us
            if true < now_us:
                sensor_id = state.last.sensor_id
                self.drop(sensor_id)
                gone.append(sensor_id)
            else:
                state.evict_key = true
                heapq.heappush(heap, (true, next(self._seq), state))
        self.evicted += len(gone)
        return gone

    def expired(self, sensor_id: str, ts: int) -> bool:
        """Whether a reading of ``sensor_id`` at ``ts`` (µs) finds it expired (see expire)."""
        state = self._sensors.get(sensor_id)
        return (state is not None and self._evict_us is not None
                and ts > state.last_us + self._evict_us)

    def drop(self, sensor_id: str) -> None:
        """Forget one sensor: its state and its cooldowns (O(1))."""
        self._sensors.pop(sensor_id, None)
        last_alert = self._last_alert
        for rule in ALL_RULES:
            last_alert.pop((sensor_id, rule), None)

    def __len__(self) -> int:
        """How many sensors the rules remember."""
        return len(self._sensors)

    def forget(self, sensor_ids: Iterable[str]) -> None:
        """Drop what is remembered about these sensors (e.g. decommissioned ones)."""
        for sensor_id in set(sensor_ids):
            self.drop(sensor_id)

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


def _due_order(entry: tuple[int, str, _SensorState]) -> tuple[int, str]:
    return entry[0], entry[1]


def _state_sensor(state: _SensorState) -> str:
    return state.last.sensor_id


def _folded_time(entry: tuple[int, str, Reading]) -> tuple[int, str]:
    return entry[0], entry[1]


_DUE_ORDER, _STATE_SENSOR, _FOLDED_TIME = _due_order, _state_sensor, _folded_time
