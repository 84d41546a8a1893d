"""Rule settings per sensor on a real broker: PUT /api/rules → the sensor-rules topic → the
running processor applies them live (no restart), its alerts carry the table's version; a
restart reads the table again (same version, no alert published twice); 422s over a real
socket; the CLI's set/show round trip through the same topic."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.ingest.produce import ReadingProducer
from sensorlib.model.events import new_reading
from tests.support import eventually, read_alerts, running_processor, service_env

pytestmark = pytest.mark.kafka


def send(settings: Settings, temperature: float, at: datetime, sensor: str = "rt-1") -> None:
    with ReadingProducer(settings) as out:
        out.send(new_reading(sensor, temperature, 50.0, "Hall", at))


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensorlib.cli", "rules", *args],
                          env=service_env(settings), capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_layer_put_is_applied_live_and_versioned(spawn, topics: Settings) -> None:
    processor = spawn("processor", topics)
    url = processor.url
    empty = httpx.get(url + "/api/rules").json()
    assert empty["layers"] == {} and empty["defaults"]["temperature_threshold"] == 35.0
    start = datetime.now(UTC) - timedelta(seconds=30)
    send(topics, 30.0, start)  # below 35 °C: no alert with the defaults
    eventually(lambda: "rt-1" in httpx.get(url + "/api/aggregates").json())
    assert httpx.get(url + "/api/rules").json()["sensors"]["rt-1"]["temperature_threshold"] == 35

    put = httpx.put(url + "/api/rules/sensor:rt-1", json={"temperature_threshold": 25},
                    timeout=30)
    assert put.status_code == 200, put.text
    version = put.json()["version"]
    assert put.json()["applied"] and version != empty["version"]
    assert put.json()["settings"] == {"temperature_threshold": 25.0}
    shown = httpx.get(url + "/api/rules").json()
    assert shown["version"] == version
    assert shown["layers"] == {"sensor:rt-1": {"temperature_threshold": 25.0}}
    assert shown["sensors"]["rt-1"]["temperature_threshold"] == 25.0

    send(topics, 30.0, start + timedelta(seconds=2))  # the same value alerts now
    found = eventually(lambda: [a for a in httpx.get(url + "/api/alerts").json()
                                if a["sensorId"] == "rt-1" and a["rule"] == "threshold"])
    assert len(found) == 1
    assert found[0]["rulesVersion"] == version
    assert found[0]["reason"] == "High temperature: 30.0°C"
    first = found[0]["alertId"]

    # Restart: the table is read again before any reading; nothing is published twice.
    processor.kill()
    again = spawn("processor", topics)
    assert httpx.get(again.url + "/api/rules").json()["version"] in (version, empty["version"])
    eventually(lambda: httpx.get(again.url + "/api/rules").json()["version"] == version)
    send(topics, 31.0, start + timedelta(minutes=3))  # past the cooldown: a second alert
    later = eventually(lambda: [a for a in httpx.get(again.url + "/api/alerts").json()
                                if a["sensorId"] == "rt-1" and a["rule"] == "threshold"
                                and a["alertId"] != first])
    assert [a["rulesVersion"] for a in later] == [version]
    on_topic = read_alerts(topics)
    ids = [a.alert_id for a in on_topic]
    assert len(ids) == len(set(ids))  # each alert exactly once
    threshold = [a for a in on_topic if a.sensor_id == "rt-1" and a.rule == "threshold"]
    assert sorted(a.alert_id for a in threshold) == sorted({first, later[0]["alertId"]})
    # Every alert since the PUT (the silent one of rt-1 too) carries the new version.
    assert {a.rules_version for a in on_topic} == {version}

    # Deleting the layer: back to the defaults, a new version (the empty table's).
    gone = httpx.delete(again.url + "/api/rules/sensor:rt-1", timeout=30)
    assert gone.status_code == 200 and gone.json()["version"] == empty["version"]
    assert gone.json()["settings"] is None


@pytest.fixture(scope="module")
def processor(spawn_module, module_topics: Settings) -> str:
    """One processor for the module's tests (its own topics)."""
    return spawn_module("processor", module_topics).url


