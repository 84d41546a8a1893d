"""The simulated sensor fleet: realistic drift and noise, plus injected faults, seedable.

Every fault the simulator injects is recorded as a :class:`FaultLabel` (kind, sensor, start
and end in event time) in :attr:`Simulator.labels`, so that rules can be scored against
known faults (:func:`sensorlib.notebook.backtest.backtest`).
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sensorlib.errors import UsageError
from sensorlib.model.events import Reading, new_reading

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FAULT_KINDS", "REFERENCE_FLEET", "FaultLabel", "FaultRates", "SensorSpec",
           "Simulator", "labels_to_frame"]

#: The kinds of fault the simulator injects, as in :attr:`FaultLabel.kind`.
FAULT_KINDS = ("spike", "stuck", "silent", "drift")


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
        drift: chance per tick that a sensor's calibration starts to drift: its
            temperature creeps away from the truth by ``drift_per_hour`` °C per hour
            (either way) for ``drift_seconds``, then snaps back (recalibrated). Rare
            (the default: about one drift per sensor per two weeks at one reading every
            2 s) and slow, so no threshold catches it early. Drawn from a random stream of
            its own, so that turning it on or off leaves every other value of a seeded
            fleet unchanged outside the drifting spells.
    """

    spike: float = 0.003
    stuck: float = 0.0015
    silent: float = 0.0015
    spike_readings: tuple[int, int] = (1, 3)
    stuck_readings: tuple[int, int] = (15, 40)
    silent_seconds: tuple[float, float] = (40.0, 120.0)
    drift: float = 1.5e-6
    drift_per_hour: tuple[float, float] = (0.5, 3.0)
    drift_seconds: tuple[float, float] = (2 * 3600.0, 8 * 3600.0)

    @classmethod
    def none(cls) -> FaultRates:
        """A fleet that never misbehaves (natural wander and noise only)."""
        return cls(spike=0.0, stuck=0.0, silent=0.0, drift=0.0)


@dataclass(frozen=True, slots=True)
class FaultLabel:
    """One injected fault, for scoring rules against (a backtest).

    Attributes:
        kind: ``spike``, ``stuck``, ``silent`` or ``drift`` (:data:`FAULT_KINDS`).
        sensor_id: the sensor at fault.
        start: event time of the first faulty reading (``silent``: the tick when the
            sensor fell silent; ``drift``: when the creep began).
        end: event time of the last faulty reading (``silent``: when the sensor may
            speak again; ``drift``: when it snaps back; both planned at the start, so they
            may lie after the end of the simulation). A spike or stuck spell still going on
            when the simulation stopped ends at its last reading so far.
        detail: what it was: ``drift`` its rate in °C per hour (signed), ``spike`` and
            ``stuck`` the readings planned, ``silent`` the seconds planned.
    """

    kind: str
    sensor_id: str
    start: datetime
    end: datetime
    detail: float = 0.0

    def to_json(self) -> bytes:
        """The label as it travels on the ``sensor-faults`` topic (keyed by sensor id):
        ``{"kind", "sensorId", "start", "end", "detail"}``, times in ISO 8601 UTC.

        >>> FaultLabel("spike", "s1", datetime(2026, 1, 1, tzinfo=UTC),
        ...            datetime(2026, 1, 1, 0, 0, 4, tzinfo=UTC), 3).to_json()
        b'{"kind":"spike","sensorId":"s1","start":"2026-01-01T00:00:00+00:00","end":"2026-01-01T00:00:04+00:00","detail":3}'
        """
        return json.dumps({"kind": self.kind, "sensorId": self.sensor_id,
                           "start": self.start.isoformat(), "end": self.end.isoformat(),
                           "detail": self.detail}, separators=(",", ":")).encode()


def labels_to_frame(labels: Sequence[FaultLabel]) -> pd.DataFrame:
    """Fault labels as a DataFrame: ``kind``, ``sensorId``, ``start``, ``end``, ``detail``."""
    import pandas as pd

    frame = pd.DataFrame({
        "kind": pd.Series([f.kind for f in labels], dtype="str"),
        "sensorId": pd.Series([f.sensor_id for f in labels], dtype="str"),
        "start": pd.Series([f.start for f in labels], dtype="datetime64[us, UTC]"),
        "end": pd.Series([f.end for f in labels], dtype="datetime64[us, UTC]"),
        "detail": pd.Series([f.detail for f in labels], dtype="float64"),
    })
    return frame


