"""The table of rule settings per sensor, as the compacted ``sensor-rules`` topic holds it.

Pure logic, no Kafka (:mod:`sensorlib.kafka.ruletable` reads and writes the topic).

Each record is one **layer**: key ``defaults`` (over the shipped defaults, for every
sensor), ``location:<name>``, ``glob:<pattern of ids>`` or ``sensor:<id>``; value a JSON
object of RuleConfig field -> value (``{"temperature_threshold": 8}``; ``rate_min_span`` in
seconds). A tombstone (no value) deletes the layer. Values are checked by the one validator
of per-sensor settings (:func:`sensorlib.engine.detect.layer_settings`, then RuleConfig with
the layer over it, so each rule checks its own settings).

Layers apply as :class:`~sensorlib.engine.detect.SensorRules` do: location < glob < sensor
id, field by field, over ``defaults`` over the configured settings (and the shipped Cold
Storage layer: a ``location:Cold Storage`` layer of the table wins over it). Among globs
matching one sensor, the alphabetically later pattern wins.

**Version**: a hash of the table's content (:attr:`RulesTable.version`), the same whatever
offsets, compaction or re-writes of equal values led to it, so a processor that restarts and
reads the table again stamps the same ``rulesVersion`` for the same settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from sensorlib.engine.detect import LAYERED, RuleConfig, SensorRules, layer_settings
from sensorlib.errors import ConfigError, InvalidSetting
from sensorlib.model.rejections import _shown, text_problem

__all__ = ["DEFAULTS", "KINDS", "RulesTable", "edited", "layer_key", "parse_layer",
           "settings_json", "validate_layer"]

#: The key of the layer over the defaults, for every sensor.
DEFAULTS = "defaults"
#: The kinds of layer keys (``kind:name``), least specific first.
KINDS = ("location", "glob", "sensor")
#: Longest layer key accepted (a Kafka key; a sensor id is at most 64 characters).
MAX_KEY = 256
#: The largest settings value a record may hold (a layer's settings are ~300 bytes).
MAX_VALUE = 64 * 1024


def parse_layer(key: str) -> tuple[str, str | None]:
    """``"sensor:s1"`` -> ``("sensor", "s1")``; ``"defaults"`` -> ``("defaults", None)``.

    Raises:
        InvalidSetting: field ``layer``, when the key is none of those.
    """
    if key == DEFAULTS:
        return DEFAULTS, None
    kind, sep, name = key.partition(":")
    if not sep or kind not in KINDS or not name.strip():
        raise InvalidSetting("layer", f"must be 'defaults' or one of "
                                      f"{', '.join(k + ':<name>' for k in KINDS)} "
                                      f"(got {_shown(key)})")
    if len(key) > MAX_KEY or any(ord(c) < 32 for c in key):
        raise InvalidSetting("layer", f"at most {MAX_KEY} printable characters")
    # The characters a reading's sensorId / location may not hold cannot name their layer.
    problem = text_problem("location" if kind == "location" else "sensorId", name)
    if problem is not None:
        raise InvalidSetting("layer", problem)
    return kind, name


def layer_key(*, sensor: str | None = None, location: str | None = None,
              glob: str | None = None) -> str:
    """The table key of a layer: exactly one of ``sensor``, ``location``, ``glob``, or none
    of them for ``defaults``."""
    given = [(kind, name) for kind, name in (("sensor", sensor), ("location", location),
                                              ("glob", glob)) if name is not None]
    if len(given) > 1:
        raise InvalidSetting("layer", "give at most one of sensor, location, glob")
    if not given:
        return DEFAULTS
    key = f"{given[0][0]}:{given[0][1]}"
    parse_layer(key)
    return key


def _sensor_rules(key: str, settings: Mapping[str, Any]) -> SensorRules:
    kind, name = parse_layer(key)
    arg = {"sensor": "sensor_id", "location": "location", "glob": "glob"}[kind]
    return SensorRules(settings, **{arg: name})


def validate_layer(key: str, settings: Mapping[str, Any],
                   base: RuleConfig | None = None) -> dict[str, Any]:
    """The typed settings of one layer, checked as the processor will apply them (the layer
    over ``base``, default ``RuleConfig()``). Raises InvalidSetting naming the field."""
    kind, _ = parse_layer(key)
    typed = layer_settings(settings)
    base = base or RuleConfig()
    try:
        if kind == DEFAULTS:
            replace(base, **typed)
        else:
            replace(base, per_sensor=(_sensor_rules(key, typed),))
    except InvalidSetting:
        raise
    except (ConfigError, ValueError, TypeError) as exc:  # a rule's own check of its settings
        text = str(exc)
        named = next((f for f in typed if f in text), "settings")
        raise InvalidSetting(named, text) from None
    return typed


def edited(table: RulesTable, key: str, values: Mapping[str, Any] | None = None,
           unset: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """A layer's settings after ``values`` are set and ``unset`` fields removed (what
    ``sensorlib rules set/unset`` write); None when nothing is left (a tombstone). Checked by
    the table's validator (InvalidSetting naming the field)."""
    parse_layer(key)
    merged = dict(table.layers.get(key, {}))
    merged.update(layer_settings(values or {}))
    for name in unset:
        if name not in LAYERED:
            raise InvalidSetting(name, f"unknown setting; known: {', '.join(LAYERED)}")
        merged.pop(name, None)
    return validate_layer(key, merged) if merged else None


