"""Watching sensorlib itself: traces, metrics and logs (``telemetry``) and the trace/metric
viewers it starts (``viewers``)."""
