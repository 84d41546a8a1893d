"""A shared corpus of odd reading records: every reader must give the gate's verdict on each.

The records an attacker and a chaos test found (issue 23) and their neighbours: tombstones,
invalid UTF-8, JSON nested thousands deep, huge numbers, duplicate and case-variant keys,
odd timestamps, invisible characters, escapes, extra keys, oversized bodies. Each entry is
``(name, value, record time ms)``; the record times are around :data:`NOW_MS`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
NOW_US = NOW_MS * 1000
STAMP = "2026-12-01T11:59:00"


def canonical(**changes: object) -> bytes:
    """A PascalCase reading as sensorlib and the .NET producer write it, with changes
    (a value of ``...`` drops the field)."""
    fields: dict[str, object] = {"SensorId": "sensor-01", "Temperature": 22.05,
                                 "Humidity": 55.17, "Location": "Warehouse A",
                                 "Timestamp": STAMP + ".0729871Z"}
    for key, value in changes.items():
        if value is ...:
            fields.pop(key, None)
        else:
            fields[key] = value
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def camel(**changes: object) -> bytes:
    fields: dict[str, object] = {"sensorId": "sensor-02", "temperature": 24.5, "humidity": 60,
                                 "location": "Warehouse B", "timestamp": STAMP + "+00:00"}
    fields.update(changes)
    return json.dumps(fields).encode()


CANON = canonical()
DEEP = b'{"SensorId":' + b"[" * 3000 + b"]" * 3000 + b"}"

CORPUS: list[tuple[str, object, int]] = [
    ("canonical", CANON, NOW_MS),
    ("canonical, no fraction", canonical(Timestamp=STAMP + "Z"), NOW_MS),
    ("canonical, 6 digits", canonical(Timestamp=STAMP + ".123456Z"), NOW_MS),
    ("canonical, 9 digits", canonical(Timestamp=STAMP + ".123456789Z"), NOW_MS),
    ("camelCase, isoformat()", camel(), NOW_MS),
    ("camelCase, Z", camel(timestamp=STAMP + "Z"), NOW_MS),
    ("camelCase, +09:00", camel(timestamp="2026-12-01T20:59:00+09:00"), NOW_MS),
    ("space separator", camel(timestamp="2026-12-01 11:59:00Z"), NOW_MS),
    ("+HHMM offset", camel(timestamp="2026-12-01T12:59:00+0100"), NOW_MS),
    ("naive time is UTC", camel(timestamp=STAMP), NOW_MS),
    ("no record time", CANON, -1),
    ("no location", canonical(Location=...), NOW_MS),
    ("null location", canonical(Location=None), NOW_MS),
    ("unicode location", canonical(Location="Kühlhaus 3 — Nord ❄"), NOW_MS),
    ("escaped unicode location", CANON.replace(b"Warehouse A", b"Entrep\\u00f4t"), NOW_MS),
    ("extra key (eventId)", canonical(EventId="order-7/1"), NOW_MS),
    ("spaced colon", CANON.replace(b'"Humidity":', b'"Humidity" :'), NOW_MS),
    ("pretty-printed", json.dumps(json.loads(CANON), indent=2).encode(), NOW_MS),
    ("integer values", canonical(Temperature=22, Humidity=55), NOW_MS),
    ("edge values", canonical(Temperature=-100, Humidity=100), NOW_MS),
    # --- refusals
    ("tombstone", None, NOW_MS),
    ("empty", b"", NOW_MS),
    ("blank", b"   ", NOW_MS),
    ("not JSON", b"garbage", NOW_MS),
    ("a list", b"[1, 2]", NOW_MS),
    ("a string", b'"hello"', NOW_MS),
    ("two objects", CANON + b"\n" + CANON, NOW_MS),
    ("invalid UTF-8 in a string", CANON.replace(b"Warehouse A", b"Wareh\xc3\x28use"), NOW_MS),
    ("invalid UTF-8 bytes", b"\xff\xfe\x00", NOW_MS),
    ("nested 3,000 deep", DEEP, NOW_MS),
    ("nested object value", CANON.replace(b'"Warehouse A"', b'{"a":{"b":1}}'), NOW_MS),
    ("400-digit integer", CANON.replace(b"22.05", b"9" * 400), NOW_MS),
    ("5,000-digit integer", CANON.replace(b"22.05", b"9" * 5000), NOW_MS),
    ("1e400", CANON.replace(b"22.05", b"1e400"), NOW_MS),
    ("NaN", CANON.replace(b"22.05", b"NaN"), NOW_MS),
    ("-Infinity", CANON.replace(b"55.17", b"-Infinity"), NOW_MS),
    ("string number", canonical(Temperature="22"), NOW_MS),
    ("bool number", canonical(Humidity=True), NOW_MS),
    ("humidity 100.5", canonical(Humidity=100.5), NOW_MS),
    ("temperature -100.01", canonical(Temperature=-100.01), NOW_MS),
    ("case-variant duplicate", CANON.replace(b'"Humidity":55.17',
                                             b'"humidity":1,"Humidity":55.17'), NOW_MS),
    ("exact duplicate", CANON.replace(b'"Humidity":55.17', b'"Humidity":1,"Humidity":55.17'),
     NOW_MS),
    ("camel+Pascal sensorId", CANON.replace(b'"SensorId":"sensor-01"',
                                            b'"sensorId":"a","SensorId":"sensor-01"'), NOW_MS),
    ("sensor_id key", camel().replace(b'"sensorId"', b'"sensor_id"'), NOW_MS),
    ("year 1950", canonical(Timestamp="1950-01-01T00:00:00Z"), NOW_MS),
    ("year 2150", canonical(Timestamp="2150-01-01T00:00:00Z"), NOW_MS),
    ("year 1 at +01:00", canonical(Timestamp="0001-01-01T00:00:00+01:00"), NOW_MS),
    ("year 9999", canonical(Timestamp="9999-12-31T23:59:59Z"), NOW_MS),
    ("record time 1970", CANON, 0),
    ("ten minutes ahead", canonical(Timestamp="2026-12-01T12:10:00Z"), NOW_MS),
    (".123456ABCZ", canonical(Timestamp=STAMP + ".123456ABCZ"), NOW_MS),
    (".123456+09:00Z", canonical(Timestamp=STAMP + ".123456+09:00Z"), NOW_MS),
    ("10 fraction digits", canonical(Timestamp=STAMP + ".1234567890Z"), NOW_MS),
    ("lowercase t and z", canonical(Timestamp="2026-12-01t11:59:00z"), NOW_MS),
    ("no seconds", canonical(Timestamp="2026-12-01T11:59Z"), NOW_MS),
    ("hour 24", canonical(Timestamp="2026-12-01T24:00:00Z"), NOW_MS),
    ("February 30", canonical(Timestamp="2026-02-30T00:00:00Z"), NOW_MS),
    ("offset +24:00", canonical(Timestamp=STAMP + "+24:00"), NOW_MS),
    ("epoch number", canonical(Timestamp=1764590340), NOW_MS),
    ("epoch text", canonical(Timestamp="1764590340"), NOW_MS),
    ("date only", canonical(Timestamp="2026-12-01"), NOW_MS),
    ("zero-width space in sensorId", canonical(SensorId="sensor\u200b01"), NOW_MS),
    ("escaped zero-width space", CANON.replace(b"sensor-01", b"sensor\\u200b01"), NOW_MS),
    ("bidi override in location", canonical(Location="Hall \u202eB"), NOW_MS),
    ("DEL in sensorId", canonical(SensorId="sensor\x7f01"), NOW_MS),
    ("lone surrogate escape", CANON.replace(b"sensor-01", b"\\ud800"), NOW_MS),
    ("blank sensorId", canonical(SensorId="   "), NOW_MS),
    ("65-char sensorId", canonical(SensorId="x" * 65), NOW_MS),
    ("numeric sensorId", canonical(SensorId=1), NOW_MS),
    ("missing timestamp", canonical(Timestamp=...), NOW_MS),
    ("null timestamp", canonical(Timestamp=None), NOW_MS),
    ("over 64 KiB", canonical(Location="x" * 10) + b" " * 65536, NOW_MS),
    ("600 KB of quotes", b'{"SensorId":"' + b'\\"' * 300_000 + b'"}', NOW_MS),
    ("400 KB of e-acute", ('{"SensorId":"' + "é" * 200_000 + '"}').encode(), NOW_MS),
]
