"""The README says what the code does (issue 24, items 4, 10 and 16): every command of "Using
it" parses as written and says how `sensorlib` gets on PATH, the archive's batch size is the
default's, and the scale-out table is what Kafka's default partitioner really does with the
reference fleet's keys."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2

from sensorlib.cli import build_parser
from sensorlib.history.archiver import DEFAULT_BATCH_ROWS
from sensorlib.ingest.simulate import REFERENCE_FLEET

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def _using_it_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", _section("Using it"), re.DOTALL)
    assert block
    return [line.split("#")[0].strip() for line in block.group(1).splitlines()
            if line.strip() and not line.startswith("#")]


def test_using_it_says_how_sensorlib_gets_on_path() -> None:
    commands = _using_it_commands()
    assert commands[0] == "source .venv/bin/activate"
    assert ".venv/bin/sensorlib" in _section("Using it")


@pytest.mark.parametrize("command", [c for c in _using_it_commands() if c.startswith("sensorlib")])
def test_using_it_commands_parse_as_written(command: str) -> None:
    args = shlex.split(command)[1:]
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit as exit_:  # --help exits 0 after printing; anything else is an error
        assert args == ["--help"] and exit_.code == 0, command
        return
    assert getattr(parsed, "handler", None) or parsed.version, command


def test_archive_batch_size_is_the_default() -> None:
    assert f"in batches of {DEFAULT_BATCH_ROWS:,} records" in README
    archive = build_parser().parse_args(["archive"])
    assert archive.batch_rows == DEFAULT_BATCH_ROWS


def _partition(sensor_id: str, partitions: int) -> int:
    """kafka-python's DefaultPartitioner (the Java client's murmur2) for a keyed record."""
    return (murmur2(sensor_id.encode()) & 0x7FFFFFFF) % partitions


def test_scale_out_table_is_the_partitioners_mapping() -> None:
    rows = re.finditer(r"^\| (\d) \| (.*?) \|$", _section("Using it"), re.MULTILINE)
    table = {int(m.group(1)): m.group(2).strip() for m in rows}
    ids = [spec.sensor_id for spec in REFERENCE_FLEET]
    assert ids == [f"sensor-0{k}" for k in range(1, 6)]
    for partition in range(3):
        on_it = [s for s in ids if _partition(s, 3) == partition]
        shown = table[partition]
        assert shown == (", ".join(on_it) if on_it else "— (stays empty)"), (partition, on_it)


def test_more_partitions_as_the_readme_says() -> None:
    ids = [spec.sensor_id for spec in REFERENCE_FLEET]
    four = {s: _partition(s, 4) for s in ids}
    assert four == {"sensor-01": 0, "sensor-02": 0, "sensor-03": 3, "sensor-04": 3,
                    "sensor-05": 1}
    assert min(n for n in range(1, 64) if len({_partition(s, n) for s in ids}) == 5) == 11
