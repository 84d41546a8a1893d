"""What-if runs of the rules: vary one rule's main knob; which alerts it adds or drops, and when.

Each variant replays the same readings through the live windows and rules
(:func:`sensorlib.replay.reader.replay_rules`) with one :class:`sensorlib.engine.detect.RuleConfig`
field changed. Alert ids are derived from the sensor, the rule and the reading, so an
alert of a variant with the same id as a live alert is the same alert: the rest are
*extra* (the variant raises them, the live setting does not) or *missing* (the other way).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from sensorlib.engine.detect import RuleConfig
from sensorlib.rules import Knob

__all__ = ["KNOBS", "Knob", "Sweep", "sweep"]


def _knobs() -> dict[str, Knob]:
    from sensorlib.rules import registry

    return {label: knob for cls in registry().values() for label, knob in cls.knobs.items()}


#: The main knob of each rule that has one (the silent rule's is a duration), from each
#: rule's ``knobs`` (:mod:`sensorlib.rules`).
KNOBS = _knobs()


@dataclass
class Sweep:
    """The outcome of :func:`sweep`.

    Attributes:
        table: one row per value: ``alerts`` of the knob's rule, ``extra`` and ``missing``
            against the live setting, and ``live`` (True for the live value).
        extra, missing: per value, the alerts of the knob's rule the variant adds / drops.
        timeline: per value, a frame of ``extra`` and ``missing`` alerts per bucket
            (index: UTC bucket start).
    """

    knob: Knob
    live_value: Any
    table: pd.DataFrame
    extra: dict[str, pd.DataFrame]
    missing: dict[str, pd.DataFrame]
    timeline: dict[str, pd.DataFrame]


def _alerts(readings: pd.DataFrame, variants: list[RuleConfig], only: str
            ) -> list[pd.DataFrame]:
    from sensorlib.engine.pipeline import run_frame_variants

    # Only the knob's rule runs: the others would raise the same alerts in every variant.
    # The frame is sorted and validated once for all of them (run_frame_variants).
    runs = run_frame_variants(readings, [replace(r, rules=frozenset({only})) for r in variants])
    return [alerts[alerts["rule"] == only] for alerts in runs]


def sweep(readings: pd.DataFrame, knob: str | Knob, values: list[Any], *,
          base: RuleConfig | None = None, bucket: str = "1h") -> Sweep:
    """Replay ``readings`` once per value of ``knob`` (plus the live value, if absent).

    ``base`` is the live configuration (default: the built-in defaults); its value of
    the knob is the reference that extra and missing alerts are counted against.
    """
    k = KNOBS[knob] if isinstance(knob, str) else knob
    base = base or RuleConfig()
    live_value = getattr(base, k.field)
    ordered = list(dict.fromkeys([live_value, *values]))
    runs = dict(zip(ordered, _alerts(readings, [replace(base, **{k.field: v}) for v in ordered],
                                     k.rule), strict=True))
    live_ids = set(runs[live_value]["alertId"])
    rows, extra, missing, timeline = [], {}, {}, {}
    start = readings["timestamp"].min().floor(bucket) if not readings.empty else None
    end = readings["timestamp"].max().floor(bucket) if not readings.empty else None
    grid = pd.date_range(start, end, freq=bucket) if start is not None else pd.DatetimeIndex([])
    for value, alerts in runs.items():
        label = k.show(value) + (" (live)" if value == live_value else "")
        ids = set(alerts["alertId"])
        extra[label] = alerts[~alerts["alertId"].isin(live_ids)]
        missing[label] = runs[live_value][~runs[live_value]["alertId"].isin(ids)]
        rows.append({"value": k.show(value), "live": value == live_value, "alerts": len(alerts),
                     "extra": len(extra[label]), "missing": len(missing[label])})

        def per(frame: pd.DataFrame) -> pd.Series:
            return frame["timestamp"].dt.floor(bucket).value_counts().reindex(grid, fill_value=0)

        timeline[label] = pd.DataFrame({"extra": per(extra[label]),
                                        "missing": per(missing[label])}).astype("int64")
    table = pd.DataFrame(rows).set_index("value")
    table.index.name = k.label
    return Sweep(k, live_value, table, extra, missing, timeline)
