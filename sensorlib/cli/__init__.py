"""The ``sensorlib`` command: a thin layer that parses arguments and calls the library.

One module per group of commands: :mod:`~sensorlib.cli.commands` (what runs things),
:mod:`~sensorlib.cli.status`, :mod:`~sensorlib.cli.tools` (config, Kafka's tools, completion),
and the argument :mod:`~sensorlib.cli.parser`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sensorlib.config import Settings
from sensorlib.errors import ConfigError, SensorlibError

Handler = Callable[[argparse.Namespace, Settings], int]
from sensorlib.cli.common import _apply_config_file, _say
from sensorlib.cli.parser import MAX_WORKERS, build_parser, exit_codes_text

__all__ = ["MAX_WORKERS", "build_parser", "exit_codes_text", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sensorlib`` console script; its exit codes are :data:`EXIT_CODES`
    (each error class's ``exit_code``)."""
    from sensorlib.observe.logs import quiet_kafka_noise

    quiet_kafka_noise()  # kafka-python's retried, transient errors are not ERRORs here either
    try:
        _apply_config_file()
    except ConfigError as exc:
        if not _help_asked(argv):
            _say(f"error: {exc}")
            return exc.exit_code
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from sensorlib import __version__

        print(__version__)
        return 0
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings) or 0)
    except SensorlibError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _help_asked(argv: Sequence[str] | None) -> bool:
    words = sys.argv[1:] if argv is None else list(argv)
    return any(w in ("-h", "--help", "--version") for w in words)


