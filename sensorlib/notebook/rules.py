"""Read and set rule settings per sensor from Python (a notebook): the ``sensor-rules`` table.

>>> import sensorlib
>>> sensorlib.set_rules(sensor="sensor-03", temperature_threshold=7.5)   # doctest: +SKIP
>>> sensorlib.rules_table()                                               # doctest: +SKIP
>>> sensorlib.rules_table(sensor="sensor-03", location="Cold Storage")    # doctest: +SKIP

The live processor applies a change within a poll (no restart); its alerts carry the table's
version as ``rulesVersion``. ``sensorlib rules show/set/unset`` and ``PUT /api/rules/{layer}``
write the same topic.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sensorlib.config import Settings
from sensorlib.engine.detect import LAYERED
from sensorlib.kafka.ruletable import edit_layer, read_rules
from sensorlib.rules.table import layer_key, settings_json

__all__ = ["rules_table", "set_rules", "unset_rules"]


def rules_table(settings: Settings | None = None, *, sensor: str | None = None,
                location: str = "") -> pd.DataFrame:
    """The ``sensor-rules`` table as a frame: one row per layer (``defaults``,
    ``location:…``, ``glob:…``, ``sensor:…``), one column per setting (empty where the layer
    does not set it), the shipped/configured defaults in the first row ``(configured)``.

    With ``sensor`` (and its ``location``, for location layers): the settings in force for
    that sensor, one row ``effective``, then the layers that apply. ``frame.attrs`` holds the
    table's ``version`` (as alerts carry it in ``rulesVersion``) and ``offset``.
    """
    from sensorlib.processor.loop import rules_from_settings

    settings = settings or Settings.from_env()
    table = read_rules(settings)
    base = rules_from_settings(settings)
    rows: dict[str, dict[str, Any]] = {}
    if sensor is None:
        rows["(configured)"] = settings_json({k: getattr(base, k) for k in LAYERED})
        rows.update(table.to_json()["layers"])
    else:
        shown = table.effective(base, sensor, location)
        rows["effective"] = shown["settings"]
        for key in shown["layers"]:
            rows[key] = settings_json(table.layers[key])
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(LAYERED))
    frame.index.name = "layer"
    frame.attrs.update(version=table.version, offset=table.offset)
    return frame


def set_rules(settings: Settings | None = None, *, sensor: str | None = None,
              location: str | None = None, glob: str | None = None,
              **values: Any) -> dict[str, Any] | None:
    """Set rule settings of one layer (one of ``sensor``, ``location``, ``glob``; none: the
    ``defaults`` layer), keeping its other settings: ``set_rules(sensor="s1",
    temperature_threshold=30)``. Returns the layer's settings now. Raises InvalidSetting
    naming a bad field (nothing is written then)."""
    settings = settings or Settings.from_env()
    key = layer_key(sensor=sensor, location=location, glob=glob)
    return edit_layer(settings, key, values)[1]


def unset_rules(*names: str, settings: Settings | None = None, sensor: str | None = None,
                location: str | None = None, glob: str | None = None) -> dict[str, Any] | None:
    """Remove settings from one layer (all of them, deleting it, when no name is given).
    Returns what is left (None: the layer is gone)."""
    settings = settings or Settings.from_env()
    key = layer_key(sensor=sensor, location=location, glob=glob)
    return edit_layer(settings, key, None, names or LAYERED)[1]