@pytest.mark.parametrize(("path", "body", "field"), [
    ("sensor:rt-2", {"temperature_threshold": "hot"}, "temperature_threshold"),
    ("sensor:rt-2", {"humidity_threshold": 101}, "humidity_threshold"),
    ("sensor:rt-2", {"cooldown": 5}, "cooldown"),
    ("sensor:rt-2", {"nope": 1}, "nope"),
    ("room:rt-2", {"temperature_threshold": 20}, "layer"),
    ("sensor:rt-2", [1, 2], "body"),
    ("sensor:rt-2", "{not json", "body"),
    ("sensor:rt-2", "[" * 5000, "body"),  # deeper than the JSON parser goes
    ("sensor:rt-2", '{"stuck_readings": ' + "9" * 400 + "}", "stuck_readings"),
    ("sensor:rt-2", b"\xff\xfe{}", "body"),  # not UTF-8
    ("sensor:a\u202eb", {"temperature_threshold": 20}, "layer"),  # a bidi override
])
def test_bad_settings_get_422_naming_the_field(processor: str, path: str, body: object,
                                               field: str) -> None:
    content = (body if isinstance(body, bytes) else body.encode() if isinstance(body, str)
               else json.dumps(body).encode())
    answer = httpx.put(f"{processor}/api/rules/{path}", content=content,
                       headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["field"] == field
    assert answer.json()["detail"][0]["reason"]
    assert httpx.get(processor + "/api/rules").json()["layers"] == {}  # nothing written


def test_cli_set_show_unset_round_trip(processor: str, module_topics: Settings) -> None:
    done = cli(module_topics, "set", "--location", "Hall", "humidity_threshold=60",
               "stuck_readings=5")
    assert done.returncode == 0, done.stderr
    assert "location:Hall" in done.stdout
    done = cli(module_topics, "set", "--sensor", "rt-3", "temperature_threshold=20")
    assert done.returncode == 0, done.stderr
    shown = json.loads(cli(module_topics, "show", "--json").stdout)
    assert shown["layers"] == {"location:Hall": {"humidity_threshold": 60.0, "stuck_readings": 5},
                               "sensor:rt-3": {"temperature_threshold": 20.0}}
    mine = json.loads(cli(module_topics, "show", "--sensor", "rt-3", "--location", "Hall",
                          "--json").stdout)
    assert mine["layers"] == ["location:Hall", "sensor:rt-3"]
    assert (mine["settings"]["temperature_threshold"], mine["settings"]["humidity_threshold"],
            mine["settings"]["stuck_readings"]) == (20.0, 60.0, 5)
    assert mine["version"] == shown["version"]
    # The running processor applied what the CLI wrote (the one path: the topic).
    eventually(lambda: httpx.get(processor + "/api/rules").json()["version"] == shown["version"])
    text = cli(module_topics, "show", "--sensor", "rt-3", "--location", "Hall").stdout
    assert "temperature_threshold = 20" in text
    # unset: one field, then the rest (the layer is deleted).
    assert cli(module_topics, "unset", "--location", "Hall", "stuck_readings").returncode == 0
    assert cli(module_topics, "unset", "--sensor", "rt-3").returncode == 0
    shown = json.loads(cli(module_topics, "show", "--json").stdout)
    assert shown["layers"] == {"location:Hall": {"humidity_threshold": 60.0}}
    # Bad input: exit 2 naming the field, nothing written.
    bad = cli(module_topics, "set", "--sensor", "rt-3", "outlier_z=-1")
    assert bad.returncode == 2 and "outlier_z" in bad.stderr
    bad = cli(module_topics, "set", "--sensor", "rt-3", "temperature_threshold")
    assert bad.returncode == 2 and "temperature_threshold" in bad.stderr
    assert cli(module_topics, "unset", "--location", "Hall").returncode == 0


def test_without_the_rules_topic_the_configured_settings_apply(topics: Settings) -> None:
    """A processor run on topics made before sensor-rules existed still processes."""
    missing = topics.replace(topic_rules=topics.topic_rules + "-missing")
    with running_processor(missing) as processor:
        send(missing, 40.0, datetime.now(UTC) - timedelta(seconds=5), sensor="rt-9")
        found = eventually(lambda: [a for a in processor.alerts() if a["sensorId"] == "rt-9"])
        assert found[0]["rule"] == "threshold" and "rulesVersion" not in found[0]
        assert processor.rules_view()["layers"] == {}


def test_the_host_guard_covers_the_rules_api(processor: str) -> None:
    evil = {"Host": "evil.example"}
    put = httpx.put(processor + "/api/rules/sensor:rt-4", json={"outlier_z": 5}, headers=evil)
    assert put.status_code == 400
    assert httpx.get(processor + "/api/rules", headers=evil).status_code == 400
    assert "sensor:rt-4" not in httpx.get(processor + "/api/rules").json()["layers"]
