"""Watching sensorlib itself: OpenTelemetry traces carried in Kafka headers (``tracing``),
each service's Prometheus metrics (``metrics``), text or JSON logs (``logs``) and the Zipkin
and Prometheus viewers ``sensorlib up --observe`` starts (``viewers``)."""
