"""``sensorlib db start|stop|status``: the local PostgreSQL of the archive's catalog."""

from __future__ import annotations

import argparse

from sensorlib.cli.common import _say
from sensorlib.config import Settings


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    """Start, stop or describe the local PostgreSQL (:mod:`sensorlib.history.postgres`).

    ``start`` prints the catalog's SQLAlchemy URL on stdout (``export
    SENSORLIB_CATALOG_URI=$(sensorlib db start)``); ``status`` exits 1 when it is not running.
    """
    from sensorlib.history.postgres import LocalPostgres

    db = LocalPostgres.from_settings(settings)
    if args.action == "stop":
        _say("PostgreSQL stopped." if db.stop(timeout=args.timeout)
             else "PostgreSQL was not running.")
        return 0
    if args.action == "status":
        row = db.status()
        state = "running" if row["pid"] else "stopped"
        print(f"postgres: {state} pid={row['pid']} port={row['port']} "
              f"listening={row['listening']} data={row['data']} log={row['log']}")
        print(f"url: {row['uri']}")
        _in_use(settings, db.uri)
        return 0 if row["pid"] else 1
    already = db.running()
    db.start(timeout=args.timeout, progress=_say)
    if already:
        _say("(it was already running)")
    _say(f"Use it: export SENSORLIB_CATALOG_URI={db.uri}  (or `sensorlib up --catalog "
         "postgres`); stop it with `sensorlib db stop`.")
    _in_use(settings, db.uri)
    print(db.uri)
    return 0


def _in_use(settings: Settings, uri: str) -> None:
    """Say when the catalog in force is another one than this server's."""
    from sensorlib.history.query import catalog_uri, describe_catalog

    if catalog_uri(settings) != uri:
        _say(f"(the archive's catalog in force is {describe_catalog(settings)}, not this "
             "server: SENSORLIB_CATALOG_URI)")
