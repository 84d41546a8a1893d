"""Back-fill a broker with history that ends now: the simulated fleet, its alerts, dead letters.

Used by ``make screenshots`` and by hand, to see the notebooks and the report at a week's
scale without waiting a week::

    .venv/bin/python notebooks/tools/backfill.py --days 7            # localhost:9092
    .venv/bin/python notebooks/tools/backfill.py --days 1 --interval 10 --hostile

Readings come from :class:`sensorlib.ingest.simulate.Simulator` (event times from ``now - days``
up to now), alerts from the live rules over them (:class:`sensorlib.engine.pipeline.Pipeline` on
event time, as the processor raises them). ``--dead-letters N`` also writes N invalid
records to the readings topic, each with its dead letter (the processor's own
:func:`sensorlib.processor.loop.dead_letter` of the real validation error) on the DLQ topic.
``--hostile`` adds a sensor whose id and location are HTML/JS, to check that every
output shows them as text.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sensorlib.config import Settings
from sensorlib.engine.pipeline import Pipeline
from sensorlib.ingest.simulate import REFERENCE_FLEET, SensorSpec, Simulator
from sensorlib.kafka.admin import ensure_topics
from sensorlib.kafka.clients import make_producer
from sensorlib.model.events import Alert, Reading

#: A sensor id and a location that run script if any output inserts them as HTML.
HOSTILE_ID = "<img src=x onerror=alert(document.domain)>"
HOSTILE_LOCATION = "<script>alert(2)</script>"
HOSTILE = SensorSpec(HOSTILE_ID, HOSTILE_LOCATION, 36.0, 50.0)

#: Invalid record bodies, as they reach the processor (each fails validation).
BAD_BODIES: tuple[bytes, ...] = (
    (b'{"SensorId": "sensor-01", "Temperature": "hot", "Humidity": 50, '
    b'"Location": "Warehouse A", "Timestamp": "%(ts)s"}'),
    (b'{"SensorId": "sensor-02", "Temperature": 21.5, "Humidity": 140, '
    b'"Location": "Warehouse B", "Timestamp": "%(ts)s"}'),
    b'{"SensorId": "", "Temperature": 21.5, "Humidity": 50, "Timestamp": "%(ts)s"}',
    b'{"SensorId": "sensor-04", "Temperature": 20.0, "Humidity": 45}garbage',
    (b'{"SensorId": "sensor-05", "Temperature": 28.1, "Humidity": 65, '
    b'"Location": "Production Floor", "Timestamp": "yesterday-ish"}'),
    b"\xff\xfe not utf-8",
)
#: An invalid body whose text is HTML/JS (with ``--hostile``): the dead-letter view must show it.
HOSTILE_BODY = (b'{"SensorId": "<img src=x onerror=alert(3)>", "Temperature": '
                b'"<script>alert(4)</script>", "Humidity": 50}')


@dataclass
class Filled:
    """What a back-fill published."""

    readings: int
    alerts: int
    dead_letters: int
    start: datetime
    end: datetime


@dataclass
class _Record:
    """What :func:`sensorlib.processor.loop.dead_letter` reads from a consumed record."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: str | None
    value: bytes


def history(days: float, interval: float, seed: int, hostile: bool,
            end: datetime | None = None) -> tuple[list[Reading], datetime, datetime]:
    """The fleet's readings from ``end - days`` to ``end`` (default now)."""
    end = end or datetime.now(UTC)
    start = end - timedelta(days=days)
    fleet = (*REFERENCE_FLEET, HOSTILE) if hostile else REFERENCE_FLEET
    sim = Simulator(fleet, seed=seed, interval=interval, start=start)
    readings = [r for r in sim.stream(duration=days * 86_400) if r.timestamp < end]
    return readings, start, end


