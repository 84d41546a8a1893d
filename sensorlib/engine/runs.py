"""A sensor's in-order run of readings through its window and the rules at once (numpy).

The processor takes up to 20,000 records per poll; grouped by sensor, each sensor's share is
usually a run of readings in event-time order, all newer than anything its window holds.
For such a run, :func:`process_run` computes what :meth:`Pipeline.process_us
<sensorlib.engine.pipeline.Pipeline.process_us>` would compute reading by reading — the window's
count, mean and variance before each reading, the threshold, rate-of-change, stuck and
outlier tests — as array operations, emits the alerts of the few readings that raise one in
order through the detector's own methods (cooldowns, reasons, ids), and leaves the window
and the rule state as the one-by-one path would. A run that is not in order, a sensor seen
for the first time, one with a gap long enough to evict the sensor (``Pipeline.evict_after``),
or a window statistic within 1e-9 of an outlier limit declines (returns None) and takes the
one-by-one path instead.

Equality with the one-by-one path: the threshold, rate-of-change and stuck tests use the
same IEEE operations on the same values, so they decide identically; the window's sums are
added in a different order, so means and variances agree to about 1e-15 relative, and an
outlier decision that close to its limit is left to the one-by-one path. A differential
property test (``tests/unit/test_runs.py``) holds the two paths to the same alerts and
aggregates over random streams with faults, late and out-of-order readings.
"""

from __future__ import annotations

from collections import deque
from itertools import takewhile
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from sensorlib.engine.detect import Z_MARGIN

if TYPE_CHECKING:
    from sensorlib.engine.pipeline import Pipeline
    from sensorlib.model.events import Alert

__all__ = ["MIN_RUN", "process_run"]

#: Shorter runs take the one-by-one path: the array set-up costs about as much as ~20
#: readings' worth of it.
MIN_RUN = 24
#: An outlier score this close (relative) to its limit is decided one by one: far below the
#: limit's own margin (detect.Z_MARGIN), far above the sums' rounding noise (~1e-15).
_AMBIGUOUS = 1e-12
_US_PER_MINUTE = 60_000_000
_TEMPERATURE, _HUMIDITY = attrgetter("temperature"), attrgetter("humidity")


def _prefix(values: np.ndarray) -> np.ndarray:
    """Sums of the first i values for i = 0..n."""
    out = np.empty(len(values) + 1)
    out[0] = 0.0
    np.cumsum(values, out=out[1:])
    return out


