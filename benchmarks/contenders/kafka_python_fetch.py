"""kafka-python's own fetch with no decoding at all: the wall for any kafka-python consumer.

    python kafka_python_fetch.py --bootstrap H:P --topic T --group G --n N [--fast]

A group member with the processor's fetch settings that only counts records, committing
after every poll; exits after ``--n`` records. With ``--fast``, the records are unpacked
by ``sensorlib.kafka.records`` (what the processor does) instead of kafka-python's own unpacking.
"""

from __future__ import annotations

import argparse

from kafka import KafkaConsumer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--max-records", type=int, default=20_000)  # the processor's
    parser.add_argument("--fast", action="store_true",
                        help="unpack records with sensorlib.kafka.records, as the processor does")
    args = parser.parse_args()
    consumer = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, group_id=args.group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_poll_records=args.max_records,
                             max_partition_fetch_bytes=4 * 1024 * 1024,
                             isolation_level="read_committed")
    if args.fast:
        from sensorlib.kafka.records import install

        if not install(consumer):
            raise SystemExit("sensorlib.kafka.records cannot be installed on this kafka-python")
    seen = 0
    while seen < args.n:
        batch = consumer.poll(timeout_ms=1000)
        for records in batch.values():
            seen += len(records)
        if batch:
            consumer.commit()
    consumer.close()


if __name__ == "__main__":
    main()
