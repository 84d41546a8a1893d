"""The live sensor dashboard.

Serve it with ``sensorlib dashboard`` (``panel serve`` with a Host check on every route,
see ``sensorlib.dashboard.server``). A plain ``panel serve dashboards/live.py`` works
too, but then only the app itself checks the Host: pass ``--allow-websocket-origin
localhost:5006`` (one per name in SENSORLIB_ALLOWED_HOSTS) and prefer the former. Add
``--plugins sensorlib.dashboard.metrics`` for ``GET /metrics`` (``sensorlib dashboard``
always serves it).
"""

from sensorlib.dashboard.app import build_app

build_app().servable()
