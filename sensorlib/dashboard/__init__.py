"""The live dashboard: a Panel app, served by ``sensorlib dashboard`` (or ``panel serve``).

Pure state in :mod:`~sensorlib.dashboard.state`, escaped HTML in
:mod:`~sensorlib.dashboard.render`, the Kafka consumers in :mod:`~sensorlib.dashboard.feed`,
admin queries in :mod:`~sensorlib.dashboard.kafka_view`, the Ops tab in
:mod:`~sensorlib.dashboard.ops_tab` (its arithmetic in :mod:`~sensorlib.dashboard.ops`),
``GET /metrics`` in :mod:`~sensorlib.dashboard.metrics`, the layout in
:mod:`~sensorlib.dashboard.app`, the Host/Origin guard in :mod:`~sensorlib.services.hosts`
and the guarded ``panel serve`` in :mod:`~sensorlib.dashboard.server`. This module only
knows how to launch the server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sensorlib.config import Settings
from sensorlib.services.hosts import websocket_origins

__all__ = ["SCRIPTS", "app_path", "serve", "serve_command"]


#: The scripts ``panel serve`` runs, shipped inside the package (a wheel has no
#: ``dashboards/``): ``live.py`` (the app; in a checkout a link to ``dashboards/live.py``,
#: which setuptools copies into the wheel) and ``startup.py`` (``--setup``).
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def app_path() -> Path:
    """The dashboard script ``panel serve`` runs: ``live.py`` in the package (the URL is
    ``/live`` after its name); the same file as ``dashboards/live.py`` of a checkout."""
    return SCRIPTS / "live.py"


def serve_command(settings: Settings, *, port: int | None = None, host: str | None = None,
                  show: bool = False) -> list[str]:
    """The argv that runs the dashboard server (``sensorlib up`` and ``sensorlib dashboard``).

    ``panel serve`` behind the Host guard (:mod:`sensorlib.dashboard.server`); the
    websocket Origin allow-list is the same names at ``port``. The child reads
    everything else (bootstrap servers, topics, groups, allowed hosts) from the
    environment, so run it with ``settings.to_env()`` merged into ``os.environ``.
    """
    port = settings.dashboard_port if port is None else port
    host = host or settings.host
    argv = [sys.executable, "-m", "sensorlib.dashboard.server", str(app_path()),
            "--port", str(port), "--address", host,
            # Start consuming at server start, not at the first page view.
            "--setup", str(SCRIPTS / "startup.py"),
            # /liveness answers without opening a session (what `sensorlib up` polls).
            "--liveness",
            # GET /metrics (Prometheus): sessions, push latency, records consumed.
            "--plugins", "sensorlib.dashboard.metrics"]
    for origin in websocket_origins(settings.replace(host=host), port):
        argv += ["--allow-websocket-origin", origin]
    # Closed tabs are dropped after 10 s rather than 15 min: memory stays flat however
    # many sessions come and go.
    argv += ["--check-unused-sessions", "2000", "--unused-session-lifetime", "10000",
             "--num-procs", "1"]
    if show:
        argv.append("--show")
    return argv


def serve(settings: Settings, *, show: bool = False) -> None:
    """Become the dashboard server on ``settings``' host and port (same pid: Ctrl-C and
    SIGTERM reach it directly, no orphan). Does not return."""
    argv = serve_command(settings, show=show)
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    print(f"Dashboard on http://{shown}:{settings.dashboard_port}/live "
          f"(Kafka {settings.bootstrap_servers}); Ctrl-C to stop.", file=sys.stderr, flush=True)
    if settings.host in ("0.0.0.0", "::") and not settings.allowed_hosts:
        print("It answers only to the Host names " + ", ".join(settings.hosts())
              + "; set SENSORLIB_ALLOWED_HOSTS to reach it by another name.",
              file=sys.stderr, flush=True)
    os.execve(argv[0], argv, {**os.environ, **settings.to_env()})