def _bad_records(n: int, start: datetime, end: datetime, seed: int, hostile: bool = False
                 ) -> Iterator[tuple[str, bytes, datetime]]:
    """Invalid bodies at random times of the period (the time they arrived)."""
    rnd = random.Random(seed)
    span = (end - start).total_seconds()
    bodies = (*BAD_BODIES, HOSTILE_BODY) if hostile else BAD_BODIES
    for i in range(n):
        t = start + timedelta(seconds=rnd.uniform(0, span))
        body = bodies[i % len(bodies)]
        if b"%(ts)s" in body:
            body = body.replace(b"%(ts)s", t.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode())
        yield f"sensor-0{1 + i % 5}", body, t


def send_history(producer: Any, settings: Settings, readings: Iterable[Reading],
                 alerts: Iterable[Alert] = ()) -> None:
    """Send readings, then alerts, to the settings' topics, keyed by sensor id (no flush)."""
    for r in readings:
        producer.send(settings.topic_readings, key=r.sensor_id, value=r.to_json())
    for a in alerts:
        producer.send(settings.topic_alerts, key=a.sensor_id, value=a.to_json())


def _why(value: bytes) -> Exception:
    """The error the processor would record for this body."""
    from sensorlib.model.events import parse_reading

    try:
        parse_reading(value)
    except Exception as exc:  # noqa: BLE001 - whatever validation raises is the reason
        return exc
    raise ValueError(f"expected an invalid record, this one parses: {value!r}")


def backfill(settings: Settings, *, days: float = 7.0, interval: float = 2.0, seed: int = 7,
             hostile: bool = False, dead_letters: int = 0, end: datetime | None = None,
             say: bool = False) -> Filled:
    """Publish a history ending at ``end`` (default now) to the settings' topics."""
    from sensorlib.kafka.deadletters import dead_letter

    ensure_topics(settings)
    t0 = time.monotonic()
    readings, start, end = history(days, interval, seed, hostile, end)
    alerts = list(Pipeline(clock="event").replay(readings))
    if say:
        print(f"simulated {len(readings):,} readings, {len(alerts):,} alerts "
              f"in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    producer = make_producer(settings, client_id="sensorlib-backfill", linger_ms=50,
                             batch_size=512 * 1024)
    try:
        send_history(producer, settings, readings, alerts)
        producer.flush(timeout=300)
        n_dead = 0
        for key, body, t in sorted(_bad_records(dead_letters, start, end, seed, hostile),
                                   key=lambda bad: bad[2]):
            # As if it had arrived at t and been rejected a moment later.
            ms = int(t.timestamp() * 1000)
            meta = producer.send(settings.topic_readings, key=key, value=body,
                                 timestamp_ms=ms).get(timeout=30)
            record = _Record(meta.topic, meta.partition, meta.offset, ms, key, body)
            letter = json.loads(dead_letter(record, _why(body)))
            letter["rejectedAt"] = (t + timedelta(milliseconds=150)).isoformat().replace(
                "+00:00", "Z")
            producer.send(settings.topic_dlq, key=key, value=json.dumps(letter).encode(),
                          timestamp_ms=ms + 150)
            n_dead += 1
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    if say:
        print(f"published in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    return Filled(len(readings), len(alerts), n_dead, start, end)


def main(argv: list[str] | None = None) -> int:
    """Command line: back-fill the broker of ``KAFKA_BOOTSTRAP_SERVERS`` (or --bootstrap)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="host:port (default: from the environment)")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between readings")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dead-letters", type=int, default=60)
    parser.add_argument("--hostile", action="store_true", help="add an HTML/JS sensor id")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.bootstrap:
        settings = settings.replace(bootstrap_servers=args.bootstrap, external=True)
    filled = backfill(settings, days=args.days, interval=args.interval, seed=args.seed,
                      hostile=args.hostile, dead_letters=args.dead_letters, say=True)
    print(json.dumps({"readings": filled.readings, "alerts": filled.alerts,
                      "deadLetters": filled.dead_letters, "start": filled.start.isoformat(),
                      "end": filled.end.isoformat()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
