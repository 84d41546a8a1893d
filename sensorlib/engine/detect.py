"""Anomaly rules over one sensor's readings: threshold, rate of change, stuck, silent, outlier.

All timing (cooldowns, silence, rates) is in *event time*, so replaying history
raises exactly the alerts a live run raised, with the same ids.
"""

from __future__ import annotations

import heapq
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from itertools import count, groupby
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from sensorlib.errors import ConfigError, InvalidSetting
from sensorlib.model.events import Alert, Reading, Severity, alert_id, new_alert
from sensorlib.model.rejections import _shown  # as gate and events quote a refused value
from sensorlib.model.times import from_us, to_us, utcnow
from sensorlib.rules import EVERY, TICK, WINDOW, Finding, Rule, Run
from sensorlib.rules import registry as rule_registry
from sensorlib.rules.outlier import Z_MARGIN
from sensorlib.rules.silent import Silent

if TYPE_CHECKING:
    from sensorlib.engine.windows import SensorWindow

__all__ = ["ALL_RULES", "COLD_STORAGE", "FLEET", "LAYERED", "Z_MARGIN", "Detector", "RuleConfig",
           "SensorRules", "layer_settings", "utcnow"]

#: The built-in rules' names, as they appear in ``Alert.rule`` (on by default; the registry,
#: :func:`sensorlib.rules.registry`, lists every rule, those of other packages too).
ALL_RULES = frozenset({"threshold", "rate_of_change", "stuck", "silent", "outlier"})
#: The ``sensorId`` of a fleet alert (a storm of silences folded into one alert). Its
#: ``alertId`` also names the slot and the first sensor folded (see Detector.tick), so it
#: never equals the id of an alert of a sensor that happens to be called that.
FLEET = "*fleet*"
#: How many sensor ids a fleet alert's reason names.
FLEET_NAMED = 5



#: What a settings layer may change: the rules' own settings (not which rules are on, nor
#: the cooldown and the silent rule's timing, which the detector's deadlines share).
_FIXED = frozenset({"rules", "rule_settings", "per_sensor", "cooldown", "silent_after",
                    "silent_storm", "silent_storm_slot"})


#: The settings a layer may change (every RuleConfig field but :data:`_FIXED`): their type
#: and bounds (lowest, highest, whether the lowest itself is allowed; None: no bound).
_LAYERED: dict[str, tuple[type, float | None, float | None, bool]] = {
    "temperature_threshold": (float, -273.15, None, True),
    "humidity_threshold": (float, 0.0, 100.0, True),
    "rate_of_change": (float, 0.0, None, False),
    "rate_min_delta": (float, 0.0, None, True),
    "rate_min_span": (timedelta, 0.0, 86_400.0, False),
    "stuck_readings": (int, 2, 1_000_000, True),
    "outlier_z": (float, 0.0, None, False),
    "outlier_min_samples": (int, 2, 1_000_000, True),
    "outlier_min_std_temperature": (float, 0.0, None, False),
    "outlier_min_std_humidity": (float, 0.0, None, False),
}
#: The RuleConfig fields a settings layer may change, in RuleConfig's order.
LAYERED = tuple(_LAYERED)


