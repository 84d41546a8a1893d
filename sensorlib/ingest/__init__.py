"""Getting readings in: the simulator (``simulate``), the Kafka producer (``produce``), and
the HTTP ingestion path: request bodies (``body``) and the bounded, idempotent asyncio/Kafka
bridge (``bridge``). Its limits are :class:`sensorlib.config.IngestSettings`."""
