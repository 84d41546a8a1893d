"""What every command shares: messages on stderr and the port check before a server starts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sensorlib.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_port(host: str, port: int, what: str, variable: str) -> None:
    """Refuse before starting a server whose port is taken, naming who holds it."""
    from sensorlib.kafka.ports import check_ports

    check_ports(host, [(port, what, variable)])


#: Variables :func:`_apply_config_file` took from the config file (not in the environment),
#: and the file: ``sensorlib config`` names them as coming from it.
_FROM_FILE: dict[str, str] = {}
_CONFIG_PATH: list[object] = [None]


def _apply_config_file() -> None:
    """Put the config file's settings into this process's environment where the
    environment has none, so that every reader (the ingest limits, the viewers' ports,
    the log format, services and notebooks started from here) sees them."""
    import os

    from sensorlib.config import config_file_path, read_config_file

    path = config_file_path()
    _CONFIG_PATH[0] = path
    if path is None:
        return
    for name, value in read_config_file(path).items():
        if not (os.environ.get(name) or "").strip():
            os.environ[name] = value
            _FROM_FILE[name] = value