# Drift: an Ornstein–Uhlenbeck process around the base value, so readings wander
# like a real room (minutes-long swings) yet never run away; plus a little
# measurement noise. Values are rounded to 0.01 like the sample's producer.
_REVERSION_SECONDS = 300.0
_TEMPERATURE_SD = 1.5
_HUMIDITY_SD = 3.0
_NOISE_SD = 0.05

_OK, _SPIKE, _STUCK, _SILENT = 0, 1, 2, 3


class _Sensor:
    __slots__ = ("drift_rate", "drift_since", "drift_until", "humidity", "label", "last",
                 "left", "mode", "spec", "temperature", "until")

    def __init__(self, spec: SensorSpec) -> None:
        self.spec = spec
        self.temperature = spec.base_temperature
        self.humidity = spec.base_humidity
        self.mode = _OK
        self.left = 0  # readings left in a spike or a stuck episode
        self.until = 0.0  # simulated seconds when a silence ends
        self.last = (spec.base_temperature, spec.base_humidity)
        self.label = -1  # index in Simulator.labels of the spike/stuck/silent going on
        self.drift_rate = 0.0  # °C per second while drifting
        self.drift_since = 0.0
        self.drift_until = -1.0  # simulated seconds when a drift ends; < 0: no drift


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

    #: At most this many labels are kept (:attr:`labels`): past it, the older half goes.
    MAX_LABELS = 100_000

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
        # Drift has a stream of its own: the other values of a seed do not depend on it.
        self._drift_random = random.Random(None if seed is None else f"{seed}/drift")
        #: Every fault injected so far, in order of start (see :class:`FaultLabel`); the
        #: newest :attr:`MAX_LABELS` only, so that a fleet simulated for months (the
        #: producer service) does not grow without bound.
        self.labels: list[FaultLabel] = []
        self._dropped = 0  # labels dropped from the front of self.labels
        self._settled = 0  # labels handed out by settled_labels (counting dropped ones)
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

    def frame(self, duration: float) -> pd.DataFrame:
        """:meth:`stream`'s readings over ``duration`` simulated seconds as a DataFrame
        (``sensorId``, ``temperature``, ``humidity``, ``location``, ``timestamp``): the same
        values, made without a :class:`Reading` per row (a week of the reference fleet
        in seconds). Carries on from, and advances, the same clock as :meth:`stream`.
        """
        import numpy as np
        import pandas as pd

        ids: list[int] = []
        temperatures: list[float] = []
        humidities: list[float] = []
        ticks: list[int] = []
        first = self._ticks
        while (self._ticks - first) * self.interval < duration:
            now = (timedelta(seconds=self.interval) * self._ticks).total_seconds()
            dt = self.interval if self._clock is None else max(0.0, now - self._clock)
            self._clock = now
            keep = math.exp(-dt / _REVERSION_SECONDS)
            shake = math.sqrt(1.0 - keep * keep)
            for i, s in enumerate(self._sensors):
                values = self._step(s, now, keep, shake)
                if values is not None:
                    ids.append(i)
                    temperatures.append(values[0])
                    humidities.append(values[1])
                    ticks.append(self._ticks)
            self._ticks += 1
        which = np.asarray(ids, dtype=np.int64)
        step_us = round(self.interval * 1_000_000)
        stamps = pd.Timestamp(self.start) + pd.to_timedelta(
            np.asarray(ticks, dtype=np.int64) * step_us, unit="us")
        return pd.DataFrame({
            "sensorId": pd.Categorical.from_codes(which, [s.sensor_id for s in self.fleet]),
            "temperature": np.asarray(temperatures, dtype=np.float64),
            "humidity": np.asarray(humidities, dtype=np.float64),
            "location": pd.Categorical.from_codes(which, [s.location for s in self.fleet]),
            "timestamp": pd.DatetimeIndex(stamps).as_unit("us"),
        })

    def settled_labels(self, *, final: bool = False) -> list[FaultLabel]:
        """The labels not handed out yet whose spans are known, in order of start (what a
        publisher sends on; each label is handed out once).

        A spike or stuck spell's end is known only once it is over: the labels from the
        first spell still going on wait for a later call. ``final`` (the simulation ends):
        all of them, a spell going on ending at its last reading so far. Labels dropped
        past :attr:`MAX_LABELS` before they were handed out are not.
        """
        first = max(self._settled, self._dropped)
        stop = self._dropped + len(self.labels)
        if not final:
            going = [s.label for s in self._sensors if s.mode in (_SPIKE, _STUCK) and s.label >= 0]
            stop = min([stop, *going])
        if stop <= first:
            return []
        self._settled = stop
        return self.labels[first - self._dropped:stop - self._dropped]

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
        self._calibration(s, now)
        if s.mode == _SILENT:
            if now < s.until:
                return None
            s.mode, s.label = _OK, -1
        if s.mode == _OK:
            self._maybe_fail(s, now)
            if s.mode == _SILENT:
                return None
        temperature, humidity = self._values(s, now)
        s.last = (temperature, humidity)
        return temperature, humidity

    def _drift(self, s: _Sensor, keep: float, shake: float) -> None:
        gauss = self._random.gauss
        base = s.spec
        s.temperature = base.base_temperature + (s.temperature - base.base_temperature) * keep \
            + _TEMPERATURE_SD * shake * gauss()
        s.humidity = base.base_humidity + (s.humidity - base.base_humidity) * keep \
            + _HUMIDITY_SD * shake * gauss()

    def _at(self, now: float) -> datetime:
        return self.start + timedelta(seconds=now)

    def _label(self, s: _Sensor, kind: str, now: float, end: float, detail: float) -> int:
        """Record a fault; returns its number (its index, counting dropped labels too)."""
        labels = self.labels
        if len(labels) >= self.MAX_LABELS:
            half = len(labels) // 2
            del labels[:half]
            self._dropped += half
        labels.append(FaultLabel(kind, s.spec.sensor_id, self._at(now), self._at(end), detail))
        return self._dropped + len(labels) - 1

    def _calibration(self, s: _Sensor, now: float) -> None:
        """The slow calibration drift, on its own random stream (see FaultRates.drift)."""
        if s.drift_until >= 0.0:
            if now >= s.drift_until:  # recalibrated: back to the truth at once
                s.drift_until, s.drift_rate = -1.0, 0.0
            return
        f = self.faults
        if f.drift <= 0.0:
            return
        rnd = self._drift_random
        if rnd.random() < f.drift:
            per_hour = rnd.uniform(*f.drift_per_hour) * (1.0 if rnd.random() < 0.5 else -1.0)
            s.drift_rate, s.drift_since = per_hour / 3600.0, now
            s.drift_until = now + rnd.uniform(*f.drift_seconds)
            self._label(s, "drift", now, s.drift_until, round(per_hour, 3))

    def _maybe_fail(self, s: _Sensor, now: float) -> None:
        f, rnd = self.faults, self._random
        u = rnd.random()
        if u < f.spike:
            s.mode, s.left = _SPIKE, rnd.randint(*f.spike_readings)
            s.label = self._label(s, "spike", now, now, s.left)
        elif u < f.spike + f.stuck:
            s.mode, s.left = _STUCK, rnd.randint(*f.stuck_readings)
            s.label = self._label(s, "stuck", now, now, s.left)
        elif u < f.spike + f.stuck + f.silent:
            seconds = rnd.uniform(*f.silent_seconds)
            s.mode, s.until = _SILENT, now + seconds
            s.label = self._label(s, "silent", now, s.until, round(seconds, 3))

    def _extend(self, s: _Sensor, now: float) -> None:
        """The spike or stuck spell going on lasts at least until ``now``."""
        i = s.label - self._dropped
        if i >= 0:  # else dropped already (MAX_LABELS)
            self.labels[i] = replace(self.labels[i], end=self._at(now))

    def _values(self, s: _Sensor, now: float) -> tuple[float, float]:
        if s.mode == _STUCK:
            self._extend(s, now)
            s.left -= 1
            if s.left <= 0:
                s.mode, s.label = _OK, -1
            return s.last
        rnd = self._random
        temperature = s.temperature + rnd.gauss(0.0, _NOISE_SD)
        humidity = s.humidity + rnd.gauss(0.0, _NOISE_SD)
        if s.mode == _SPIKE:
            self._extend(s, now)
            s.left -= 1
            if s.left <= 0:
                s.mode, s.label = _OK, -1
            temperature = rnd.uniform(38.0, 50.0)
            if rnd.random() < 0.5:
                humidity = rnd.uniform(91.0, 99.0)
        elif s.drift_until >= 0.0:
            temperature += s.drift_rate * (now - s.drift_since)
        return round(temperature, 2), round(min(100.0, max(0.0, humidity)), 2)
