"""Per-sensor event-time rolling aggregates (count, mean, min, max) over the last N minutes.

Semantics, for each sensor separately:

- the *watermark* is the largest event time accepted so far;
- the window holds the readings with ``watermark - length < ts <= watermark``;
- a reading with ``ts <= watermark - length`` when it arrives is *late*: counted, not
  aggregated. An out-of-order reading still inside the window is aggregated;
- when the watermark advances, readings that fall out are evicted.

Every update is amortised O(1) for in-order data (O(log n) out of order); nothing is
recomputed over the whole window per reading.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta  # noqa: F401 - UTC for the doctests
from itertools import takewhile
from typing import Any, Literal

import numpy as np

from sensorlib.errors import UsageError
from sensorlib.model.events import Reading
from sensorlib.model.times import ONE_US, format_timestamp, from_us, to_us

__all__ = ["DEFAULT_WINDOW", "Aggregate", "SensorWindow", "WindowStore", "from_us", "to_us"]

DEFAULT_WINDOW = timedelta(minutes=5)

_US = ONE_US


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One sensor's statistics over its current window."""

    sensor_id: str
    location: str
    count: int
    temperature_mean: float
    temperature_min: float
    temperature_max: float
    humidity_mean: float
    humidity_min: float
    humidity_max: float
    window_start: datetime
    window_end: datetime
    last_reading: datetime
    late: int

    def to_dict(self) -> dict[str, Any]:
        """One value of ``GET /api/aggregates``: the reference's keys (``sensorId, location,
        avgTemperature, avgHumidity, lastUpdate, readingCount``) plus min/max, the window's
        bounds and the late count."""
        return {
            "sensorId": self.sensor_id,
            "location": self.location,
            "avgTemperature": self.temperature_mean,
            "avgHumidity": self.humidity_mean,
            "lastUpdate": format_timestamp(self.last_reading),
            "readingCount": self.count,
            "minTemperature": self.temperature_min,
            "maxTemperature": self.temperature_max,
            "minHumidity": self.humidity_min,
            "maxHumidity": self.humidity_max,
            "windowStart": format_timestamp(self.window_start),
            "windowEnd": format_timestamp(self.window_end),
            "late": self.late,
        }


def _push_max(q: deque[tuple[float, int]], value: float, ts: int) -> None:
    """Insert into a monotonic deque (ts ascending, value strictly descending).

    Its head is the window's max; an entry is dropped as soon as a later reading is at
    least as large, since that one outlives it. Out-of-order inserts cost O(log n) to
    find their place plus what they displace.
    """
    if not q or ts >= q[-1][1]:
        while q and q[-1][0] <= value:
            q.pop()
        q.append((value, ts))
        return
    i = bisect_right(q, ts, key=_second)
    if i < len(q) and q[i][0] >= value:
        return  # a later reading is at least as large and outlives this one
    while i > 0 and q[i - 1][0] <= value:
        del q[i - 1]
        i -= 1
    q.insert(i, (value, ts))


def _second(entry: tuple[float, int]) -> int:
    return entry[1]


