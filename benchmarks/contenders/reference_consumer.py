"""The reference sample's python-consumer, as a confluent-kafka loop (benchmark baseline).

    python reference_consumer.py --bootstrap H:P --topic T --alerts A --group G --n N

What the reference does per reading: ``json.loads`` the value, append it to the sensor's
``deque(maxlen=150)`` (5 minutes at one reading per 2 s), recompute the sensor's average
temperature and humidity over that deque, and publish an alert when the reading is above
35 °C or 90 %. Written to be fast, not a straw man: one ``consume()`` call per batch of up
to 10,000 messages, the averages over plain float deques with ``sum()`` (C), the alert
producer polled once per batch. Offsets are auto-committed (every 200 ms rather than the
sample's 5 s) and committed once more, synchronously, after the last record; the process
then exits (it has processed ``--n`` records).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict, deque

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--alerts", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--n", type=int, required=True)
    args = parser.parse_args()

    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "auto.offset.reset": "earliest",
                         # The sample's default is 5 s; 200 ms lets the race end sooner.
                         "auto.commit.interval.ms": 200})
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    consumer.subscribe([args.topic])
    temps: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=150))
    hums: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=150))
    aggregates: dict[str, dict[str, float]] = {}
    seen = 0
    while seen < args.n:
        messages = consumer.consume(num_messages=10_000, timeout=1.0)
        for msg in messages:
            if msg.error():
                continue
            event = json.loads(msg.value())
            sensor = event.get("SensorId") or event.get("sensorId")
            temperature = event.get("Temperature", event.get("temperature"))
            humidity = event.get("Humidity", event.get("humidity"))
            t, h = temps[sensor], hums[sensor]
            t.append(temperature)
            h.append(humidity)
            aggregates[sensor] = {"avgTemperature": sum(t) / len(t),
                                  "avgHumidity": sum(h) / len(h), "count": len(t)}
            if temperature > 35 or humidity > 90:
                alert = {"sensorId": sensor, "temperature": temperature, "humidity": humidity,
                         "timestamp": event.get("Timestamp", event.get("timestamp")),
                         "reason": "threshold"}
                producer.produce(args.alerts, key=sensor, value=json.dumps(alert))
            seen += 1
        if messages:
            producer.poll(0)
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:  # nothing new since the last auto-commit
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    main()
