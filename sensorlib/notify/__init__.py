"""Alerts reach people: the notifier service (``notifier``) posting alerts to Prometheus
Alertmanager as ``payload`` builds them, and the local Alertmanager ``sensorlib up --notify``
runs (``alertmanager``)."""