class SensorWindow:
    """The event-time window of one sensor (see the module docstring for the rules).

    >>> w = SensorWindow(timedelta(minutes=5))
    >>> t = datetime(2026, 1, 1, 12, tzinfo=UTC)
    >>> r = lambda s, temp: Reading(sensor_id="s", temperature=temp, humidity=50.0,
    ...                             timestamp=t + timedelta(seconds=s))
    >>> w.add(r(0, 20.0)), w.add(r(400, 24.0)), w.add(r(30, 99.0)), w.add(r(390, 22.0))
    (True, True, False, True)
    >>> a = w.aggregate()
    >>> a.count, a.temperature_mean, a.temperature_min, a.late
    (2, 23.0, 22.0, 1)
    """

    __slots__ = (
        "_h0",
        "_hmax",
        "_hmin",
        "_items",
        "_late",
        "_length_us",
        "_location",
        "_removed",
        "_sh",
        "_sh2",
        "_st",
        "_st2",
        "_t0",
        "_tmax",
        "_tmin",
        "_watermark",
        "length",
    )

    def __init__(self, length: timedelta = DEFAULT_WINDOW) -> None:
        if length <= timedelta(0):
            raise UsageError(f"window length must be positive (got {length})")
        self.length = length
        self._length_us = length // _US
        self._items: deque[tuple[int, float, float]] = deque()  # (ts, temp, hum) by ts
        self._watermark: int | None = None
        self._late = 0
        self._location = ""
        # Running sums of (x - x0) and (x - x0)² with x0 a typical value: the shift
        # keeps the variance free of catastrophic cancellation.
        self._t0 = self._h0 = 0.0
        self._st = self._st2 = self._sh = self._sh2 = 0.0
        self._removed = 0  # removals since the sums were last recomputed exactly
        # Monotonic deques of (value, ts) for max, and of (-value, ts) for min.
        self._tmax: deque[tuple[float, int]] = deque()
        self._tmin: deque[tuple[float, int]] = deque()
        self._hmax: deque[tuple[float, int]] = deque()
        self._hmin: deque[tuple[float, int]] = deque()

    # -- updating -----------------------------------------------------------------------

    def add(self, reading: Reading) -> bool:
        """Add a reading; False (and counted as late) when it is older than the window."""
        return self.add_us(reading, to_us(reading.timestamp))

    def add_us(self, reading: Reading, ts: int) -> bool:
        """:meth:`add` with the event time already in :func:`to_us` microseconds."""
        wm = self._watermark
        if wm is None:
            self._t0, self._h0 = reading.temperature, reading.humidity
            wm = ts
        elif ts <= wm - self._length_us:
            self._late += 1
            return False
        temp, hum = reading.temperature, reading.humidity
        if ts >= wm:  # in order: the common case, _push_max's in-order case inline
            self._items.append((ts, temp, hum))
            self._location = reading.location
            q = self._tmax
            while q and q[-1][0] <= temp:
                q.pop()
            q.append((temp, ts))
            q, v = self._tmin, -temp
            while q and q[-1][0] <= v:
                q.pop()
            q.append((v, ts))
            q = self._hmax
            while q and q[-1][0] <= hum:
                q.pop()
            q.append((hum, ts))
            q, v = self._hmin, -hum
            while q and q[-1][0] <= v:
                q.pop()
            q.append((v, ts))
        else:  # out of order but inside the window
            insort(self._items, (ts, temp, hum), key=_first)
            _push_max(self._tmax, temp, ts)
            _push_max(self._tmin, -temp, ts)
            _push_max(self._hmax, hum, ts)
            _push_max(self._hmin, -hum, ts)
        dt, dh = temp - self._t0, hum - self._h0
        self._st += dt
        self._st2 += dt * dt
        self._sh += dh
        self._sh2 += dh * dh
        if ts > wm or self._watermark is None:
            self._watermark = ts
            if self._items[0][0] <= ts - self._length_us:
                self._evict(ts - self._length_us)
        return True

    def _evict(self, cutoff: int) -> None:
        items = self._items
        t0, h0 = self._t0, self._h0
        st = st2 = sh = sh2 = 0.0
        removed = 0
        while items[0][0] <= cutoff:
            _, temp, hum = items.popleft()
            dt, dh = temp - t0, hum - h0
            st += dt
            st2 += dt * dt
            sh += dh
            sh2 += dh * dh
            removed += 1
        self._st -= st
        self._st2 -= st2
        self._sh -= sh
        self._sh2 -= sh2
        for q in (self._tmax, self._tmin, self._hmax, self._hmin):
            while q[0][1] <= cutoff:
                q.popleft()
        self._removed += removed
        # Running sums drift a little with every subtraction; recomputing them exactly
        # once per four windows' worth of removals keeps that bounded (amortised O(1):
        # about 0.1 µs a reading; once per window cost 0.4 µs, an eighth of the hot path).
        if self._removed > max(256, 4 * len(items)):
            self._refresh()

    def _refresh(self) -> None:
        items = self._items
        t0 = self._t0 = items[0][1]
        h0 = self._h0 = items[0][2]
        _, temps, hums = zip(*items, strict=True)
        dt = [t - t0 for t in temps]
        dh = [h - h0 for h in hums]
        self._st, self._st2 = math.fsum(dt), math.fsum([d * d for d in dt])
        self._sh, self._sh2 = math.fsum(dh), math.fsum([d * d for d in dh])
        self._removed = 0

    def _refresh_from(self, temps: np.ndarray, hums: np.ndarray) -> None:
        """:meth:`_refresh` when the window holds exactly these values (in order): the same
        sums (``math.fsum`` is exactly rounded, so the order of the terms does not matter),
        without a Python tuple per item."""
        t0 = self._t0 = float(temps[0])
        h0 = self._h0 = float(hums[0])
        dt, dh = temps - t0, hums - h0
        self._st, self._st2 = math.fsum(dt.tolist()), math.fsum((dt * dt).tolist())
        self._sh, self._sh2 = math.fsum(dh.tolist()), math.fsum((dh * dh).tolist())
        self._removed = 0

    # -- reading ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    @property
    def watermark(self) -> datetime | None:
        """The largest event time accepted so far (the window's end)."""
        return None if self._watermark is None else from_us(self._watermark)

    @property
    def late(self) -> int:
        """How many readings arrived too late for the window."""
        return self._late

    @property
    def watermark_us(self) -> int | None:
        """:attr:`watermark` in :func:`to_us` microseconds."""
        return self._watermark

    def plan_run(self, ts: np.ndarray, temp: np.ndarray, hum: np.ndarray, moments_from: int
                 ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None, Callable[[str], None]]:
        """The window before each reading of an in-order run (event times ``ts`` µs, all
        newer than the watermark, strictly increasing), without adding it yet.

        Returns the window's count before each reading, its moments
        ``(t_mean, t_var, h_mean, h_var)`` as arrays (meaningful where the count is at least
        ``moments_from``; None when no reading has them) and ``commit(location)``, which adds
        the run: the window is then as :meth:`add_us` reading by reading leaves it (its
        sums added in another order: equal to about 1e-15 relative).
        """
        k = len(ts)
        assert self._watermark is not None
        wm_old = self._watermark
        length = self._length_us
        items = self._items
        n_old = len(items)
        final_cut = int(ts[-1]) - length
        # A = the old items this run evicts (the deque's head), then the run itself. A run
        # longer than the window (the usual offline case) evicts them all: no scan.
        evicted = list(items) if items and items[-1][0] <= final_cut else \
            list(takewhile(lambda item: item[0] <= final_cut, items))
        n_ev = len(evicted)
        if n_ev:
            ev_ts, ev_t, ev_h = (np.array(col) for col in zip(*evicted, strict=True))
            a_ts = np.concatenate((ev_ts.astype(np.int64), ts))
            a_t, a_h = np.concatenate((ev_t, temp)), np.concatenate((ev_h, hum))
        else:
            a_ts, a_t, a_h = ts, temp, hum
        t0, h0 = self._t0, self._h0
        d_t, d_h = a_t - t0, a_h - h0
        p_t, p_t2 = _prefix(d_t), _prefix(d_t * d_t)
        p_h, p_h2 = _prefix(d_h), _prefix(d_h * d_h)
        previous = np.empty(k, np.int64)
        previous[0] = wm_old
        previous[1:] = ts[:-1]
        gone = np.searchsorted(a_ts, previous - length, side="right")  # evicted before j
        at = n_ev + np.arange(k)  # reading j's place in A
        count = n_old + np.arange(k) - gone
        moments = None
        if (count >= moments_from).any():
            n = np.maximum(count, 1).astype(np.float64)
            s_t = self._st + (p_t[at] - p_t[n_ev]) - p_t[gone]
            s_t2 = self._st2 + (p_t2[at] - p_t2[n_ev]) - p_t2[gone]
            s_h = self._sh + (p_h[at] - p_h[n_ev]) - p_h[gone]
            s_h2 = self._sh2 + (p_h2[at] - p_h2[n_ev]) - p_h2[gone]
            mt, mh = s_t / n, s_h / n
            moments = (t0 + mt, np.maximum(0.0, s_t2 / n - mt * mt),
                       h0 + mh, np.maximum(0.0, s_h2 / n - mh * mh))

        def commit(location: str) -> None:
            end = int(np.searchsorted(a_ts, final_cut, side="right"))  # A items evicted
            for _ in range(n_ev):
                items.popleft()
            first = end - n_ev  # the run's own readings already out of the window
            ts_list = ts.tolist()
            items.extend(zip(ts_list[first:], temp[first:].tolist(), hum[first:].tolist(),
                             strict=True))
            # Python floats, as the one-by-one path keeps (not numpy scalars).
            self._st += float(p_t[-1] - p_t[n_ev] - p_t[end])
            self._st2 += float(p_t2[-1] - p_t2[n_ev] - p_t2[end])
            self._sh += float(p_h[-1] - p_h[n_ev] - p_h[end])
            self._sh2 += float(p_h2[-1] - p_h2[n_ev] - p_h2[end])
            self._removed += end
            self._watermark = ts_list[-1]
            self._location = location
            for q, values in ((self._tmax, temp), (self._tmin, -temp), (self._hmax, hum),
                              (self._hmin, -hum)):
                _push_run(q, values, ts, final_cut)
            if self._removed > max(256, 4 * len(items)):
                if n_ev == n_old and first < k:  # the window is the run's tail: from arrays
                    self._refresh_from(temp[first:], hum[first:])
                else:
                    self._refresh()

        return count, moments, commit

    def is_late(self, timestamp: datetime) -> bool:
        """Whether a reading at ``timestamp`` would be late if it arrived now."""
        return self.is_late_us(to_us(timestamp))

    def is_late_us(self, ts: int) -> bool:
        """:meth:`is_late` in :func:`to_us` microseconds."""
        wm = self._watermark
        return wm is not None and ts <= wm - self._length_us

    def before_us(self, ts: int, moments_from: int
                  ) -> tuple[bool, tuple[int, float, float, float, float] | None]:
        """What the rules need before a reading at ``ts`` is added, in one call (hot path):
        whether it is late (:meth:`is_late_us`), and the window's :meth:`moments` when it
        holds at least ``moments_from`` readings (else None)."""
        wm = self._watermark
        late = wm is not None and ts <= wm - self._length_us
        return late, (self.moments() if len(self._items) >= moments_from else None)

    def mean_std(self, field: Literal["temperature", "humidity"]) -> tuple[float, float]:
        """Mean and population standard deviation of a field over the window, in O(1).

        Returns ``(nan, nan)`` for an empty window.
        """
        n = len(self._items)
        if n == 0:
            return math.nan, math.nan
        if field == "temperature":
            shift, s1, s2 = self._t0, self._st, self._st2
        else:
            shift, s1, s2 = self._h0, self._sh, self._sh2
        mean = s1 / n
        var = s2 / n - mean * mean
        return shift + mean, math.sqrt(var) if var > 0.0 else 0.0

    def moments(self) -> tuple[int, float, float, float, float]:
        """``(count, temperature mean, temperature variance, humidity mean, humidity
        variance)`` in one O(1) call (population variances; NaN when empty)."""
        n = len(self._items)
        if n == 0:
            return 0, math.nan, math.nan, math.nan, math.nan
        mt, mh = self._st / n, self._sh / n
        return (n, self._t0 + mt, max(0.0, self._st2 / n - mt * mt),
                self._h0 + mh, max(0.0, self._sh2 / n - mh * mh))

    def aggregate(self, sensor_id: str = "") -> Aggregate | None:
        """The window's statistics, or None before the first reading."""
        if not self._items or self._watermark is None:
            return None
        t_mean, _ = self.mean_std("temperature")
        h_mean, _ = self.mean_std("humidity")
        end = from_us(self._watermark)
        return Aggregate(
            sensor_id=sensor_id,
            location=self._location,
            count=len(self._items),
            temperature_mean=t_mean,
            temperature_min=-self._tmin[0][0],
            temperature_max=self._tmax[0][0],
            humidity_mean=h_mean,
            humidity_min=-self._hmin[0][0],
            humidity_max=self._hmax[0][0],
            window_start=end - self.length,
            window_end=end,
            last_reading=end,
            late=self._late,
        )


