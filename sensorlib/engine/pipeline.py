"""Windows and rules together: one reading in, alerts out; live, or over a pandas DataFrame.

Offline and live agree because everything runs on event time. A replay
(:meth:`Pipeline.replay`, :func:`run_frame`) processes readings in order and calls
:meth:`Pipeline.tick` at every multiple of ``tick_every`` (counted from the Unix epoch)
that the event-time watermark — the largest timestamp seen so far, across sensors —
passes, just before the reading that passes it. A live processor that ticks with its
event-time watermark raises the same silent alerts with the same ids (a silent alert's id
comes from the sensor's last reading, not from the tick).

Per-sensor state is bounded (an attacker may send any number of sensor ids):

- at most ``max_sensors`` distinct sensors are held (``SENSORLIB_MAX_SENSORS``); a reading of
  one more is refused with :class:`TooManySensors` (an ``InvalidReading`` on ``sensorId``,
  which the processor dead-letters) until silent ones are evicted;
- a sensor that has sent nothing newer for ``evict_after`` of event time (default: the
  window plus ``silent_after``, at least the cooldown plus ``silent_after``) is evicted at
  the next tick, after its silent alert: its window, rule state and cooldowns are freed
  and it leaves :meth:`Pipeline.aggregates`. A reading that comes later (or any reading
  more than ``evict_after`` newer than the sensor's last one, whether a tick evicted it or
  not) starts it afresh, as a new sensor: empty window, no late count, stuck and rate
  rules from scratch, watched for silence from its second reading;
- a storm of silences is folded into one fleet alert (``RuleConfig.silent_storm``);
- a tick costs what falls due (deadline heaps), never the number of sensors seen.

Live and offline agree on all of it, since every deadline is in event time; the one
difference left is the processor's own: live ticks follow the wall clock, so a sensor
whose readings arrive more than ``evict_after`` behind the others may be evicted live at a
different moment than in a replay, and near the cap that can decide a refusal differently.
"""

from __future__ import annotations

import heapq
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sensorlib.engine.detect import Detector, RuleConfig, utcnow
from sensorlib.engine.runs import MIN_RUN, process_run
from sensorlib.engine.windows import (
    DEFAULT_WINDOW,
    Aggregate,
    SensorWindow,
    WindowStore,
    from_us,
    to_us,
)
from sensorlib.errors import UsageError
from sensorlib.model.events import Alert, Reading, new_reading, parse_reading
from sensorlib.model.rejections import FieldError, InvalidReading

if TYPE_CHECKING:  # pandas is imported by the DataFrame functions: the processor needs none
    import pandas as pd

__all__ = [
    "DEFAULT_MAX_SENSORS",
    "DEFAULT_TICK",
    "Pipeline",
    "PipelineStats",
    "TooManySensors",
    "aggregates_to_frame",
    "alerts_to_frame",
    "readings_frame_to_records",
    "run_frame",
    "run_frame_variants",
]

#: How often replays tick the silence rule, in event time.
DEFAULT_TICK = timedelta(seconds=10)
#: Distinct sensors a pipeline holds at most (``SENSORLIB_MAX_SENSORS``'s default).
DEFAULT_MAX_SENSORS = 10_000
_US = timedelta(microseconds=1)


class TooManySensors(InvalidReading):
    """A reading of a new sensor while the pipeline already holds ``max_sensors``.

    An :class:`~sensorlib.model.rejections.InvalidReading` on ``sensorId``: dead-lettered with the reason
    ``sensorId: more than N distinct sensors (SENSORLIB_MAX_SENSORS)``.
    """

    def __init__(self, limit: int) -> None:
        super().__init__([FieldError(
            "sensorId", f"more than {limit:,} distinct sensors (SENSORLIB_MAX_SENSORS)")])
        self.limit = limit


@dataclass
class PipelineStats:
    """Counters: readings processed (and how many were late), alerts raised by rule,
    readings refused (a new sensor beyond ``max_sensors``), sensors evicted (silent)."""

    processed: int = 0
    late: int = 0
    warmed: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    evicted: int = 0