def process_run(pipeline: Pipeline, sensor_id: str, readings: list[Any], ts: np.ndarray,
                ) -> list[tuple[int, list[Alert]]] | None:
    """Process one sensor's run of readings (arrival order, event times ``ts`` in µs).

    Returns ``(position in the run, alerts)`` for each reading that raised alerts, or None
    when the run must take the one-by-one path (nothing has been changed then).
    """
    window = pipeline.windows.get(sensor_id)
    det = pipeline.detector
    state = det._sensors.get(sensor_id)
    if window is None or state is None or window._watermark is None:
        return None
    k = len(readings)
    wm_old = window._watermark
    steps = np.diff(ts)
    # A step longer than evict_after would start the sensor afresh (Pipeline.process_us).
    evict_us = pipeline._evict_us
    if (ts[0] <= wm_old or ts[0] <= state.last_us or ts[0] > wm_old + evict_us
            or (steps <= 0).any() or (steps > evict_us).any()):
        return None
    temp = np.fromiter(map(_TEMPERATURE, readings), np.float64, k)
    hum = np.fromiter(map(_HUMIDITY, readings), np.float64, k)
    cfg = det.config
    length = window._length_us
    items = window._items
    n_old = len(items)
    final_cut = int(ts[-1]) - length

    # -- the window before each reading: count, mean, variance --------------------------
    # A = the old items this run evicts (the deque's head), then the run itself.
    evicted = list(takewhile(lambda item: item[0] <= final_cut, items))
    n_ev = len(evicted)
    if n_ev:
        ev_ts, ev_t, ev_h = (np.array(col) for col in zip(*evicted, strict=True))
        a_ts = np.concatenate((ev_ts.astype(np.int64), ts))
        a_t, a_h = np.concatenate((ev_t, temp)), np.concatenate((ev_h, hum))
    else:
        a_ts, a_t, a_h = ts, temp, hum
    t0, h0 = window._t0, window._h0
    d_t, d_h = a_t - t0, a_h - h0
    p_t, p_t2, p_h, p_h2 = _prefix(d_t), _prefix(d_t * d_t), _prefix(d_h), _prefix(d_h * d_h)
    previous = np.empty(k, np.int64)
    previous[0] = wm_old
    previous[1:] = ts[:-1]
    gone = np.searchsorted(a_ts, previous - length, side="right")  # evicted before reading j
    at = n_ev + np.arange(k)  # reading j's place in A
    count = n_old + np.arange(k) - gone
    has_moments = count >= pipeline._moments_from
    outlier = np.zeros(k, bool)
    zt2 = zh2 = t_mean = h_mean = None
    if has_moments.any():
        n = np.maximum(count, 1).astype(np.float64)
        s_t = window._st + (p_t[at] - p_t[n_ev]) - p_t[gone]
        s_t2 = window._st2 + (p_t2[at] - p_t2[n_ev]) - p_t2[gone]
        s_h = window._sh + (p_h[at] - p_h[n_ev]) - p_h[gone]
        s_h2 = window._sh2 + (p_h2[at] - p_h2[n_ev]) - p_h2[gone]
        mt, mh = s_t / n, s_h / n
        t_var = np.maximum(0.0, s_t2 / n - mt * mt)
        h_var = np.maximum(0.0, s_h2 / n - mh * mh)
        t_mean, h_mean = t0 + mt, h0 + mh
        dt, dh = temp - t_mean, hum - h_mean
        zt2 = dt * dt / np.maximum(t_var, det._min_t_var)
        zh2 = dh * dh / np.maximum(h_var, det._min_h_var)
        z2 = det._z2  # the limit with its margin (Detector.__init__)
        near = (np.abs(zt2 - z2) <= _AMBIGUOUS * z2) | (np.abs(zh2 - z2) <= _AMBIGUOUS * z2)
        outlier = has_moments & ((zt2 > z2) | (zh2 > z2))
        pick = zh2 * (1 - Z_MARGIN)  # _emit_outlier names the temperature from here
        tie = outlier & (np.abs(zt2 - pick) <= _AMBIGUOUS * np.maximum(zt2, pick))
        if (has_moments & near).any() or tie.any():
            return None

    # -- the rules about consecutive readings ----------------------------------------------
    threshold = ((temp > det._hot) | (hum > det._wet)) if det._threshold else np.zeros(k, bool)
    rate = np.zeros(k, bool)
    if det._rate:
        recent = state.recent
        r_ts = np.concatenate((np.fromiter([e[0] for e in recent], np.int64, len(recent)), ts))
        r_t = np.concatenate((np.fromiter([e[1] for e in recent], np.float64, len(recent)),
                              temp))
        head = np.maximum(np.searchsorted(r_ts, ts - det._span_us, side="right") - 1, 0)
        since, before = r_ts[head], r_t[head]
        delta = temp - before
        per_minute = delta * _US_PER_MINUTE / np.maximum(ts - since, det._span_us).astype(
            np.float64)
        rate = (np.abs(delta) >= cfg.rate_min_delta) & (np.abs(per_minute) > cfg.rate_of_change)
    prev_t = np.empty(k)
    prev_h = np.empty(k)
    prev_t[0], prev_h[0] = state.last.temperature, state.last.humidity
    prev_t[1:], prev_h[1:] = temp[:-1], hum[:-1]
    same = (temp == prev_t) & (hum == prev_h)
    index = np.arange(k)
    reset = np.maximum.accumulate(np.where(same, -1, index))
    run = np.where(reset >= 0, index - reset + 1, state.run + index + 1)
    stuck = (run >= cfg.stuck_readings) if det._stuck else np.zeros(k, bool)

    # -- alerts, in order, through the detector's own emitters ----------------------------
    raised: list[tuple[int, list[Alert]]] = []
    for j in np.flatnonzero(threshold | rate | stuck | outlier).tolist():
        r, at_us = readings[j], int(ts[j])
        alerts: list[Alert] = []
        if threshold[j]:
            det._check_threshold(r, at_us, alerts)
        if rate[j]:
            det._emit_rate(r, at_us, int(since[j]), float(delta[j]), float(per_minute[j]),
                           alerts)
        if stuck[j]:
            det._emit_stuck(r, at_us, int(run[j]), alerts)
        if outlier[j]:
            assert zt2 is not None and zh2 is not None
            assert t_mean is not None and h_mean is not None
            det._emit_outlier(r, at_us, float(zt2[j]), float(zh2[j]), float(t_mean[j]),
                              float(h_mean[j]), alerts)
        if alerts:
            raised.append((j, alerts))

    # -- the state the one-by-one path would leave ----------------------------------------
    last = readings[-1]
    state.last, state.last_us = last, int(ts[-1])
    if state.silenced:
        det._arm(state)
    state.run = int(run[-1])
    if det._rate:
        keep = int(head[-1])
        state.recent = deque(zip(r_ts[keep:].tolist(), r_t[keep:].tolist(), strict=True))
    end = int(np.searchsorted(a_ts, final_cut, side="right"))  # A items evicted in all
    for _ in range(n_ev):
        items.popleft()
    first = end - n_ev  # the run's own readings already out of the window
    ts_list = ts.tolist()
    items.extend(zip(ts_list[first:], temp[first:].tolist(), hum[first:].tolist(),
                     strict=True))
    # Python floats, as the one-by-one path keeps (not numpy scalars).
    window._st += float(p_t[-1] - p_t[n_ev] - p_t[end])
    window._st2 += float(p_t2[-1] - p_t2[n_ev] - p_t2[end])
    window._sh += float(p_h[-1] - p_h[n_ev] - p_h[end])
    window._sh2 += float(p_h2[-1] - p_h2[n_ev] - p_h2[end])
    window._removed += end
    window._watermark = ts_list[-1]
    window._location = last.location
    for q, values in ((window._tmax, temp), (window._tmin, -temp), (window._hmax, hum),
                      (window._hmin, -hum)):
        _push_run(q, values, ts, final_cut)
    if window._removed > max(256, 4 * len(items)):
        window._refresh()
    return raised


def _push_run(q: deque[tuple[float, int]], values: np.ndarray, ts: np.ndarray,
              cut: int) -> None:
    """A monotonic max-deque after pushing an in-order run and evicting up to ``cut``: the
    entries larger than everything after them (as :func:`sensorlib.engine.windows._push_max`
    one by one)."""
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
