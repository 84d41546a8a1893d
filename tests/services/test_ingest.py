"""The producer service's batch form and idempotency, over real sockets against the real broker."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.ingest.produce import ReadingProducer
from sensorlib.kafka.admin import end_offsets
from sensorlib.model.events import Reading, parse_reading
from tests.support import read_topic

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def api(spawn_module, module_topics: Settings):
    """One producer API for the module (default limits: batches of up to 10,000)."""
    return spawn_module("producer", module_topics, "--no-simulate")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _reading(sensor: str, **extra: object) -> dict[str, object]:
    return {"sensorId": sensor, "temperature": 21.5, "humidity": 40.0, "location": "Ingest test",
            "timestamp": _now(), **extra}


def _stored(topics: Settings, prefix: str) -> list:
    """The records of readings whose sensorId starts with ``prefix`` (the module shares a topic)."""
    return [r for r in read_topic(topics, topics.topic_readings)
            if parse_reading(r.value).sensor_id.startswith(prefix)]


def _event_id(record) -> str | None:
    ids = [v.decode() for k, v in record.headers or [] if k == "eventId"]
    return ids[0] if ids else None


def test_a_mixed_batch_publishes_only_the_valid_readings_with_per_item_results(api, module_topics) -> None:
    batch = [
        _reading("mixed-0"),
        _reading("mixed-1", humidity=120),          # out of range
        {"sensorId": "mixed-2", "temperature": 20},  # no humidity
        "not a reading",
        {"SensorId": "mixed-4", "Temperature": 19.0, "Humidity": 30.0, "Timestamp": _now()},
    ]
    answer = httpx.post(api.url + "/api/events/batch", json=batch)
    assert answer.status_code == 207, answer.text
    body = answer.json()
    assert (body["status"], body["received"], body["published"], body["rejected"]) == (
        "partial", 5, 2, 3)
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in results] == [201, 422, 422, 422, 201]
    assert results[1]["detail"][0]["field"] == "humidity"
    assert "between 0 and 100" in results[1]["detail"][0]["reason"]
    assert results[2]["detail"][0] == {"field": "humidity", "reason": "required"}
    assert results[3]["detail"][0]["field"] == "item"
    stored = _stored(module_topics, "mixed-")
    assert sorted(parse_reading(r.value).sensor_id for r in stored) == ["mixed-0", "mixed-4"]
    where = {(r.partition, r.offset) for r in stored}
    assert where == {(results[i]["partition"], results[i]["offset"]) for i in (0, 4)}


@pytest.mark.parametrize("media", ["application/json", "application/x-ndjson"])
def test_batch_items_at_the_extremes_are_refused_one_by_one(api, module_topics, media) -> None:
    tag = "ext-nd-" if "ndjson" in media else "ext-arr-"
    batch = [
        _reading(tag + "ok"),
        _reading(tag + "year1", timestamp="0001-01-01T00:00:00Z"),
        _reading(tag + "year9999", timestamp="9999-12-31T23:59:59.9999999Z"),
        _reading(tag + "before1", timestamp="0001-01-01T00:00:00+01:00"),
        _reading(tag + "huge", temperature=1e308),
        _reading(tag + "inf", temperature="INF"),  # written as the number 1e400 below
        _reading(tag + "zw\u200bsp"),
        _reading(tag + "bidi\u202e"),
        _reading(tag + "ok", eventId="\u00e9"),
    ]
    items = [json.dumps(item).replace('"INF"', "1e400") for item in batch]
    if media == "application/json":
        body = ("[" + ",".join(items) + "]").encode()
    else:
        body = "\n".join(items).encode()
    answer = httpx.post(api.url + "/api/events/batch", content=body,
                        headers={"Content-Type": media})
    assert answer.status_code == 207, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [201] + [422] * 8
    fields = [r["detail"][0]["field"] for r in results[1:]]
    assert fields == ["timestamp"] * 3 + ["temperature"] * 2 + ["sensorId"] * 2 + ["eventId"]
    stored = _stored(module_topics, tag)
    assert [parse_reading(r.value).sensor_id for r in stored] == [tag + "ok"]


def test_a_batch_with_no_valid_reading_gets_422_and_publishes_nothing(api, module_topics) -> None:
    before = sum(end_offsets(module_topics, module_topics.topic_readings).values())
    answer = httpx.post(api.url + "/api/events/batch", json=[{"sensorId": ""}, 42])
    assert answer.status_code == 422, answer.text
    assert answer.json()["published"] == 0
    assert [r["status"] for r in answer.json()["results"]] == [422, 422]
    assert sum(end_offsets(module_topics, module_topics.topic_readings).values()) == before


def test_ndjson_batches_are_accepted(api, module_topics) -> None:
    lines = [json.dumps(_reading(f"ndjson-{i}")) for i in range(50)]
    body = ("\n".join(lines[:25]) + "\n\n" + "\r\n".join(lines[25:]) + "\n").encode()
    answer = httpx.post(api.url + "/api/events/batch", content=body,
                        headers={"content-type": "application/x-ndjson"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["published"] == 50
    stored = _stored(module_topics, "ndjson-")
    assert sorted(parse_reading(r.value).sensor_id for r in stored) == sorted(
        f"ndjson-{i}" for i in range(50))


def test_a_bad_ndjson_line_is_one_invalid_item(api, module_topics) -> None:
    body = (json.dumps(_reading("ndline-0")) + "\n{not json\n" + json.dumps(_reading("ndline-2"))).encode()
    answer = httpx.post(api.url + "/api/events/batch", content=body,
                        headers={"content-type": "application/x-ndjson"})
    assert answer.status_code == 207, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [201, 422, 201]
    assert "not valid JSON" in results[1]["detail"][0]["reason"]


def test_a_batch_over_10000_readings_gets_413_naming_the_limit(api, module_topics) -> None:
    before = sum(end_offsets(module_topics, module_topics.topic_readings).values())
    item = json.dumps(_reading("overlimit"))
    body = ("[" + ",".join([item] * 10_001) + "]").encode()
    answer = httpx.post(api.url + "/api/events/batch", content=body,
                        headers={"content-type": "application/json"}, timeout=60)
    assert answer.status_code == 413, answer.text
    [detail] = answer.json()["detail"]
    assert "10000" in detail["reason"] and "SENSORLIB_MAX_BATCH" in detail["reason"]
    assert sum(end_offsets(module_topics, module_topics.topic_readings).values()) == before


def test_a_batch_that_is_not_an_array_is_refused(api) -> None:
    answer = httpx.post(api.url + "/api/events/batch", json=_reading("object"))
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "body"
    answer = httpx.post(api.url + "/api/events/batch", content=b"[1, 2",
                        headers={"content-type": "application/json"})
    assert answer.status_code == 422 and "not valid JSON" in answer.json()["detail"][0]["reason"]
    plain = httpx.post(api.url + "/api/events/batch", content=b"[]",
                       headers={"content-type": "text/plain"})
    assert plain.status_code == 415


def test_an_idempotency_key_stores_a_retried_post_once(api, module_topics) -> None:
    payload = _reading("idem-header")
    first = httpx.post(api.url + "/api/events", json=payload, headers={"Idempotency-Key": "idem-1"})
    again = httpx.post(api.url + "/api/events", json=payload, headers={"Idempotency-Key": "idem-1"})
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    for key in ("sensorEvent", "partition", "offset", "topic", "eventId"):
        assert first.json()[key] == again.json()[key]
    [record] = _stored(module_topics, "idem-header")
    assert _event_id(record) == "idem-1"
    assert (record.partition, record.offset) == (first.json()["partition"], first.json()["offset"])


def test_a_reused_idempotency_key_for_another_reading_is_refused(api, module_topics) -> None:
    headers = {"Idempotency-Key": "idem-reuse"}
    assert httpx.post(api.url + "/api/events", json=_reading("idem-reuse"),
                      headers=headers).status_code == 201
    other = httpx.post(api.url + "/api/events", json=_reading("idem-reuse", temperature=30.0),
                       headers=headers)
    assert other.status_code == 422, other.text
    assert other.json()["detail"][0]["field"] == "Idempotency-Key"
    assert len(_stored(module_topics, "idem-reuse")) == 1


def test_an_event_id_in_the_body_works_like_the_header(api, module_topics) -> None:
    pascal = {"SensorId": "idem-body", "Temperature": 20.0, "Humidity": 30.0, "Timestamp": _now(),
              "EventId": "body-7"}
    answers = [httpx.post(api.url + "/api/events", json=pascal) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert {a.json()["offset"] for a in answers} == {answers[0].json()["offset"]}
    [record] = _stored(module_topics, "idem-body")
    assert _event_id(record) == "body-7"


@pytest.mark.parametrize(("headers", "extra", "field"), [
    ({"Idempotency-Key": "x" * 129}, {}, "Idempotency-Key"),
    ({"Idempotency-Key": "has space"}, {}, "Idempotency-Key"),
    ({"Idempotency-Key": "caf\u00e9".encode()}, {}, "Idempotency-Key"),
    ({}, {"eventId": ""}, "eventId"),
    ({}, {"eventId": 42}, "eventId"),
    ({}, {"EventId": "tab\there"}, "eventId"),
    ({"Idempotency-Key": "a"}, {"eventId": "b"}, "Idempotency-Key"),
], ids=["too long", "space", "non-ascii", "empty", "number", "control", "header differs"])
def test_an_invalid_event_id_gets_422_naming_the_field(api, module_topics, headers, extra, field) -> None:
    before = sum(end_offsets(module_topics, module_topics.topic_readings).values())
    answer = httpx.post(api.url + "/api/events", json=_reading("bad-id", **extra), headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["field"] == field
    assert sum(end_offsets(module_topics, module_topics.topic_readings).values()) == before


def test_a_128_character_event_id_is_accepted(api) -> None:
    answer = httpx.post(api.url + "/api/events", json=_reading("long-id"),
                        headers={"Idempotency-Key": "k" * 128})
    assert answer.status_code == 201, answer.text


def test_batch_items_with_event_ids_are_stored_once_across_retries(api, module_topics) -> None:
    batch = [_reading(f"idem-batch-{i}", eventId=f"b-{i}") for i in range(5)] + [
        _reading("idem-batch-plain")]
    first = httpx.post(api.url + "/api/events/batch", json=batch)
    assert first.status_code == 201, first.text
    retry = httpx.post(api.url + "/api/events/batch", json=batch)
    assert retry.status_code == 201, retry.text
    replayed = [r.get("replayed", False) for r in retry.json()["results"]]
    assert replayed == [True] * 5 + [False]
    for a, b in zip(first.json()["results"][:5], retry.json()["results"][:5], strict=True):
        assert (a["partition"], a["offset"], a["eventId"]) == (b["partition"], b["offset"], b["eventId"])
    stored = _stored(module_topics, "idem-batch-")
    ids = sorted(_event_id(r) or "-" for r in stored)
    assert ids == ["-", "-"] + [f"b-{i}" for i in range(5)]  # the plain one twice, the rest once


def test_the_same_event_id_twice_in_one_batch_is_stored_once(api, module_topics) -> None:
    item = _reading("idem-twice", eventId="twice-1")
    answer = httpx.post(api.url + "/api/events/batch", json=[item, item])
    assert answer.status_code == 201, answer.text
    a, b = answer.json()["results"]
    assert (a["offset"], a["partition"]) == (b["offset"], b["partition"]) and b["replayed"]
    assert len(_stored(module_topics, "idem-twice")) == 1


def test_readings_go_to_the_partition_of_kafka_pythons_default_partitioner(api, module_topics) -> None:
    sensors = [f"part-{i}" for i in range(12)]
    answer = httpx.post(api.url + "/api/events/batch", json=[_reading(s) for s in sensors])
    assert answer.status_code == 201, answer.text
    with ReadingProducer(module_topics) as producer:  # kafka-python choosing the partition
        expected = [producer.publish(Reading.model_validate(_reading(s))).partition
                    for s in sensors]
    assert [r["partition"] for r in answer.json()["results"]] == expected
    assert len(set(expected)) > 1


def test_health_reports_the_in_flight_bound(api) -> None:
    body = httpx.get(api.url + "/health").json()
    assert body["maxInFlight"] == 20_000 and body["inFlight"] >= 0


def test_every_odd_record_gets_the_gates_verdict_over_http(api) -> None:
    """The API is one more reader of the shared corpus: 201 exactly when the gate accepts,
    else 422 naming the gate's fields and reasons — never a 500 or a reset connection."""
    from sensorlib.model.acceptance import EventTimeWindow
    from sensorlib.model.gate import judge
    from sensorlib.model.rejections import InvalidReading
    from tests.corpus import CORPUS

    window = EventTimeWindow()
    for name, value, _ in CORPUS:
        if not isinstance(value, bytes) or len(value) > 65536:
            continue
        now = datetime.now(UTC)
        expected = judge(value, now_us=int(now.timestamp() * 1_000_000), accept=window, now=now)
        answer = httpx.post(api.url + "/api/events", content=value,
                            headers={"content-type": "application/json"})
        if isinstance(expected, InvalidReading):
            assert answer.status_code == 422, (name, answer.text)
            def same(reason: str) -> str:  # the window's bounds move with the clock
                return re.sub(r"between \S+ and \S+ \(at most", "between … (at most", reason)

            got = [(e["field"], same(e["reason"])) for e in answer.json()["detail"]]
            assert got == [(e.field, same(e.reason)) for e in expected.errors], name
        else:
            assert answer.status_code == 201, (name, answer.text)


@pytest.mark.parametrize("media", ["application/json", "application/x-ndjson"])
def test_nested_and_huge_batch_items_get_422_not_500(api, media) -> None:
    deep = b'{"sensorId":' + b"[" * 3000 + b"]" * 3000 + b"}"
    huge = json.dumps(_reading("huge")).replace("21.5", "9" * 400).encode()
    good = json.dumps(_reading("fine")).encode()
    body = (b"[" + b",".join([deep, huge, good]) + b"]" if media == "application/json"
            else b"\n".join([deep, huge, good]))
    answer = httpx.post(api.url + "/api/events/batch", content=body,
                        headers={"content-type": media})
    if media == "application/json":  # the array itself is nested too deeply to split
        assert answer.status_code == 422, answer.text
        assert "nested too deeply" in answer.json()["detail"][0]["reason"]
        return
    assert answer.status_code == 207, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [422, 422, 201]
    assert "nested too deeply" in results[0]["detail"][0]["reason"]
    assert "400-digit" in results[1]["detail"][0]["reason"]
