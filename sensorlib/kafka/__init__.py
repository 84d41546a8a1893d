"""Everything that talks to Apache Kafka: clients, topics and consumer options (``clients``),
the bounded topic reader (``fetch``), the fast record-batch unpacking (``records``), dead
letters (``deadletters``), and the local broker sensorlib runs itself (``broker``, from the
jars of ``jars``, on ports checked by ``ports``)."""
