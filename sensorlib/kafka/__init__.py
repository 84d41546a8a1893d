"""Everything that talks to Apache Kafka: client settings and factories (``clients``), topics
and consumer groups (``admin``), reading a topic without a group (``reader``) and in bounded
replay chunks (``fetch``), the fast record-batch unpacking (``records``), dead letters
(``deadletters``), and the local broker sensorlib runs itself (``broker``, from the jars of
``jars``, on ports checked by ``ports``)."""
