"""Getting readings in: the simulator (``simulate``), the Kafka producer
(``produce``) and the HTTP ingestion bridge (``bridge``: body parsing, idempotency,
back-pressure)."""