def settings_json(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Typed settings as JSON values (``rate_min_span`` in seconds)."""
    return {k: v.total_seconds() if isinstance(v, timedelta) else v
            for k, v in sorted(settings.items())}


def decode_value(value: bytes | str) -> Any:
    """A record's value as JSON (InvalidSetting ``settings`` when it is not JSON, nests too
    deep for the parser, or is larger than :data:`MAX_VALUE`: a topic record may hold
    anything, and the processor reads every one at each start)."""
    if len(value) > MAX_VALUE:
        raise InvalidSetting("settings", f"{len(value):,} bytes, more than {MAX_VALUE:,}")
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidSetting("settings", f"not JSON: {type(exc).__name__}: "
                                         f"{str(exc)[:200]}") from None


def encode_value(settings: Mapping[str, Any]) -> bytes:
    """A layer's settings as a record's value (canonical JSON)."""
    return json.dumps(settings_json(settings), sort_keys=True,
                      separators=(",", ":")).encode()


@dataclass(frozen=True)
class RulesTable:
    """The layers of the ``sensor-rules`` table (key -> typed settings), folded from its
    records in offset order (:meth:`apply`).

    ``offset``: the newest record applied (-1: none); ``skipped``: records refused (bad key
    or value; the layer keeps its previous settings) with why.
    """

    layers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    offset: int = -1
    skipped: tuple[tuple[int, str], ...] = ()

    def apply(self, key: bytes | str | None, value: bytes | str | None, offset: int,
              base: RuleConfig | None = None) -> RulesTable:
        """The table after one record (``value`` None: a tombstone, the layer deleted)."""
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        layers = dict(self.layers)
        try:
            if key is None:
                raise InvalidSetting("layer", "a record without a key")
            if value is None:
                parse_layer(key)
                layers.pop(key, None)
            else:
                layers[key] = validate_layer(key, decode_value(value), base)
        except InvalidSetting as exc:
            return replace(self, offset=max(self.offset, offset),
                           skipped=(*self.skipped, (offset, f"{(key or '')[:MAX_KEY]}: {exc}"))[-100:])
        return RulesTable(layers, max(self.offset, offset), self.skipped)

    @property
    def version(self) -> str:
        """A hash of the layers' content (12 hex digits): equal tables, equal versions."""
        canonical = json.dumps({k: settings_json(v) for k, v in self.layers.items()},
                               sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def config(self, base: RuleConfig) -> RuleConfig:
        """``base`` with the table's layers over it: ``defaults`` replaces its fields, the
        others come after its own ``per_sensor`` layers (so they win among equals)."""
        defaults = dict(self.layers.get(DEFAULTS, {}))
        ordered = sorted((k for k in self.layers if k != DEFAULTS),
                         key=lambda k: (KINDS.index(parse_layer(k)[0]), k))
        layers = tuple(_sensor_rules(k, self.layers[k]) for k in ordered)
        return replace(base, **defaults, per_sensor=(*base.per_sensor, *layers))

    def effective(self, base: RuleConfig, sensor_id: str, location: str = ""
                  ) -> dict[str, Any]:
        """The settings in force for one sensor: ``{"settings": {field: value},
        "layers": [keys that apply, least specific first]}`` (JSON values)."""
        config = self.config(base)
        applied = [k for k in sorted(self.layers, key=_order)
                   if k == DEFAULTS or _sensor_rules(k, self.layers[k]).matches(sensor_id,
                                                                                location)]
        mine = config.for_sensor(sensor_id, location)
        return {"settings": settings_json({k: getattr(mine, k) for k in LAYERED}),
                "layers": applied}

    def to_json(self) -> dict[str, Any]:
        """``{"version", "offset", "layers": {key: settings}}`` (the API's and CLI's shape)."""
        return {"version": self.version, "offset": self.offset,
                "layers": {k: settings_json(self.layers[k]) for k in sorted(self.layers,
                                                                           key=_order)}}


def _order(key: str) -> tuple[int, str]:
    kind, _ = parse_layer(key)
    return (-1 if kind == DEFAULTS else KINDS.index(kind)), key

