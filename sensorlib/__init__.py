"""sensorlib: watch, analyse and replay IoT sensor event streams on Apache Kafka."""

__version__ = "0.1.0"
