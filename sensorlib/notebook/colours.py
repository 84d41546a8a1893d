"""The one colour table for statuses and severities: dashboard, report and notebook figures.

Critical red, warning amber, normal green, stale grey — whatever order the data comes in,
and never a colour a sensor's line uses (see :data:`sensorlib.notebook.plots.SENSOR_PALETTE`).
"""

from __future__ import annotations

__all__ = ["SEVERITY_COLOURS", "STATUS_COLOURS"]

#: Status of a sensor (dashboard card, report table) -> colour.
STATUS_COLOURS = {"critical": "#ff3b3b", "warning": "#f5a623", "normal": "#2ecc71",
                  "stale": "#8b949e"}
#: Severity of an alert -> colour (the same as the status of that name).
SEVERITY_COLOURS = {"critical": STATUS_COLOURS["critical"], "warning": STATUS_COLOURS["warning"]}