def layer_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check and convert a settings layer's values (RuleConfig field -> value): the one
    validator of per-sensor settings, whether they come from code (:class:`SensorRules`),
    the ``sensor-rules`` topic, ``sensorlib rules set`` or ``PUT /api/rules``.

    Numbers may come as JSON numbers or as text (``"8"``, ``"8.5"``); ``rate_min_span`` as a
    :class:`~datetime.timedelta` or seconds. Returns the typed values.

    Raises:
        InvalidSetting: naming the first bad field and why (unknown, not settable per
            sensor, wrong type, out of range).
    """
    if not isinstance(values, Mapping):
        raise InvalidSetting("settings", "must be an object of RuleConfig field -> value")
    out: dict[str, Any] = {}
    for key, raw in values.items():
        if key in _FIXED:
            raise InvalidSetting(key, "cannot be set per sensor (the detector shares it)")
        if key not in _LAYERED:
            raise InvalidSetting(key, f"unknown setting; known: {', '.join(sorted(_LAYERED))}")
        kind, low, high, inclusive = _LAYERED[key]
        value = _number(key, raw, kind)
        seconds = value.total_seconds() if isinstance(value, timedelta) else value
        if low is not None and (seconds < low or (seconds == low and not inclusive)):
            raise InvalidSetting(key, f"must be {'at least' if inclusive else 'above'} {low:g} "
                                      f"(got {raw!r})")
        if high is not None and seconds > high:
            raise InvalidSetting(key, f"must be at most {high:g} (got {raw!r})")
        out[key] = value
    return out


def _number(key: str, raw: Any, kind: type) -> Any:
    """``raw`` as a value of ``kind`` (float, int or timedelta in seconds), or InvalidSetting
    (never another exception: a rules-topic record may hold anything)."""
    if kind is timedelta and isinstance(raw, timedelta):
        return raw
    what = {float: "a number", int: "a whole number", timedelta: "a number of seconds"}[kind]
    shown = _shown(raw)
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise InvalidSetting(key, f"must be {what} (got {shown})")
    try:
        number = float(raw)
    except (ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
        raise InvalidSetting(key, f"must be {what} (got {shown})") from None
    if not math.isfinite(number):
        raise InvalidSetting(key, f"must be a finite number (got {shown})")
    if kind is int:
        if number != int(number):
            raise InvalidSetting(key, f"must be a whole number (got {shown})")
        return int(number)
    if kind is timedelta:
        try:
            return timedelta(seconds=number)
        except OverflowError:
            raise InvalidSetting(key, f"must be at most {timedelta.max.total_seconds():g} "
                                      f"seconds (got {shown})") from None
    return number


@dataclass(frozen=True)
class SensorRules:
    """Rule settings for some sensors, layered over the defaults (``RuleConfig.per_sensor``).

    Matches a sensor by exactly one of: its ``sensor_id``, its ``location`` (of its first
    reading), or a shell-style ``glob`` of ids (``"freezer-*"``). ``settings``: RuleConfig
    field -> value (e.g. ``{"temperature_threshold": 8.0}``). When several layers match, the
    more specific wins field by field: location, then glob, then sensor id (and, among
    equals, the later one).

    >>> cold = SensorRules({"temperature_threshold": 8.0}, location="Cold Storage")
    >>> RuleConfig(per_sensor=(cold,)).for_sensor("s9", "Cold Storage").temperature_threshold
    8.0
    """

    settings: Mapping[str, Any]
    sensor_id: str | None = None
    location: str | None = None
    glob: str | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("sensor_id", "location", "glob") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError("a SensorRules matches by exactly one of sensor_id, location, glob "
                             f"(got {given or 'none'})")
        # The one validator (typed values; InvalidSetting naming the field).
        object.__setattr__(self, "settings", layer_settings(self.settings))

    @property
    def specificity(self) -> int:
        """1 location, 2 glob, 3 sensor id: the more specific layer wins."""
        return 3 if self.sensor_id is not None else 2 if self.glob is not None else 1

    def matches(self, sensor_id: str, location: str) -> bool:
        """Whether this layer applies to the sensor."""
        if self.sensor_id is not None:
            return sensor_id == self.sensor_id
        if self.location is not None:
            return location == self.location
        return fnmatchcase(sensor_id, self.glob or "")


#: The reference fleet's Cold Storage hovers at 5 °C: 35 °C (the server room's limit) would
#: never catch a failing cooler. 11 °C was chosen by the backtest (README "Backtest your
#: rules"): the simulated room wanders with an sd of 1.5 °C, so 8 °C (2σ) raised 43–49 false
#: alerts a day on it and 10 °C 1–3; 11 °C (4σ) 3 in three simulated weeks, every spike
#: still caught, and a warming cooler found an hour before 12 °C would at 1 °C/h.
COLD_STORAGE = SensorRules({"temperature_threshold": 11.0}, location="Cold Storage")


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
        rules: which rules are on (names in :func:`sensorlib.rules.registry`).
        per_sensor: settings layered per sensor id, location or glob of ids
            (:class:`SensorRules`); the default sets 8 °C for the reference fleet's Cold
            Storage. ``()``: the same settings for every sensor.
        rule_settings: the settings of rules that have no field here (a rule of another
            package, or one registered in a notebook): rule name -> its ``Settings``.

    Each built-in rule's settings are documented on its own ``Settings`` class
    (:mod:`sensorlib.rules`); these fields are their flat, backwards-compatible face.
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
    rule_settings: Mapping[str, Any] = field(default_factory=dict, hash=False)
    per_sensor: tuple[SensorRules, ...] = field(default=(COLD_STORAGE,), hash=False)

    def __post_init__(self) -> None:
        known = rule_registry()
        unknown = set(self.rules) - set(known)
        if unknown:
            raise ConfigError(f"unknown rules {sorted(unknown)}; known: {sorted(known)}")
        for cls in known.values():  # each rule's settings check themselves
            cls.settings_from(self)
        names = {f.name for f in fields(self)}
        for layer in self.per_sensor:  # and with each layer over them
            unknown = set(layer.settings) - names
            if unknown:
                raise ConfigError(f"per_sensor settings: unknown field(s) {sorted(unknown)}")
            layered = replace(self, per_sensor=(), **dict(layer.settings))
            for cls in known.values():
                cls.settings_from(layered)

    def for_sensor(self, sensor_id: str, location: str) -> RuleConfig:
        """The settings in force for one sensor: :attr:`per_sensor`'s matching layers over
        these (``self`` when none matches)."""
        layers = [layer for layer in self.per_sensor if layer.matches(sensor_id, location)]
        if not layers:
            return self
        merged: dict[str, Any] = {}
        for layer in sorted(layers, key=_SPECIFICITY):  # stable: later equals win
            merged.update(layer.settings)
        return replace(self, per_sensor=(), **merged)


class _Profile:
    """The rules in force for some sensors (one settings layer), and their dispatch lists."""

    __slots__ = ("checks", "config", "every", "moments_from", "names", "rules", "starts",
                 "window_checks")

    def __init__(self, config: RuleConfig) -> None:
        self.config = config
        self.rules: tuple[Rule[Any], ...] = tuple(
            cls(cls.settings_from(config)) for name, cls in rule_registry().items()
            if name in config.rules)
        # (place, rule's update, name) of the rules that judge in-order readings (all but
        # TICK), and of those that judge any reading in the window (not SEQUENCE).
        self.checks = [(i, rule.update, rule.name)
                       for i, rule in enumerate(self.rules) if rule.sees != TICK]
        self.window_checks = [(i, rule.update, rule.name) for i, rule in enumerate(self.rules)
                              if rule.sees in (EVERY, WINDOW)]
        self.every = [(rule.update, rule.name) for rule in self.rules if rule.sees == EVERY]
        self.starts = [rule.start for rule in self.rules]
        self.names = [rule.name for rule in self.rules]
        wanted = [rule.moments_from for rule in self.rules if rule.moments_from is not None]
        self.moments_from = min(wanted) if wanted else sys.maxsize


class _SensorState:
    """What the detector remembers about one sensor between readings: its newest reading,
    each rule's own state (by the rule's place in ``Detector.rules``), and its deadlines."""

    __slots__ = ("evict_key", "last", "last_us", "profile", "rules", "silence_key", "silenced")

    def __init__(self, reading: Reading, ts: int, profile: _Profile) -> None:
        self.last = reading  # the newest reading (by event time)
        self.last_us = ts
        self.profile = profile  # the sensor's settings layer, chosen at its first reading
        self.rules = [start(ts, reading.temperature, reading.humidity)
                      for start in profile.starts]
        # True while no silent alert is due: after one was raised for the current silence,
        # and before the sensor's second reading. A sensor is watched for silence once it
        # streams, so a one-off reading (a test POST, a back-dated import) never raises one.
        self.silenced = True
        # The key of this state's live entry in the Detector's silence / eviction heap.
        self.silence_key = self.evict_key = -1


class Detector:
    """Applies the rules to each reading of each sensor; remembers cooldowns and silences.

    The rules are the registered ones turned on in ``config.rules``
    (:mod:`sensorlib.rules`), in registry order; each judges the readings its ``sees``
    says. Call :meth:`observe` with a reading and its sensor's window *before* adding the
    reading to that window: the outlier rule compares the reading with what came before
    it, and lateness is judged as on arrival. (:class:`sensorlib.engine.pipeline.Pipeline` does
    this in the right order.) Late readings only feed the rules that see every reading (the
    threshold rule): they are real measurements worth an alert, but too old to say anything
    about rates, runs or silence. Out-of-order readings inside the window feed the rules of
    the window (threshold and outlier), not the ones about consecutive readings.

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
        self.clock = clock
        #: Stamped on each alert as ``rulesVersion`` (the version of the ``sensor-rules``
        #: table in force, :meth:`reconfigure`); None: settings given in code.
        self.version: str | None = None
        self._profiles: dict[RuleConfig, _Profile] = {}
        self._configure(config)
        self._sensors: dict[str, _SensorState] = {}
        self._cooldown_us = config.cooldown // timedelta(microseconds=1)
        self._silent_us = config.silent_after // timedelta(microseconds=1)
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
        #: When set, :meth:`observe_run` stamps ``detected_at`` with it, from the reading's
        #: event time (µs), instead of ``clock`` (a replay over columns, event-time clock).
        self.run_clock: Callable[[int], datetime] | None = None

    def _configure(self, config: RuleConfig) -> None:
        """Build the rule instances of ``config`` and of each of its layers."""
        self.config = config
        self._default = _Profile(config)
        #: The rules in force with the default settings, in the order one reading's alerts
        #: come (sensors matched by ``config.per_sensor`` have their own instances).
        self.rules: tuple[Rule[Any], ...] = self._default.rules
        # One profile per distinct layered configuration (RuleConfig.per_sensor).
        self._profiles = {}
        for layer in config.per_sensor:
            layered = replace(config, per_sensor=(), **dict(layer.settings))
            self._profiles.setdefault(layered, _Profile(layered))
        #: The window size from which some rule needs the window's moments (maxsize: never).
        self.moments_from: int = min(
            [self._default.moments_from, *(p.moments_from for p in self._profiles.values())])
        silent = [rule for rule in self.rules if isinstance(rule, Silent)]
        self._silent_rule = silent[0] if silent else None
        self._silent = bool(silent)

    def reconfigure(self, config: RuleConfig, version: str | None = None) -> list[str]:
        """Put new settings in force at once (a changed ``sensor-rules`` table): each known
        sensor's layer is chosen again (by its id and its newest reading's location) and its
        rules' state is kept: the same rules stay on in the same order (which rules are on,
        the cooldown and the silent rule's timing cannot change here), and their states hold
        what the readings were, not settings. Cooldowns and deadlines are kept too.

        ``version`` is stamped on the alerts raised from now on. Returns the ids of the
        sensors whose settings changed.

        Raises:
            ConfigError: ``config`` differs in a setting that cannot change live.
        """
        for name in sorted(_FIXED - {"per_sensor"}):
            if getattr(config, name) != getattr(self.config, name):
                raise ConfigError(f"{name} cannot change while the detector runs")
        self._configure(config)
        self.version = version
        changed = []
        for sensor_id, state in self._sensors.items():
            profile = self._profile_for(sensor_id, state.last.location)
            if profile.config != state.profile.config:
                changed.append(sensor_id)
            state.profile = profile
        return sorted(changed)

    # -- readings ---------------------------------------------------------------------

    def observe(self, reading: Reading, window: SensorWindow) -> list[Alert]:
        """The alerts one reading raises; call before adding it to ``window``.

        A convenience over :meth:`observe_us`, which takes the window's state as plain values.
        """
        ts = to_us(reading.timestamp)
        return self.observe_us(reading, ts, window.is_late_us(ts),
                               window.moments() if self.wants_moments(len(window)) else None)

    def wants_moments(self, count: int) -> bool:
        """Whether some rule needs the window's moments when it holds ``count`` readings."""
        return count >= self.moments_from

    def observe_us(self, reading: Reading, ts: int, late: bool,
                   moments: tuple[int, float, float, float, float] | None) -> list[Alert]:
        """The alerts one reading raises (hot path), from plain values: its event time in
        epoch µs, whether it is late for its window, and the window's moments before it
        (:meth:`sensorlib.engine.windows.SensorWindow.moments`; only when :meth:`wants_moments`)."""
        alerts: list[Alert] = []
        if late:
            known = self._sensors.get(reading.sensor_id)
            profile = known.profile if known is not None else self._profile_for(
                reading.sensor_id, reading.location)
            for update, name in profile.every:
                found = update(None, reading, ts, moments)
                if found is not None:
                    self._emit(alerts, reading, ts, name, found.severity, found.reason)
            return alerts
        state = self._sensors.get(reading.sensor_id)
        if state is None:
            state = self._sensors[reading.sensor_id] = _SensorState(
                reading, ts, self._profile_for(reading.sensor_id, reading.location))
            if self._evict_us is not None:
                state.evict_key = key = ts + self._evict_us
                heapq.heappush(self._evictions, (key, next(self._seq), state))
            in_order = False
        else:
            in_order = ts > state.last_us
        states = state.rules
        profile = state.profile
        for i, update, name in profile.checks if in_order else profile.window_checks:
            found = update(states[i], reading, ts, moments)
            if found is not None:
                self._emit(alerts, reading, ts, name, found.severity, found.reason)
        if in_order:
            state.last, state.last_us = reading, ts
            if state.silenced:
                self._arm(state)
        return alerts

    def _profile_for(self, sensor_id: str, location: str) -> _Profile:
        """The settings layer of a sensor (``RuleConfig.per_sensor``)."""
        if not self._profiles:
            return self._default
        layered = self.config.for_sensor(sensor_id, location)
        if layered is self.config:
            return self._default
        profile = self._profiles.get(layered)
        if profile is None:  # several layers at once: a combination of its own
            profile = self._profiles[layered] = _Profile(layered)
        return profile

    @property
    def warmup(self) -> timedelta | None:
        """The longest history a rule in force (with any settings layer) asks a restarted
        processor to replay (:attr:`Rule.warmup <sensorlib.rules.Rule.warmup>`), or None."""
        asked = [rule.warmup for profile in (self._default, *self._profiles.values())
                 for rule in profile.rules if rule.warmup is not None]
        return max(asked, default=None)

    def settings_for(self, sensor_id: str, location: str = "") -> RuleConfig:
        """The settings in force for a sensor: the one it was first seen with, else what a
        first reading from ``location`` would get (``RuleConfig.for_sensor``)."""
        state = self._sensors.get(sensor_id)
        if state is not None:
            return state.profile.config
        return self.config.for_sensor(sensor_id, location)

    def last_us(self, sensor_id: str) -> int | None:
        """The event time (µs) of the sensor's newest reading, None if it is not known."""
        state = self._sensors.get(sensor_id)
        return None if state is None else state.last_us

    def observe_run(self, sensor_id: str, run: Run, reading_at: Callable[[int], Reading]
                    ) -> list[tuple[int, list[Alert]]] | None:
        """The alerts of an in-order run of a known sensor's readings (all newer than its
        last one and its window's end), through each rule's columnar check
        (:meth:`sensorlib.rules.Rule.update_many`): ``(position, alerts)`` of the readings
        that raised some, and the state as :meth:`observe_us` reading by reading would leave
        it. ``reading_at(j)`` gives the run's j-th reading (only those that alert, and the
        last). None, with nothing changed, when the sensor is unknown or a rule declines."""
        state = self._sensors.get(sensor_id)
        if state is None or int(run.ts[0]) <= state.last_us:
            return None
        states = state.rules
        after = list(states)
        pending: list[tuple[int, int, Finding]] = []
        profile = state.profile
        for i, rule in enumerate(profile.rules):
            if rule.sees is TICK:
                continue
            done = rule.update_many(states[i], run)
            if done is None:
                return None
            found, after[i] = done
            pending.extend((j, i, f) for j, f in found)
        pending.sort(key=_POSITION_RULE)
        raised: list[tuple[int, list[Alert]]] = []
        names = profile.names
        ts = run.ts
        held = self._held
        stamp = self.run_clock
        for j, group in groupby(pending, key=_POSITION):
            at = int(ts[j])
            alerts: list[Alert] = []
            reading = None
            for _, i, f in group:
                if held(sensor_id, names[i], at):
                    continue
                if reading is None:  # made only for the readings that do alert
                    reading = reading_at(j)
                alerts.append(self._alert(reading, names[i], f.severity, f.reason,  # type: ignore[arg-type]
                                          None if stamp is None else stamp(at)))
            if alerts:
                raised.append((j, alerts))
        state.rules = after
        state.last, state.last_us = reading_at(len(ts) - 1), int(ts[-1])
        if state.silenced:
            self._arm(state)
        return raised

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
        rule = self._silent_rule
        assert rule is not None
        for state in single:
            found = rule.finding(now_us - state.last_us)
            self._emit(alerts, state.last, now_us, rule.name, found.severity, found.reason)
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
        newest = folded[-1][2]
        assert self._silent_rule is not None
        found = self._silent_rule.fleet_finding(len(folded), names, start)
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
            severity=found.severity,
            reason=found.reason,
            rules_version=self.version,
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

    def next_fold(self) -> int | None:
        """The time (µs) after which a tick raises a held fleet alert (a storm's slot ends),
        or None when none is held."""
        return (min(self._folded) + 1) * self._slot_us - 1 if self._folded else None

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
        for rule in self.rules:
            last_alert.pop((sensor_id, rule.name), None)

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
        if self._held(r.sensor_id, rule, at):
            return
        alerts.append(self._alert(r, rule, severity, reason))

    def _held(self, sensor_id: str, rule: str, at: int) -> bool:
        """Whether the (sensor, rule) cooldown around ``at`` holds an alert back; if not,
        the alert at ``at`` is recorded as raised."""
        key = (sensor_id, rule)
        last = self._last_alert.get(key)
        cd = self._cooldown_us
        if last is not None and last - cd < at < last + cd:
            return True
        self._last_alert[key] = at if last is None else max(last, at)
        return False

    def _alert(self, r: Reading, rule: str, severity: Severity, reason: str,
               detected_at: datetime | None = None) -> Alert:
        if detected_at is not None:  # run_clock's: the values are the detector's own, valid
            return new_alert(alert_id(r.sensor_id, rule, r.timestamp), r.sensor_id, r.location,
                             r.temperature, r.humidity, r.timestamp, detected_at, rule,
                             severity, reason, self.version)
        return Alert(
            alert_id=alert_id(r.sensor_id, rule, r.timestamp),
            sensor_id=r.sensor_id,
            location=r.location,
            temperature=r.temperature,
            humidity=r.humidity,
            timestamp=r.timestamp,
            detected_at=self.clock() if detected_at is None else detected_at,
            rule=rule,
            severity=severity,
            reason=reason,
            rules_version=self.version,
        )


def _due_order(entry: tuple[int, str, _SensorState]) -> tuple[int, str]:
    return entry[0], entry[1]


def _state_sensor(state: _SensorState) -> str:
    return state.last.sensor_id


def _folded_time(entry: tuple[int, str, Reading]) -> tuple[int, str]:
    return entry[0], entry[1]


_DUE_ORDER, _STATE_SENSOR, _FOLDED_TIME = _due_order, _state_sensor, _folded_time
_POSITION_RULE, _POSITION = itemgetter(0, 1), itemgetter(0)
_SPECIFICITY = attrgetter("specificity")
