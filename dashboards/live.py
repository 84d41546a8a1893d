"""The live sensor dashboard: ``panel serve dashboards/live.py`` (or ``sensorlib dashboard``)."""

from sensorlib.dashboard.app import build_app

build_app().servable()