def _first(item: tuple[int, float, float]) -> int:
    return item[0]


def _prefix(values: np.ndarray) -> np.ndarray:
    """Sums of the first i values for i = 0..n."""
    out = np.empty(len(values) + 1)
    out[0] = 0.0
    np.cumsum(values, out=out[1:])
    return out


def _push_run(q: deque[tuple[float, int]], values: np.ndarray, ts: np.ndarray,
              cut: int) -> None:
    """A monotonic max-deque after pushing an in-order run and evicting up to ``cut``: the
    entries larger than everything after them (as :func:`_push_max` one by one)."""
    # Only the run's readings newer than the cut can stay: the rest (and every older entry
    # not larger than the newest ones) would be evicted at once.
    first = int(np.searchsorted(ts, cut, side="right"))
    if first:
        values, ts = values[first:], ts[first:]
    top = values.max()
    while q and q[-1][0] <= top:
        q.pop()
    later = np.empty(len(values))
    later[-1] = -np.inf
    later[:-1] = np.maximum.accumulate(values[::-1])[::-1][1:]
    keep = np.flatnonzero((values > later) & (ts > cut))
    q.extend(zip(values[keep].tolist(), ts[keep].tolist(), strict=True))
    while q[0][1] <= cut:
        q.popleft()


class WindowStore:
    """The windows of every sensor seen, keyed by sensor id.

    >>> store = WindowStore()
    >>> store.add(Reading(sensor_id="s1", temperature=20.0, humidity=50.0,
    ...                   timestamp=datetime(2026, 1, 1, tzinfo=UTC)))
    True
    >>> [a.sensor_id for a in store.aggregates()], len(store)
    (['s1'], 1)
    """

    def __init__(self, length: timedelta = DEFAULT_WINDOW) -> None:
        self.length = length
        self._windows: dict[str, SensorWindow] = {}

    def window(self, sensor_id: str) -> SensorWindow:
        """The sensor's window, created empty on first use."""
        w = self._windows.get(sensor_id)
        if w is None:
            w = self._windows[sensor_id] = SensorWindow(self.length)
        return w

    def add(self, reading: Reading) -> bool:
        """Add a reading to its sensor's window; False when it is late."""
        return self.window(reading.sensor_id).add(reading)

    def get(self, sensor_id: str) -> SensorWindow | None:
        """The sensor's window, or None if it was never seen."""
        return self._windows.get(sensor_id)

    def aggregate(self, sensor_id: str) -> Aggregate | None:
        """One sensor's aggregate, or None if it was never seen."""
        w = self._windows.get(sensor_id)
        return None if w is None else w.aggregate(sensor_id)

    def aggregates(self) -> list[Aggregate]:
        """Every sensor's aggregate, sorted by sensor id."""
        out = (self._windows[s].aggregate(s) for s in sorted(self._windows))
        return [a for a in out if a is not None]

    def sensors(self) -> list[str]:
        """The sensor ids seen, sorted."""
        return sorted(self._windows)

    def reset(self, sensor_id: str) -> None:
        """Forget one sensor's window (no error if unknown)."""
        self._windows.pop(sensor_id, None)

    def __len__(self) -> int:
        return len(self._windows)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._windows))
