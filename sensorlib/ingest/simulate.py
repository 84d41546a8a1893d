"""The simulated sensor fleet: realistic drift and noise, plus injected faults, seedable."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sensorlib.errors import UsageError
from sensorlib.model.events import Reading, new_reading

__all__ = ["REFERENCE_FLEET", "FaultRates", "SensorSpec", "Simulator"]


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One simulated sensor: where it is and the values it hovers around."""

    sensor_id: str
    location: str
    base_temperature: float
    base_humidity: float


#: The reference sample's five sensors.
REFERENCE_FLEET: tuple[SensorSpec, ...] = (
    SensorSpec("sensor-01", "Warehouse A", 22.0, 55.0),
    SensorSpec("sensor-02", "Warehouse B", 24.0, 60.0),
    SensorSpec("sensor-03", "Cold Storage", 5.0, 70.0),
    SensorSpec("sensor-04", "Server Room", 20.0, 45.0),
    SensorSpec("sensor-05", "Production Floor", 28.0, 65.0),
)


@dataclass(frozen=True, slots=True)
class FaultRates:
    """How often each sensor misbehaves: a probability per reading, and how long for.

    The defaults make a demo lively: the reference fleet at one reading per sensor
    every 2 s shows a spike, a stuck sensor and a silent one within a few minutes.

    Attributes:
        spike: chance a reading starts a spike (temperature 38–50 °C, sometimes
            humidity 91–99 % as well) lasting ``spike_readings`` readings.
        stuck: chance the sensor freezes, repeating its last values exactly for
            ``stuck_readings`` readings.
        silent: chance the sensor stops sending for ``silent_seconds`` seconds.
    """

    spike: float = 0.003
    stuck: float = 0.0015
    silent: float = 0.0015
    spike_readings: tuple[int, int] = (1, 3)
    stuck_readings: tuple[int, int] = (15, 40)
    silent_seconds: tuple[float, float] = (40.0, 120.0)

    @classmethod
    def none(cls) -> FaultRates:
        """A fleet that never misbehaves (drift and noise only)."""
        return cls(spike=0.0, stuck=0.0, silent=0.0)


# Drift: an Ornstein–Uhlenbeck process around the base value, so readings wander
# like a real room (minutes-long swings) yet never run away; plus a little
# measurement noise. Values are rounded to 0.01 like the sample's producer.
_REVERSION_SECONDS = 300.0
_TEMPERATURE_SD = 1.5
_HUMIDITY_SD = 3.0
_NOISE_SD = 0.05

_OK, _SPIKE, _STUCK, _SILENT = 0, 1, 2, 3


class _Sensor:
    __slots__ = ("humidity", "last", "left", "mode", "spec", "temperature", "until")

    def __init__(self, spec: SensorSpec) -> None:
        self.spec = spec
        self.temperature = spec.base_temperature
        self.humidity = spec.base_humidity
        self.mode = _OK
        self.left = 0  # readings left in a spike or a stuck episode
        self.until = 0.0  # simulated seconds when a silence ends
        self.last = (spec.base_temperature, spec.base_humidity)


