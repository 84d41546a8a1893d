"""``sensorlib rules show/set/unset``: the rule settings per sensor, in the ``sensor-rules``
topic (the live processor applies a change without a restart)."""

from __future__ import annotations

import argparse
import json

from sensorlib.config import Settings
from sensorlib.errors import InvalidSetting, UsageError

__all__ = ["add_rules_parser", "cmd_rules"]


def add_rules_parser(sub: argparse._SubParsersAction) -> None:
    """The ``rules`` command and its ``show``, ``set``, ``unset`` actions."""
    rules = sub.add_parser(
        "rules", help="show or change rule settings per sensor, location or glob of ids",
        description="Rule settings are layered: the configured defaults, then the 'defaults' "
                    "layer, then location, glob and sensor-id layers (the more specific wins, "
                    "field by field). They live in the compacted topic sensor-rules "
                    "(SENSORLIB_TOPIC_RULES); the processor applies a change without a "
                    "restart and stamps the table's version on its alerts (rulesVersion).")
    actions = rules.add_subparsers(dest="rules_action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="the layers and the settings in force")
    show.add_argument("--sensor", metavar="ID", help="the settings in force for this sensor")
    show.add_argument("--location", metavar="NAME", default="",
                      help="with --sensor: its location (location layers match by it)")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    for name, words in (("set", "set settings of one layer (others kept)"),
                        ("unset", "remove settings of one layer (all: delete it)")):
        action = actions.add_parser(name, help=words)
        which = action.add_mutually_exclusive_group()
        which.add_argument("--sensor", metavar="ID", help="the layer of this sensor id")
        which.add_argument("--location", metavar="NAME", help="the layer of this location")
        which.add_argument("--glob", metavar="PATTERN",
                           help="the layer of the sensor ids matching (e.g. 'freezer-*')")
        which.add_argument("--defaults", action="store_true",
                           help="the layer over the configured defaults, for every sensor")
        if name == "set":
            action.add_argument("values", nargs="+", metavar="KEY=VALUE",
                                help="e.g. temperature_threshold=8 stuck_readings=5 "
                                     "rate_min_span=20 (seconds)")
        else:
            action.add_argument("names", nargs="*", metavar="KEY",
                                help="settings to remove (none: the whole layer)")
    rules.set_defaults(handler=cmd_rules)


def cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    """``sensorlib rules show|set|unset``."""
    from sensorlib.engine.detect import LAYERED
    from sensorlib.kafka.ruletable import edit_layer, read_rules
    from sensorlib.processor.loop import rules_from_settings
    from sensorlib.rules.table import layer_key, settings_json

    if args.rules_action == "show":
        table = read_rules(settings)
        base = rules_from_settings(settings)
        if args.sensor:
            shown = {"sensor": args.sensor, "version": table.version,
                     **table.effective(base, args.sensor, args.location)}
            shown["layerSettings"] = {k: settings_json(table.layers[k]) for k in shown["layers"]}
        else:
            shown = table.to_json()
            shown["configured"] = settings_json({k: getattr(base, k) for k in LAYERED})
        if args.json:
            print(json.dumps(shown, indent=2))
        else:
            print(_text(shown))
        return 0
    if not (args.sensor or args.location or args.glob or args.defaults):
        raise UsageError(f"rules {args.rules_action}: give the layer: --sensor ID, "
                         "--location NAME, --glob PATTERN or --defaults")
    key = layer_key(sensor=args.sensor, location=args.location, glob=args.glob)
    if args.rules_action == "set":
        values = {}
        for item in args.values:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise InvalidSetting(item, "expected KEY=VALUE (e.g. temperature_threshold=8)")
            values[name.strip()] = value.strip()
        offset, now = edit_layer(settings, key, values)
    else:
        offset, now = edit_layer(settings, key, None, tuple(args.names) or LAYERED)
    state = json.dumps(settings_json(now)) if now is not None else "(deleted)"
    print(f"{key}: {state}  (written at offset {offset} of {settings.topic_rules})")
    return 0


def _text(shown: dict) -> str:
    """``rules show`` for people."""
    lines = [f"rules version {shown['version']}"]
    if "sensor" in shown:
        lines.append(f"settings in force for {shown['sensor']} "
                     f"(layers: {', '.join(shown['layers']) or 'none'}):")
        lines += [f"  {k} = {v:g}" for k, v in shown["settings"].items()]
        return "\n".join(lines)
    lines.append("configured defaults:")
    lines += [f"  {k} = {v:g}" for k, v in shown["configured"].items()]
    if not shown["layers"]:
        lines.append("no layers (set one: sensorlib rules set --sensor ID key=value)")
    for key, values in shown["layers"].items():
        lines.append(f"{key}: " + ", ".join(f"{k}={v:g}" for k, v in values.items()))
    return "\n".join(lines)