class Pipeline:
    """Per-sensor windows plus the anomaly rules, driven one reading at a time.

    Args:
        window: length of each sensor's event-time window.
        rules: the rule configuration.
        clock: gives each alert's ``detected_at``: the wall clock by default, or
            ``"event"`` for the event time being processed (deterministic replays).
        max_sensors: distinct sensors held at most; a reading of one more is refused
            (:class:`TooManySensors`). None: no limit.
        evict_after: a sensor silent this long (event time) is evicted at the next tick;
            default ``max(window, rules.cooldown) + rules.silent_after``. None: never.

    Refusals: :meth:`process` and :meth:`process_us` raise :class:`TooManySensors`;
    :meth:`process_batch_us` leaves the reading out and lists it in :attr:`refused`;
    :meth:`replay` and :meth:`warm` skip it. All count it in ``stats.refused``.

    >>> from datetime import UTC
    >>> p = Pipeline()
    >>> r = Reading(sensor_id="s1", temperature=36.0, humidity=50.0,
    ...             timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    >>> [a.reason for a in p.process(r)], p.aggregates()[0].count
    (['High temperature: 36.0°C'], 1)
    """

    def __init__(
        self,
        window: timedelta = DEFAULT_WINDOW,
        rules: RuleConfig = RuleConfig(),  # noqa: B008 - frozen, safe as a default
        clock: Callable[[], datetime] | Literal["event"] = utcnow,
        *,
        max_sensors: int | None = DEFAULT_MAX_SENSORS,
        evict_after: timedelta | None | Literal["default"] = "default",
    ) -> None:
        if max_sensors is not None and max_sensors < 1:
            raise UsageError(f"max_sensors must be at least 1 or None (got {max_sensors})")
        if evict_after == "default":
            evict_after = max(window, rules.cooldown) + rules.silent_after
        self.windows = WindowStore(window)
        self._windows = self.windows._windows  # hot path: the dict itself
        self.detector = Detector(rules, clock=self._event_time if clock == "event" else clock,
                                 evict_after=evict_after)
        self.stats = PipelineStats()
        self.max_sensors = max_sensors
        self.evict_after = evict_after
        # A reading this much newer than its sensor's last one starts it afresh (see expire).
        self._evict_us = sys.maxsize if evict_after is None else evict_after // _US
        #: ``(index in batch, TooManySensors)`` of each reading the last
        #: :meth:`process_batch_us` refused, in batch order.
        self.refused: list[tuple[int, TooManySensors]] = []
        # Window size from which some rule needs the window's moments.
        self._moments_from = self.detector.moments_from
        self._watermark: int | None = None  # largest event time seen, any sensor
        self._event_us = 0  # the event time being processed, for clock="event"

    @property
    def rules(self) -> RuleConfig:
        """The rule configuration in force."""
        return self.detector.config

    def reconfigure(self, rules: RuleConfig, version: str | None = None) -> list[str]:
        """Put new rule settings in force at once, keeping windows and rule state
        (:meth:`Detector.reconfigure <sensorlib.engine.detect.Detector.reconfigure>`);
        ``version`` is stamped on later alerts. Returns the sensors whose settings changed."""
        changed = self.detector.reconfigure(rules, version)
        self._moments_from = self.detector.moments_from
        return changed

    @property
    def watermark(self) -> datetime | None:
        """The largest event time processed so far, across all sensors."""
        return None if self._watermark is None else from_us(self._watermark)

    def process(self, reading: Reading) -> list[Alert]:
        """Add one reading to its window and return the alerts it raises."""
        return self.process_us(reading, to_us(reading.timestamp))

    def process_us(self, reading: Reading, ts: int) -> list[Alert]:
        """:meth:`process` with the event time already in epoch microseconds (hot path)."""
        window = self._windows.get(reading.sensor_id)
        if window is None:
            window = self._admit(reading.sensor_id)  # or raise TooManySensors
        elif window._watermark is not None and ts > window._watermark + self._evict_us:
            self._drop(reading.sensor_id)  # silent long enough to be evicted: a new sensor
            window = self.windows.window(reading.sensor_id)
        wm = self._watermark
        if wm is None or ts > wm:
            self._watermark = wm = ts
        self._event_us = wm
        # The rules see the window as it was before this reading (see Detector).
        alerts = self.detector.observe_us(reading, ts, *window.before_us(ts, self._moments_from))
        stats = self.stats
        stats.processed += 1
        if not window.add_us(reading, ts):
            stats.late += 1
        for alert in alerts:
            stats.alerts[alert.rule] += 1
        return alerts

    def _admit(self, sensor_id: str) -> SensorWindow:
        """A new sensor's (empty) window, unless the pipeline is full."""
        limit = self.max_sensors
        if limit is not None and len(self._windows) >= limit:
            self.stats.refused += 1
            raise TooManySensors(limit)
        return self.windows.window(sensor_id)

    def _drop(self, sensor_id: str) -> None:
        self.windows.reset(sensor_id)
        self.detector.drop(sensor_id)
        self.stats.evicted += 1

    def __len__(self) -> int:
        """How many sensors the pipeline holds."""
        return len(self._windows)

    def process_batch_us(self, batch: Sequence[tuple[Reading, int]]
                         ) -> list[tuple[int, list[Alert]]]:
        """:meth:`process_us` for many ``(reading, event time µs)`` in arrival order.

        Returns ``(index in batch, alerts)`` for each reading that raised alerts, in batch
        order. Each sensor's readings are taken together: an in-order run of at least
        :data:`~sensorlib.engine.runs.MIN_RUN` goes through :func:`sensorlib.engine.runs.process_run`
        (array operations), anything else one by one. Same alerts and state as one by one
        (see :mod:`sensorlib.engine.runs`), except the order of alerts between sensors.

        A reading of a new sensor beyond ``max_sensors`` is left out and listed in
        :attr:`refused` (``(index in batch, TooManySensors)``, reset by every call).
        """
        self.refused = []
        raised: list[tuple[int, list[Alert]]] = []
        if self.detector.clock == self._event_time:
            # detectedAt is the event time of the moment: keep the arrival order exactly.
            self._one_by_one(batch, range(len(batch)), raised)
            return raised
        groups: dict[str, list[int]] = {}
        for i, sensor_id in enumerate(map(_SENSOR_ID, map(_FIRST, batch))):
            group = groups.get(sensor_id)
            if group is None:
                groups[sensor_id] = [i]
            else:
                group.append(i)
        limit = self.max_sensors
        if limit is not None and len(self._windows) + len(groups) > limit and (
                len(self._windows) + sum(s not in self._windows for s in groups) > limit):
            # Some new sensors will be refused: which ones depends on the arrival order.
            self._one_by_one(batch, range(len(batch)), raised)
            return raised
        evict_us = self._evict_us
        for sensor_id, where in groups.items():
            if len(where) < MIN_RUN:
                self._one_by_one(batch, where, raised)
                continue
            ts = np.fromiter(map(_SECOND, map(batch.__getitem__, where)), np.int64, len(where))
            # Split where the order breaks (a repeated, out-of-order or late reading): each
            # piece is in order; what a piece holds at or before the window's end so far
            # goes one by one, the rest as a run.
            start = 0
            steps = np.diff(ts)
            # ... and where a reading comes after a silence long enough to evict the sensor.
            for stop in [*(np.flatnonzero((steps <= 0) | (steps > evict_us)) + 1).tolist(),
                         len(where)]:
                window = self._windows.get(sensor_id)
                if (window is not None and window.watermark_us is not None
                        and start < stop and ts[start] > window.watermark_us + evict_us):
                    window = None  # process_us starts it afresh
                if window is None and start < stop:  # a new sensor: its first reading alone
                    self._one_by_one(batch, where[start:start + 1], raised)
                    start += 1
                    window = self.windows.get(sensor_id)
                if window is not None and window.watermark_us is not None:
                    older = int(np.searchsorted(ts[start:stop], window.watermark_us, "right"))
                    self._one_by_one(batch, where[start:start + older], raised)
                    start += older
                if stop - start < MIN_RUN:
                    self._one_by_one(batch, where[start:stop], raised)
                else:
                    self._run(batch, sensor_id, where[start:stop], ts[start:stop], raised)
                start = stop
        if self._watermark is not None:
            self._event_us = self._watermark
        raised.sort(key=_FIRST)
        return raised

    def _one_by_one(self, batch: Sequence[tuple[Reading, int]], where: Iterable[int],
                    raised: list[tuple[int, list[Alert]]]) -> None:
        for i in where:
            try:
                found = self.process_us(*batch[i])
            except TooManySensors as refused:
                self.refused.append((i, refused))
                continue
            if found:
                raised.append((i, found))

    def _run(self, batch: Sequence[tuple[Reading, int]], sensor_id: str, where: list[int],
             ts: np.ndarray, raised: list[tuple[int, list[Alert]]]) -> None:
        readings = list(map(_FIRST, map(batch.__getitem__, where)))
        k = len(readings)
        temp = np.fromiter(map(_TEMPERATURE, readings), np.float64, k)
        hum = np.fromiter(map(_HUMIDITY, readings), np.float64, k)
        done = process_run(self._windows.get(sensor_id), self.detector, sensor_id,
                           readings.__getitem__, ts, temp, hum, self._evict_us)
        if done is None:
            self._one_by_one(batch, where, raised)
            return
        stats = self.stats
        stats.processed += len(where)
        last = int(ts[-1])
        if self._watermark is None or last > self._watermark:
            self._watermark = last
        for j, found in done:
            raised.append((where[j], found))
            for alert in found:
                stats.alerts[alert.rule] += 1

    def tick(self, now: datetime) -> list[Alert]:
        """Let event time pass to ``now``: raises silent alerts that are due, then evicts
        the sensors silent for longer than ``evict_after`` (module docstring)."""
        self._event_us = to_us(now)
        alerts = self.detector.tick(now)
        for alert in alerts:
            self.stats.alerts[alert.rule] += 1
        gone = self.detector.expire(now)
        if gone:
            reset = self.windows.reset
            for sensor_id in gone:
                reset(sensor_id)
            self.stats.evicted += len(gone)
        return alerts

    def aggregates(self) -> list[Aggregate]:
        """Every sensor's window statistics, sorted by sensor id (evicted ones are gone)."""
        return self.windows.aggregates()

    def replay(self, readings: Iterable[Reading], *,
               tick_every: timedelta | None = DEFAULT_TICK) -> Iterator[Alert]:
        """Process readings in the given order, ticking on event time (module docstring).

        With ``tick_every=None`` there are no ticks, hence no silent alerts.
        """
        step = None if tick_every is None else tick_every // _US
        for reading in readings:
            wm = self._watermark
            if step is not None and wm is not None:
                ts = to_us(reading.timestamp)
                if ts // step > wm // step:  # a tick boundary lies in (wm, ts]
                    yield from self._tick_through(ts, step)
            try:
                yield from self.process(reading)
            except TooManySensors:
                continue  # counted in stats.refused

    def warm(self, readings: Iterable[Reading], *,
             tick_every: timedelta | None = DEFAULT_TICK) -> None:
        """Rebuild windows and rule state (cooldowns, runs, silences) from history.

        Replays like :meth:`replay` but keeps the alerts to itself: they were published
        before. Counted in ``stats.warmed``, not in ``processed`` or ``alerts``.
        """
        live = self.stats
        self.stats = PipelineStats()
        try:
            if self.detector.clock == self._event_time:
                for _ in self.replay(readings, tick_every=tick_every):
                    pass
            else:  # alerts are dropped: runs at once between tick boundaries
                self._warm_in_runs(readings, tick_every)
        finally:
            live.warmed += self.stats.processed
            self.stats = live

    def _warm_in_runs(self, readings: Iterable[Reading], tick_every: timedelta | None) -> None:
        """:meth:`replay` without the alerts: the readings between two tick boundaries go
        through :meth:`process_batch_us` together (no tick falls inside them), and the
        ticks in between as :meth:`replay` makes them."""
        step = None if tick_every is None else tick_every // _US
        pending: list[tuple[Reading, int]] = []
        wm = self._watermark  # the watermark as replay would have it, pending included
        for reading in readings:
            ts = to_us(reading.timestamp)
            if step is not None and wm is not None and ts // step > wm // step:
                if pending:
                    self.process_batch_us(pending)
                    pending = []
                for _ in self._tick_through(ts, step):
                    pass
            pending.append((reading, ts))
            if wm is None or ts > wm:
                wm = ts
        if pending:
            self.process_batch_us(pending)

    def process_ticking(self, batch: Sequence[tuple[Reading, int]],
                        tick_every: timedelta = DEFAULT_TICK, *, until: datetime | None = None
                        ) -> tuple[list[tuple[int, list[Alert]]], list[Alert]]:
        """:meth:`process_batch_us`, ticking on event time inside the batch as :meth:`replay`
        does: the live processor's path, so that a poll spanning an hour of a backlog raises
        the silent alerts a replay raises (same ids), not just one tick's worth.

        Returns ``(index in batch, alerts)`` of the readings that raised alerts and the
        alerts of the ticks. :attr:`refused` lists the refusals of the whole batch.
        ``until`` (the live processor's wall clock): no tick past it, so a reading minutes
        ahead (inside the accepted window) does not make every other sensor look silent.
        """
        step = tick_every // _US
        cap = sys.maxsize if until is None else to_us(until)
        raised: list[tuple[int, list[Alert]]] = []
        ticked: list[Alert] = []
        refused: list[tuple[int, TooManySensors]] = []
        wm = self._watermark
        begin = 0

        def flush(end: int) -> None:
            if end > begin:
                part = batch[begin:end]
                raised.extend((begin + i, found) for i, found in self.process_batch_us(part))
                refused.extend((begin + i, why) for i, why in self.refused)

        for i, (_, ts) in enumerate(batch):
            if wm is not None and ts // step > wm // step:
                flush(i)
                begin = i
                if self._watermark is not None:
                    ticked.extend(self._tick_through(min(ts, cap), step))
            if wm is None or ts > wm:
                wm = ts
        flush(len(batch))
        self.refused = refused
        return raised, ticked

    def replay_columns(self, sensor_ids: Sequence[str], ts: np.ndarray, temperature: np.ndarray,
                       humidity: np.ndarray, locations: Sequence[str], *,
                       tick_every: timedelta | None = DEFAULT_TICK) -> list[Alert]:
        """:meth:`replay` over readings given as columns in event-time order (``ts``: µs,
        non-decreasing), with no model made per reading: each sensor's in-order runs go
        through the rules' columnar checks (:mod:`sensorlib.engine.runs`) between the tick
        boundaries where something falls due, which are found from the data (a gap longer
        than ``silent_after`` or ``evict_after`` in a sensor's readings, a storm's slot end).
        The alerts, their order and their ids are :meth:`replay`'s; with ``clock="event"``
        their ``detected_at`` too. Readings must be valid (see :func:`run_frame`) and the
        pipeline unlimited (``max_sensors=None``) and unused (no reading processed yet).
        """
        if self.max_sensors is not None or self._watermark is not None:
            raise UsageError("replay_columns needs a new pipeline with max_sensors=None")
        n = len(ts)
        if n == 0:
            return []
        ts = np.asarray(ts, np.int64)
        temperature = np.asarray(temperature, np.float64)
        humidity = np.asarray(humidity, np.float64)
        if n > 1 and (np.diff(ts) < 0).any():
            raise UsageError("replay_columns needs the readings in event-time order")
        codes, names = _factorize(sensor_ids)
        step = None if tick_every is None else tick_every // _US
        event_clock = self.detector.clock == self._event_time

        def reading_at(i: int) -> Reading:  # only for the readings that alert (and a few)
            return new_reading(names[codes[i]], float(temperature[i]), float(humidity[i]),
                               locations[i], from_us(int(ts[i])))

        # Each sensor's rows (ascending, so in event-time order) and the tick boundaries where
        # it may fall due (_due_boundaries). A tick only touches the sensors due at it: each
        # sensor goes through its readings up to its own next boundary at once, and at a
        # boundary the sensors due there have exactly their readings before it behind them
        # while every other one is past it (not due), as in a replay.
        order = np.argsort(codes, kind="stable")
        edges = np.flatnonzero(np.diff(codes[order])) + 1
        rows_of = np.split(order, edges)
        own = self._due_boundaries(rows_of, ts, step) if step is not None else \
            [np.empty(0, np.int64)] * len(rows_of)
        done_upto = [0] * len(rows_of)  # rows processed, per sensor
        next_cut = [0] * len(rows_of)  # index into own[s]
        raised: list[tuple[int, list[Alert]]] = []
        ts_of = [ts[rows] for rows in rows_of]
        # replay's detectedAt with the event clock: the event time of the reading (in order)
        self.detector.run_clock = from_us if event_clock else None

        def advance(s: int, limit: int) -> None:
            rows = rows_of[s]
            stop = int(np.searchsorted(ts_of[s], limit, "left")) if limit < sys.maxsize \
                else len(rows)
            if stop > done_upto[s]:
                first = int(codes[rows[0]])
                self._columns_of(names[first], rows[done_upto[s]:stop], ts, temperature,
                                 humidity, reading_at, raised)
                done_upto[s] = stop

        def to_next_cut(s: int) -> None:
            cuts = own[s]
            k = next_cut[s]
            advance(s, int(cuts[k]) if k < len(cuts) else sys.maxsize)

        # boundary -> the sensors whose own boundary it is
        due_at: dict[int, list[int]] = {}
        for s, cuts in enumerate(own):
            for b in cuts.tolist():
                due_at.setdefault(b, []).append(s)
        heap = sorted(due_at)
        heapq.heapify(heap)
        for s in range(len(rows_of)):
            to_next_cut(s)
        ticked: list[tuple[int, int, list[Alert]]] = []  # (row it comes before, seq, alerts)
        last_ts = int(ts[-1])
        seen: set[int] = set(heap)
        while heap:
            b = heapq.heappop(heap)
            if b > last_ts:
                break  # a replay ticks only up to its last reading
            alerts = self.tick(from_us(b))
            if alerts:
                ticked.append((int(np.searchsorted(ts, b, "left")), len(ticked), alerts))
            for s in due_at.get(b, ()):
                next_cut[s] += 1
                to_next_cut(s)
            fold = self.detector.next_fold()
            if step is not None and fold is not None:
                f = (fold // step + 1) * step
                if f not in seen:
                    seen.add(f)
                    heapq.heappush(heap, f)
        for s in range(len(rows_of)):
            advance(s, sys.maxsize)
        if self._watermark is not None:
            self._event_us = self._watermark
        merged: list[tuple[int, int, int, list[Alert]]] = [
            (row, 0, seq, alerts) for row, seq, alerts in ticked]
        merged.extend((row, 1, 0, found) for row, found in raised)
        merged.sort(key=_MERGE_ORDER)
        self.detector.run_clock = None
        return [alert for _, _, _, found in merged for alert in found]

    def _columns_of(self, sensor_id: str, rows: np.ndarray, ts_all: np.ndarray,
                    temp_all: np.ndarray, hum_all: np.ndarray,
                    reading_at: Callable[[int], Reading],
                    raised: list[tuple[int, list[Alert]]]) -> None:
        """One sensor's rows (ascending) of :meth:`replay_columns`: in-order runs through
        :func:`~sensorlib.engine.runs.process_run`, the rest one by one (as process_batch_us)."""
        ts = ts_all[rows]
        evict_us = self._evict_us

        event_clock = self.detector.run_clock is not None

        def one_by_one(lo: int, hi: int) -> None:
            for i in rows[lo:hi].tolist():
                found = self.process_us(reading_at(i), int(ts_all[i]))
                if found:
                    if event_clock:  # replay's detectedAt: this reading's event time
                        found = [a.model_copy(update={"detected_at": a.timestamp})
                                 for a in found]
                    raised.append((i, found))

        start = 0
        steps = np.diff(ts)
        for stop in [*(np.flatnonzero((steps <= 0) | (steps > evict_us)) + 1).tolist(),
                     len(rows)]:
            window = self._windows.get(sensor_id)
            wm = None if window is None else window.watermark_us
            if wm is not None and start < stop and ts[start] > wm + evict_us:
                window = None  # process_us starts it afresh
            if window is None and start < stop:  # a new sensor: its first reading alone
                one_by_one(start, start + 1)
                start += 1
                window = self._windows.get(sensor_id)
            wm = None if window is None else window.watermark_us
            if wm is not None:
                older = int(np.searchsorted(ts[start:stop], wm, "right"))
                one_by_one(start, start + older)
                start += older
            if stop - start < MIN_RUN:
                one_by_one(start, stop)
            else:
                where = rows[start:stop]
                done = process_run(self._windows.get(sensor_id), self.detector, sensor_id,
                                   lambda j, where=where: reading_at(int(where[j])),
                                   ts[start:stop], temp_all[where], hum_all[where], evict_us)
                if done is None:
                    one_by_one(start, stop)
                else:
                    self.stats.processed += stop - start
                    last = int(ts[stop - 1])
                    if self._watermark is None or last > self._watermark:
                        self._watermark = last
                    for j, found in done:
                        raised.append((int(where[j]), found))
                        for alert in found:
                            self.stats.alerts[alert.rule] += 1
            start = stop
        if self._watermark is not None:
            self._event_us = self._watermark

    def _due_boundaries(self, rows_of: list[np.ndarray], ts: np.ndarray, step: int
                        ) -> list[np.ndarray]:
        """Per sensor (its rows in event-time order), the tick boundaries where its silence or
        eviction may fall due: for each two consecutive readings ``a < b`` (and its last one,
        with the data's end as ``b``), the first boundary past ``a + silent_after`` (or
        ``a + evict_after``) if it comes no later than ``b``. A tick anywhere else finds
        nothing of this sensor due."""
        end = int(ts[-1])
        delays = []
        if "silent" in self.rules.rules:  # else no silence falls due (a sweep of another rule)
            delays.append(self.rules.silent_after // _US)
        if self.evict_after is not None:
            delays.append(self.evict_after // _US)
        out = []
        for rows in rows_of:
            t = ts[rows]
            nxt = np.empty_like(t)
            nxt[:-1] = t[1:]
            nxt[-1] = end
            found = []
            for delay in delays:
                boundary = ((t + delay) // step + 1) * step
                found.append(boundary[boundary <= nxt])
            out.append(np.unique(np.concatenate(found)) if found else np.empty(0, np.int64))
        return out

    def _tick_through(self, ts: int, step: int) -> Iterator[Alert]:
        """Tick at each boundary in (watermark, ts] where a silence, a storm's slot end or an
        eviction falls due.

        Boundaries where nothing is due would do nothing, so they are skipped:
        a gap of days in the data costs a few ticks, not thousands.
        """
        assert self._watermark is not None
        after = self._watermark
        while True:
            due = self.detector.next_due()
            if due is None:
                return
            boundary = (max(to_us(due), after) // step + 1) * step
            if boundary > ts:
                return
            yield from self.tick(from_us(boundary))
            after = boundary

    def _event_time(self) -> datetime:
        return from_us(self._event_us)


_FIRST, _SECOND, _SENSOR_ID = itemgetter(0), itemgetter(1), attrgetter("sensor_id")
_MERGE_ORDER = itemgetter(0, 1, 2)


def _factorize(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Codes (int64) and the distinct values, in order of first appearance."""
    import pandas as pd  # an offline path (replay_columns): the processor never comes here

    codes, uniques = pd.factorize(values, sort=False)  # type: ignore[call-overload]
    return codes.astype(np.int64), [str(u) for u in uniques]
_TEMPERATURE, _HUMIDITY = attrgetter("temperature"), attrgetter("humidity")


# -- DataFrames ---------------------------------------------------------------------------

READING_COLUMNS = ("sensorId", "temperature", "humidity", "location", "timestamp")

#: Column dtypes of :func:`alerts_to_frame` (``str`` is pandas' string dtype).
ALERT_DTYPES: dict[str, str] = {
    "alertId": "str", "sensorId": "str", "location": "str", "temperature": "float64",
    "humidity": "float64", "timestamp": "datetime64[us, UTC]",
    "detectedAt": "datetime64[us, UTC]", "rule": "str", "severity": "str", "reason": "str",
}
_AGGREGATE_DTYPES = {
    "sensorId": "str", "location": "str", "count": "int64",
    "avgTemperature": "float64", "minTemperature": "float64", "maxTemperature": "float64",
    "avgHumidity": "float64", "minHumidity": "float64", "maxHumidity": "float64",
    "windowStart": "datetime64[us, UTC]", "windowEnd": "datetime64[us, UTC]",
    "lastReading": "datetime64[us, UTC]", "late": "int64",
}


def _typed_frame(rows: list[dict[str, object]], dtypes: dict[str, str]) -> pd.DataFrame:
    import pandas as pd

    columns = {name: pd.Series([row[name] for row in rows], dtype=object)
               for name in dtypes}
    frame = pd.DataFrame(columns, columns=list(dtypes))
    for name, dtype in dtypes.items():
        if dtype.startswith("datetime64"):
            frame[name] = pd.to_datetime(frame[name], utc=True).astype(dtype)
        else:
            frame[name] = frame[name].astype(dtype)
    return frame


def alerts_to_frame(alerts: Iterable[Alert]) -> pd.DataFrame:
    """Alerts as a typed DataFrame (camelCase columns, UTC timestamps), empty or not."""
    rows = [{"alertId": a.alert_id, "sensorId": a.sensor_id, "location": a.location,
             "temperature": a.temperature, "humidity": a.humidity, "timestamp": a.timestamp,
             "detectedAt": a.detected_at, "rule": a.rule, "severity": a.severity,
             "reason": a.reason} for a in alerts]
    return _typed_frame(rows, ALERT_DTYPES)


def aggregates_to_frame(aggregates: Iterable[Aggregate]) -> pd.DataFrame:
    """Aggregates as a typed DataFrame with the ``/api/aggregates`` column names."""
    rows = [{"sensorId": a.sensor_id, "location": a.location, "count": a.count,
             "avgTemperature": a.temperature_mean, "minTemperature": a.temperature_min,
             "maxTemperature": a.temperature_max, "avgHumidity": a.humidity_mean,
             "minHumidity": a.humidity_min, "maxHumidity": a.humidity_max,
             "windowStart": a.window_start, "windowEnd": a.window_end,
             "lastReading": a.last_reading, "late": a.late} for a in aggregates]
    return _typed_frame(rows, _AGGREGATE_DTYPES)


def _event_us(timestamps: pd.Series) -> list[int]:
    """Microseconds since the epoch for each timestamp (naive ones taken as UTC)."""
    import pandas as pd

    ts = pd.to_datetime(timestamps, utc=True)
    micros: list[int] = ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")).tolist()
    return micros


def readings_frame_to_records(df: pd.DataFrame) -> Iterator[Reading]:
    """Validated Readings from a DataFrame's rows, in row order.

    Columns: ``sensorId``, ``temperature``, ``humidity``, ``timestamp`` and optionally
    ``location``. Timestamps keep microsecond precision, as on the wire.

    Raises:
        InvalidReading: for the first invalid row (the note says which).
    """
    missing = {"sensorId", "temperature", "humidity", "timestamp"} - set(df.columns)
    if missing:
        raise KeyError(f"the frame has no column(s) {sorted(missing)}; "
                       f"expected {list(READING_COLUMNS)}")
    locations = (df["location"].astype(object).where(df["location"].notna(), "").tolist()
                 if "location" in df.columns else [""] * len(df))
    rows = zip(df.index, df["sensorId"].tolist(), df["temperature"].tolist(),
               df["humidity"].tolist(), locations, _event_us(df["timestamp"]), strict=True)
    for index, sensor_id, temperature, humidity, location, us in rows:
        try:
            yield parse_reading({"sensorId": sensor_id, "temperature": temperature,
                                 "humidity": humidity, "location": location,
                                 "timestamp": from_us(us)})
        except InvalidReading as exc:
            exc.add_note(f"in row {index!r} of the frame")
            raise


def run_frame(
    df: pd.DataFrame,
    *,
    window: timedelta = DEFAULT_WINDOW,
    rules: RuleConfig = RuleConfig(),  # noqa: B008 - frozen, safe as a default
    tick_every: timedelta | None = DEFAULT_TICK,
    max_sensors: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the pipeline over a DataFrame of readings: ``(aggregates, alerts)`` frames.

    Sensors silent for long are evicted and storms of silences folded as live (module
    docstring); ``max_sensors`` (default: no limit, the frame is in memory already) skips
    the readings of sensors beyond it, as the processor refuses them.

    Rows are processed in timestamp order (stable for ties) with ticks on event time
    (module docstring); ``detectedAt`` is the event time at detection, so the result
    is the same on every run. The aggregates are the windows at the end of the data.

    >>> from datetime import UTC
    >>> import pandas as pd
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> df = pd.DataFrame({"sensorId": ["a", "a", "a", "b"],
    ...                    "temperature": [20.0, 20.0, 36.5, 21.0],
    ...                    "humidity": [50.0, 50.0, 50.0, 40.0], "location": ["X", "X", "X", "Y"],
    ...                    "timestamp": [t0, t0 + timedelta(seconds=2), t0 + timedelta(minutes=2),
    ...                                  t0 + timedelta(minutes=1)]})
    >>> aggregates, alerts = run_frame(df)
    >>> list(aggregates["count"]), list(zip(alerts["sensorId"], alerts["rule"]))
    ([3, 1], [('a', 'silent'), ('a', 'threshold')])
    """

    aggregates, alerts = _run_prepared(_prepare(df, max_sensors is None), window, rules,
                                       tick_every, max_sensors)
    return aggregates_to_frame(aggregates), alerts_to_frame(alerts)


def run_frame_variants(df: pd.DataFrame, variants: Sequence[RuleConfig], *,
                       window: timedelta = DEFAULT_WINDOW,
                       tick_every: timedelta | None = DEFAULT_TICK) -> list[pd.DataFrame]:
    """:func:`run_frame`'s alerts for each rule configuration over the same frame, which is
    sorted and validated once (tuning sweeps)."""
    prepared = _prepare(df, True)
    return [alerts_to_frame(_run_prepared(prepared, window, rules, tick_every, None)[1])
            for rules in variants]


def _prepare(df: pd.DataFrame, columnar: bool) -> tuple[pd.DataFrame, np.ndarray, Any]:
    import pandas as pd

    stamps = pd.to_datetime(df["timestamp"], utc=True)
    order = stamps.argsort(kind="stable").to_numpy()
    return df, order, _valid_columns(df, stamps, order) if columnar else None


def _run_prepared(prepared: tuple[pd.DataFrame, np.ndarray, Any], window: timedelta,
                  rules: RuleConfig, tick_every: timedelta | None, max_sensors: int | None
                  ) -> tuple[list[Aggregate], list[Alert]]:
    df, order, columns = prepared
    pipeline = Pipeline(window, rules, clock="event", max_sensors=max_sensors)
    if columns is None:  # one reading at a time (it raises for the first invalid row)
        alerts = list(pipeline.replay(readings_frame_to_records(df.iloc[order]),
                                      tick_every=tick_every))
    else:
        alerts = pipeline.replay_columns(*columns, tick_every=tick_every)
    return pipeline.aggregates(), alerts


class _Lookup:
    """``names[codes[i]]``: a column of few distinct strings, without a string per row."""

    __slots__ = ("codes", "names")

    def __init__(self, codes: np.ndarray, names: list[str]) -> None:
        self.codes, self.names = codes, names

    def __getitem__(self, i: int) -> str:
        return self.names[self.codes[i]]

    def __len__(self) -> int:
        return len(self.codes)


def _valid_columns(df: pd.DataFrame, stamps: pd.Series, order: np.ndarray
                   ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, _Lookup] | None:
    """A readings frame as :meth:`Pipeline.replay_columns`'s columns in ``order``, validated
    as :func:`parse_reading` validates each row: numbers checked as arrays, and each
    distinct sensor id and location once. None when some row is invalid or a column is not
    of the usual types: the row-by-row path then decides (and names the first bad row)."""
    import pandas as pd

    from sensorlib.model.limits import HUMIDITY_RANGE, TEMPERATURE_RANGE

    missing = {"sensorId", "temperature", "humidity", "timestamp"} - set(df.columns)
    if missing or df.empty:
        return None
    temp, hum = df["temperature"], df["humidity"]
    numeric = pd.api.types.is_float_dtype, pd.api.types.is_integer_dtype
    if not (any(f(temp) for f in numeric) and any(f(hum) for f in numeric)):
        return None
    t, h = temp.to_numpy(np.float64), hum.to_numpy(np.float64)
    lo_t, hi_t = TEMPERATURE_RANGE
    lo_h, hi_h = HUMIDITY_RANGE
    if not (((t >= lo_t) & (t <= hi_t)).all() and ((h >= lo_h) & (h <= hi_h)).all()):
        return None  # NaN fails these too
    if stamps.isna().any():
        return None
    ts = ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")).to_numpy(np.int64)
    s_codes, s_names = pd.factorize(df["sensorId"])
    if (s_codes < 0).any():
        return None
    if "location" in df.columns:
        l_codes, l_uniques = pd.factorize(df["location"])  # a missing one: -1, ""
        l_names = [*list(l_uniques), ""]
    else:
        l_codes, l_names = np.full(len(df), -1, np.int64), [""]
    pairs = np.unique(s_codes.astype(np.int64) * len(l_names) + (l_codes + 1))
    first_us = int(ts[order[0]])
    for pair in pairs.tolist():
        sensor_id, location = s_names[pair // len(l_names)], l_names[pair % len(l_names) - 1]
        try:  # the strings' own rules (type, length, blank, control characters)
            got = parse_reading({"sensorId": sensor_id, "temperature": 20.0, "humidity": 50.0,
                                 "location": location, "timestamp": from_us(first_us)})
        except InvalidReading:
            return None
        if got.sensor_id != sensor_id or got.location != location:
            return None  # the parser would normalise it: row by row then
    sensors = pd.Categorical.from_codes(s_codes[order], categories=pd.Index(s_names))
    return (sensors, ts[order], t[order], h[order],
            _Lookup(l_codes[order], l_names))
