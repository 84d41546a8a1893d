"""The sensor-rules table's pure logic: keys, the one validator, folding records, the version,
and a detector reconfigured live (rule state kept, alerts stamped with the version)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sensorlib.engine.detect import LAYERED, RuleConfig, layer_settings
from sensorlib.engine.pipeline import Pipeline
from sensorlib.errors import ConfigError, InvalidSetting
from sensorlib.model.events import Alert, new_reading
from sensorlib.rules.table import (
    DEFAULTS,
    RulesTable,
    encode_value,
    layer_key,
    parse_layer,
    validate_layer,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)


def fold(records: list[tuple[str, dict | None]]) -> RulesTable:
    table = RulesTable()
    for offset, (key, value) in enumerate(records):
        table = table.apply(key, None if value is None else json.dumps(value).encode(), offset)
    return table


def test_keys() -> None:
    assert parse_layer("sensor:s1") == ("sensor", "s1")
    assert parse_layer("location:Cold Storage") == ("location", "Cold Storage")
    assert parse_layer("glob:freezer-*") == ("glob", "freezer-*")
    assert parse_layer(DEFAULTS) == (DEFAULTS, None)
    assert layer_key(sensor="s1") == "sensor:s1"
    assert layer_key() == DEFAULTS
    for bad in ("s1", "room:x", "sensor:", "sensor: ", "x" * 300):
        with pytest.raises(InvalidSetting) as info:
            parse_layer(bad)
        assert info.value.field == "layer"


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"temperature_threshold": "hot"}, "temperature_threshold", "a number"),
    ({"temperature_threshold": True}, "temperature_threshold", "a number"),
    ({"temperature_threshold": float("nan")}, "temperature_threshold", "finite"),
    ({"humidity_threshold": 120}, "humidity_threshold", "at most 100"),
    ({"stuck_readings": 2.5}, "stuck_readings", "whole number"),
    ({"stuck_readings": 1}, "stuck_readings", "at least 2"),
    ({"rate_min_span": 0}, "rate_min_span", "above 0"),
    ({"cooldown": 5}, "cooldown", "cannot be set per sensor"),
    ({"rules": ["threshold"]}, "rules", "cannot be set per sensor"),
    ({"nope": 1}, "nope", "unknown setting"),
])
def test_the_validator_names_the_field(values: dict, field: str, words: str) -> None:
    for check in (layer_settings, lambda v: validate_layer("sensor:s1", v),
                  lambda v: validate_layer(DEFAULTS, v)):
        with pytest.raises(InvalidSetting) as info:
            check(values)
        assert info.value.field == field
        assert words in info.value.reason


def test_text_and_numbers_convert_to_the_fields_types() -> None:
    got = layer_settings({"temperature_threshold": "8", "stuck_readings": "5",
                          "rate_min_span": 20, "outlier_z": 3})
    assert got == {"temperature_threshold": 8.0, "stuck_readings": 5,
                   "rate_min_span": timedelta(seconds=20), "outlier_z": 3.0}
    assert type(got["temperature_threshold"]) is float and type(got["stuck_readings"]) is int
    assert set(LAYERED) == {f for f in RuleConfig.__dataclass_fields__} - {
        "rules", "rule_settings", "per_sensor", "cooldown", "silent_after", "silent_storm",
        "silent_storm_slot"}


def test_records_fold_into_layers_and_a_tombstone_deletes_one() -> None:
    table = fold([("sensor:s1", {"temperature_threshold": 20}),
                  ("location:Lab", {"humidity_threshold": 70}),
                  ("sensor:s1", {"temperature_threshold": 25}),
                  ("location:Lab", None)])
    assert table.layers == {"sensor:s1": {"temperature_threshold": 25.0}}
    assert table.offset == 3


def test_a_bad_record_is_skipped_and_the_layer_keeps_its_settings() -> None:
    table = fold([("sensor:s1", {"temperature_threshold": 20}),
                  ("sensor:s1", {"temperature_threshold": "x"}),
                  ("what", {"temperature_threshold": 1})])
    assert table.layers == {"sensor:s1": {"temperature_threshold": 20.0}}
    assert [offset for offset, _ in table.skipped] == [1, 2]
    assert "temperature_threshold" in table.skipped[0][1]
    assert table.offset == 2
    assert table.apply("sensor:s1", b"{not json", 3).skipped[-1][0] == 3
    assert table.apply(None, b"{}", 4).layers == table.layers


def test_the_version_is_the_content_whatever_the_history() -> None:
    a = fold([("sensor:s1", {"temperature_threshold": 20}), ("glob:f*", {"outlier_z": 3})])
    b = fold([("glob:f*", {"outlier_z": 5}), ("sensor:s2", {"stuck_readings": 4}),
              ("glob:f*", {"outlier_z": 3.0}), ("sensor:s2", None),
              ("sensor:s1", {"temperature_threshold": "20"})])
    assert a.version == b.version and a.offset != b.offset
    assert a.version != fold([("sensor:s1", {"temperature_threshold": 21})]).version
    assert RulesTable().version == fold([("sensor:s1", {"outlier_z": 3}),
                                         ("sensor:s1", None)]).version


def test_the_config_layers_location_glob_sensor_over_defaults() -> None:
    table = fold([(DEFAULTS, {"temperature_threshold": 30, "stuck_readings": 12}),
                  ("location:Lab", {"temperature_threshold": 10, "humidity_threshold": 70}),
                  ("glob:lab-*", {"temperature_threshold": 20}),
                  ("sensor:lab-7", {"temperature_threshold": 25}),
                  ("location:Cold Storage", {"temperature_threshold": 6})])
    config = table.config(RuleConfig())
    assert config.temperature_threshold == 30 and config.stuck_readings == 12
    seven = config.for_sensor("lab-7", "Lab")
    assert (seven.temperature_threshold, seven.humidity_threshold) == (25.0, 70.0)
    assert config.for_sensor("lab-8", "Lab").temperature_threshold == 20.0
    assert config.for_sensor("x", "Lab").temperature_threshold == 10.0
    assert config.for_sensor("x", "Hall").temperature_threshold == 30.0
    # The table's Cold Storage layer comes after the shipped one: it wins.
    assert config.for_sensor("sensor-03", "Cold Storage").temperature_threshold == 6.0
    shown = table.effective(RuleConfig(), "lab-7", "Lab")
    assert shown["layers"] == [DEFAULTS, "location:Lab", "glob:lab-*", "sensor:lab-7"]
    assert shown["settings"]["temperature_threshold"] == 25.0
    assert shown["settings"]["rate_min_span"] == 10.0
    assert table.to_json()["layers"]["sensor:lab-7"] == {"temperature_threshold": 25.0}
    assert json.loads(encode_value({"rate_min_span": timedelta(seconds=3)})) == {
        "rate_min_span": 3.0}


def test_a_pipeline_reconfigured_live_alerts_with_the_new_settings_and_version() -> None:
    p = Pipeline(clock=lambda: T0)
    stuck = [new_reading("s1", 20.0, 50.0, "Hall", T0 + timedelta(seconds=2 * i))
             for i in range(6)]
    got = [a for r in stuck[:4] for a in p.process(r)]
    assert got == []  # 4 equal readings: not stuck at 10
    table = fold([("sensor:s1", {"stuck_readings": 5, "temperature_threshold": 15})])
    assert p.reconfigure(table.config(RuleConfig()), table.version) == ["s1"]
    got = [a for r in stuck[4:] for a in p.process(r)]
    # The stuck run's state was kept: the 5th equal reading makes a run of 5.
    assert [a.rule for a in got] == ["threshold", "stuck"]
    assert {a.rules_version for a in got} == {table.version}
    assert got[0].to_dict()["rulesVersion"] == table.version
    assert Alert.model_validate_json(got[0].to_json()) == got[0]
    # Settings given in code: no version, and the wire format has no such key.
    plain = [a for a in Pipeline(clock=lambda: T0).process(
        new_reading("s2", 40.0, 50.0, "Hall", T0))]
    assert plain[0].rules_version is None and "rulesVersion" not in plain[0].to_dict()
    assert b"rulesVersion" not in plain[0].to_json()


def test_what_cannot_change_live_is_refused() -> None:
    p = Pipeline(clock=lambda: T0)
    with pytest.raises(ConfigError, match="cooldown"):
        p.reconfigure(RuleConfig(cooldown=timedelta(seconds=5)))


def test_notifications_carry_the_rules_version_when_the_alert_has_one() -> None:
    from sensorlib.config import Settings
    from sensorlib.notify.payload import _read_alert, alert_payload

    p = Pipeline(clock=lambda: T0)
    p.reconfigure(RuleConfig(), "v123")
    [hot] = p.process(new_reading("s1", 40.0, 50.0, "Hall", T0))
    assert _read_alert(hot.to_json())[-1] == "v123"  # the msgspec fast path
    assert alert_payload(hot, Settings(), now=T0)["annotations"]["rulesVersion"] == "v123"
    [plain] = Pipeline(clock=lambda: T0).process(new_reading("s1", 40.0, 50.0, "Hall", T0))
    assert _read_alert(plain.to_json())[-1] is None
    assert "rulesVersion" not in alert_payload(plain, Settings(), now=T0)["annotations"]


ODD_VALUES = [b"\xff\xfe", b"[" * 5000, b'{"temperature_threshold": ' + b"9" * 500 + b"}",
              b'{"temperature_threshold": 1e999}', b'{"rate_min_span": 1e308}', b"x" * 200_000,
              b'"x"', b"null", b'{"stuck_readings": ' + b"1" * 400 + b"}"]
ODD_KEYS = [b"\xff", None, "sensor:a\u202eb".encode(), "sensor:a\u200bb".encode(),
            "location:a\u2028b".encode(), b"x" * 100_000, b"sensor:", b"glob:"]


def test_no_record_raises_and_every_refusal_is_short() -> None:
    """A rules-topic record may hold anything (the processor reads every one at each
    start): deep JSON, a 500-digit number, invalid UTF-8, huge values, invisible characters
    in the layer's name are skipped with a short reason, and the good layer stays."""
    table = RulesTable().apply(b"sensor:a", b'{"temperature_threshold": 12}', 0)
    offset = 1
    for key in [b"sensor:a", *ODD_KEYS]:
        for value in [None, *ODD_VALUES]:
            if key == b"sensor:a" and value is None:
                continue  # a tombstone of the good layer is not odd
            table = table.apply(key, value, offset)
            offset += 1
    assert dict(table.layers) == {"sensor:a": {"temperature_threshold": 12.0}}
    assert len(table.skipped) == offset - 1  # every odd record refused
    assert max(len(reason) for _, reason in table.skipped) < 500


@pytest.mark.parametrize("value", [10**400, "1" * 400, 1e308, "x" * 10_000])
def test_huge_settings_are_refused_naming_the_field(value: object) -> None:
    for key in ("stuck_readings", "rate_min_span", "humidity_threshold"):
        with pytest.raises(InvalidSetting) as refused:
            layer_settings({key: value})
        assert refused.value.field == key and len(str(refused.value)) < 200
