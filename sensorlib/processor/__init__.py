"""The stream processor: the consume-process-produce loop with its transaction, health and
warm-up (``loop``)."""
