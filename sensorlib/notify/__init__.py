"""Alerts reach people: the notifier service (``notifier``) posting to Prometheus
Alertmanager, which sensorlib can run itself (``alertmanager``)."""
