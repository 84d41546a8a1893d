"""A sensor's in-order run of readings through its window and the rules at once (numpy).

The processor takes up to 20,000 records per poll; grouped by sensor, each sensor's share is
usually a run of readings in event-time order, all newer than anything its window holds.
For such a run, :func:`process_run` asks the window for its count and moments before each
reading (:meth:`SensorWindow.plan_run <sensorlib.engine.windows.SensorWindow.plan_run>`), the
detector for the alerts (:meth:`Detector.observe_run <sensorlib.engine.detect.Detector.observe_run>`,
which runs each rule's columnar check, :meth:`sensorlib.rules.Rule.update_many`, and applies
cooldowns in order), then adds the run to the window: the alerts, the window and the rule
state are what :meth:`Pipeline.process_us <sensorlib.engine.pipeline.Pipeline.process_us>` reading by
reading would give. A run that is not in order, a sensor seen for the first time, one with a
gap long enough to evict the sensor (``Pipeline.evict_after``), or a rule that declines (an
outlier score within 1e-12 of its limit) returns None and takes the one-by-one path.

Equality with the one-by-one path: the rules' columnar checks use the same IEEE operations
on the same values, except the window's sums, added in a different order: means and
variances agree to about 1e-15 relative, and the outlier rule leaves a decision that close
to its limit to the one-by-one path. ``tests/unit/test_rules_contract.py`` holds every
registered rule's two checks to the same findings and state; ``tests/unit/test_runs.py``
the two paths of the pipeline to the same alerts and aggregates over random streams with
faults, late and out-of-order readings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from sensorlib.rules import Run

if TYPE_CHECKING:
    from sensorlib.engine.detect import Detector
    from sensorlib.engine.windows import SensorWindow
    from sensorlib.model.events import Alert

__all__ = ["MIN_RUN", "process_run"]

#: Shorter runs take the one-by-one path: the array set-up costs about as much as ~20
#: readings' worth of it.
MIN_RUN = 24


def process_run(window: SensorWindow | None, detector: Detector, sensor_id: str,
                reading_at: Callable[[int], Any], ts: np.ndarray, temp: np.ndarray,
                hum: np.ndarray, evict_us: int) -> list[tuple[int, list[Alert]]] | None:
    """Process one sensor's run of readings (event times ``ts`` in µs, temperatures and
    humidities as arrays; ``reading_at(j)`` the j-th reading, asked for only where an alert
    needs it and for the last one). ``evict_us``: a step this long starts the sensor afresh.

    Returns ``(position in the run, alerts)`` for each reading that raised alerts, or None
    when the run must take the one-by-one path (nothing has been changed then).
    """
    last_us = detector.last_us(sensor_id)
    wm_old = None if window is None else window.watermark_us
    if window is None or last_us is None or wm_old is None:
        return None
    steps = np.diff(ts)
    if (ts[0] <= wm_old or ts[0] <= last_us or ts[0] > wm_old + evict_us
            or (steps <= 0).any() or (steps > evict_us).any()):
        return None
    count, moments, commit = window.plan_run(ts, temp, hum, detector.moments_from)
    run = Run(sensor_id, ts, temp, hum, count, *(moments or ()))
    raised = detector.observe_run(sensor_id, run, reading_at)
    if raised is None:
        return None
    commit(reading_at(len(ts) - 1).location)
    return raised