class Simulator:
    """A seedable fleet of sensors that drift, add noise and sometimes fail.

    Event time is simulated: ``stream`` advances it by ``interval`` per tick and never
    sleeps (pacing is the caller's job); ``readings_at`` takes the tick time from you
    (the live producer passes the wall clock).

    >>> sim = Simulator(seed=1, start=datetime(2026, 1, 1, tzinfo=UTC))
    >>> [r.sensor_id for r in sim.stream(count=3)]
    ['sensor-01', 'sensor-02', 'sensor-03']
    >>> a, b = Simulator(seed=7), Simulator(seed=7)
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> a.readings_at(t) == b.readings_at(t)
    True
    """

    def __init__(
        self,
        fleet: Sequence[SensorSpec] = REFERENCE_FLEET,
        *,
        seed: int | None = None,
        faults: FaultRates = FaultRates(),
        interval: float = 2.0,
        start: datetime | None = None,
    ) -> None:
        if interval <= 0:
            raise UsageError(f"interval must be positive (got {interval})")
        self.fleet = tuple(fleet)
        self.faults = faults
        self.interval = interval
        self.start = (start or datetime.now(UTC)).astimezone(UTC)
        self._random = random.Random(seed)
        self._sensors = [_Sensor(spec) for spec in self.fleet]
        self._ticks = 0  # ticks done by stream(), which sets its own clock
        self._clock: float | None = None  # seconds since start of the previous tick

    def readings_at(self, t: datetime) -> list[Reading]:
        """One tick of the fleet at event time ``t`` (silent sensors are left out)."""
        t = t.astimezone(UTC)
        now = (t - self.start).total_seconds()
        dt = self.interval if self._clock is None else max(0.0, now - self._clock)
        self._clock = now
        # Exact OU step: the stationary spread is the same at any tick interval.
        keep = math.exp(-dt / _REVERSION_SECONDS)
        shake = math.sqrt(1.0 - keep * keep)
        return [r for s in self._sensors
                if (r := self._read(s, now, keep, shake, t)) is not None]

    def stream(self, count: int | None = None, duration: float | None = None) -> Iterator[Reading]:
        """Readings tick after tick, ``interval`` seconds of event time apart.

        Stops after ``count`` readings or ``duration`` simulated seconds (from where the
        previous ``stream`` left off), whichever comes first; endless if neither.
        """
        emitted = 0
        first = self._ticks
        step = timedelta(seconds=self.interval)
        while duration is None or (self._ticks - first) * self.interval < duration:
            t = self.start + step * self._ticks
            self._ticks += 1
            for reading in self.readings_at(t):
                if count is not None and emitted >= count:
                    return
                emitted += 1
                yield reading
            if count is not None and emitted >= count:
                return

    # -- one sensor, one tick --------------------------------------------------------

    def ticks_for(self, count: int) -> int:
        """How many ticks :meth:`stream` needs to emit ``count`` readings from here.

        Runs the same random draws on a copy (silent sensors skip readings, so it is
        not simply ``count / len(fleet)``); this simulator is left untouched. A
        back-fill uses it to make its last reading fall exactly on its end time.
        """
        probe = copy.deepcopy(self)
        step = timedelta(seconds=probe.interval)
        emitted = ticks = 0
        while emitted < count:
            now = (step * probe._ticks).total_seconds()
            probe._ticks += 1
            ticks += 1
            dt = probe.interval if probe._clock is None else max(0.0, now - probe._clock)
            probe._clock = now
            keep = math.exp(-dt / _REVERSION_SECONDS)
            shake = math.sqrt(1.0 - keep * keep)
            emitted += sum(probe._step(s, now, keep, shake) is not None for s in probe._sensors)
        return ticks

    def _read(self, s: _Sensor, now: float, keep: float, shake: float,
              t: datetime) -> Reading | None:
        values = self._step(s, now, keep, shake)
        if values is None:
            return None
        return new_reading(s.spec.sensor_id, values[0], values[1], s.spec.location, t)

    def _step(self, s: _Sensor, now: float, keep: float, shake: float
              ) -> tuple[float, float] | None:
        """Advance one sensor one tick: its values, or None while it is silent."""
        self._drift(s, keep, shake)
        if s.mode == _SILENT:
            if now < s.until:
                return None
            s.mode = _OK
        if s.mode == _OK:
            self._maybe_fail(s, now)
            if s.mode == _SILENT:
                return None
        temperature, humidity = self._values(s)
        s.last = (temperature, humidity)
        return temperature, humidity

    def _drift(self, s: _Sensor, keep: float, shake: float) -> None:
        gauss = self._random.gauss
        base = s.spec
        s.temperature = base.base_temperature + (s.temperature - base.base_temperature) * keep \
            + _TEMPERATURE_SD * shake * gauss()
        s.humidity = base.base_humidity + (s.humidity - base.base_humidity) * keep \
            + _HUMIDITY_SD * shake * gauss()

    def _maybe_fail(self, s: _Sensor, now: float) -> None:
        f, rnd = self.faults, self._random
        u = rnd.random()
        if u < f.spike:
            s.mode, s.left = _SPIKE, rnd.randint(*f.spike_readings)
        elif u < f.spike + f.stuck:
            s.mode, s.left = _STUCK, rnd.randint(*f.stuck_readings)
        elif u < f.spike + f.stuck + f.silent:
            s.mode, s.until = _SILENT, now + rnd.uniform(*f.silent_seconds)

    def _values(self, s: _Sensor) -> tuple[float, float]:
        if s.mode == _STUCK:
            s.left -= 1
            if s.left <= 0:
                s.mode = _OK
            return s.last
        rnd = self._random
        temperature = s.temperature + rnd.gauss(0.0, _NOISE_SD)
        humidity = s.humidity + rnd.gauss(0.0, _NOISE_SD)
        if s.mode == _SPIKE:
            s.left -= 1
            if s.left <= 0:
                s.mode = _OK
            temperature = rnd.uniform(38.0, 50.0)
            if rnd.random() < 0.5:
                humidity = rnd.uniform(91.0, 99.0)
        return round(temperature, 2), round(min(100.0, max(0.0, humidity)), 2)
