"""Several writers commit to one archive table: Iceberg's optimistic commit, checked at commit
time against the offsets the table covers (no broker: two handles of one real sqlite catalog,
as two archiver processes have)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from sensorlib.config import Settings
from sensorlib.errors import ClusterMismatch
from sensorlib.history.query import (
    CLUSTER_PROPERTY,
    OFFSETS_PROPERTY,
    READINGS,
    check_cluster,
    offsets_property,
    open_table,
    snapshot_offsets,
)
from sensorlib.history.writer import _open_tables, commit_batch

pytestmark = pytest.mark.unit


def rows(partition: int, first: int, last: int) -> pa.Table:
    """Readings of ``partition`` at offsets ``first..last`` (inclusive)."""
    n = last - first + 1
    at = datetime(2026, 12, 1, tzinfo=UTC)
    data = {
        "sensor_id": [f"s{partition}"] * n, "temperature": [20.0] * n, "humidity": [50.0] * n,
        "location": ["lab"] * n, "event_time": [at] * n, "kafka_partition": [partition] * n,
        "kafka_offset": list(range(first, last + 1)), "record_time": [at] * n,
        "event_id": [None] * n,
    }
    return pa.table(data, schema=READINGS.arrow_schema)


def coords(table: object) -> list[tuple[int, int]]:
    got = table.refresh().scan().to_arrow()  # type: ignore[attr-defined]
    return sorted(zip(got["kafka_partition"].to_pylist(), got["kafka_offset"].to_pylist(),
                      strict=True))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env().replace(warehouse_dir=tmp_path / "warehouse")


def test_a_stale_writer_refreshes_and_drops_what_the_new_owner_archived(settings: Settings
                                                                         ) -> None:
    topic = READINGS.topic(settings)
    old_owner = open_table(settings, READINGS)
    new_owner = open_table(settings, READINGS)  # both loaded before either commits
    # The new owner of partition 0 archives 0..149 (it re-read what the old one had read).
    new_owner, n, skipped, conflicts = commit_batch(new_owner, rows(0, 0, 149), topic, {0: 150})
    assert (n, skipped, conflicts) == (150, 0, 0)
    # The old owner still commits its batch of 100..199 (partition 0) and 0..49 (partition 1),
    # from a stale table: a conflict, a refresh, 100..149 of partition 0 dropped.
    batch = pa.concat_tables([rows(0, 100, 199), rows(1, 0, 49)])
    old_owner, n, skipped, conflicts = commit_batch(old_owner, batch, topic, {0: 200, 1: 50})
    assert (n, skipped, conflicts) == (100, 50, 1)
    assert snapshot_offsets(old_owner) == {0: 200, 1: 50}
    expected = [(0, o) for o in range(200)] + [(1, o) for o in range(50)]
    assert coords(old_owner) == expected
    # A batch that is all archived already commits nothing (no snapshot).
    before = len(old_owner.refresh().snapshots())
    _, n, skipped, _ = commit_batch(new_owner, rows(0, 150, 199), topic, {0: 200})
    assert (n, skipped) == (0, 50)
    assert len(old_owner.refresh().snapshots()) == before
    assert coords(old_owner) == expected


def test_offsets_are_each_partitions_newest_across_snapshots(settings: Settings) -> None:
    table = open_table(settings, READINGS)
    topic = READINGS.topic(settings)
    # Snapshots that each name only their own writer's partitions (the last one is not
    # the one that knows partition 0).
    table.append(rows(0, 0, 9), snapshot_properties=offsets_property(topic, {0: 10}))
    table = table.refresh()
    table.append(rows(1, 0, 4), snapshot_properties=offsets_property(topic, {1: 5}))
    table = table.refresh()
    assert snapshot_offsets(table) == {0: 10, 1: 5}
    # commit_batch records every partition's newest offset in its snapshot.
    table, _, _, _ = commit_batch(table, rows(2, 0, 0), topic, {2: 1})
    summary = table.current_snapshot().summary.additional_properties
    assert summary[OFFSETS_PROPERTY] == offsets_property(topic, {0: 10, 1: 5, 2: 1})[
        OFFSETS_PROPERTY]


def test_an_archive_of_another_cluster_is_refused_naming_both(settings: Settings) -> None:
    tables = _open_tables(settings, [READINGS], "cluster-A")
    table = tables[READINGS.topic(settings)]
    assert table.properties[CLUSTER_PROPERTY] == "cluster-A"
    check_cluster(table, READINGS.topic(settings), "cluster-A", "here:9092")  # the same: fine
    with pytest.raises(ClusterMismatch, match="cluster cluster-A.*is Kafka cluster cluster-B"):
        _open_tables(settings, [READINGS], "cluster-B")
    other = settings.replace(topic_readings=settings.topic_readings.replace("-", "."))
    with pytest.raises(ClusterMismatch, match="archives topic"):
        _open_tables(other, [READINGS], "cluster-A")


def test_a_partition_taken_over_relearns_its_retried_event_ids(settings: Settings) -> None:
    """The eventId memory of a newly assigned partition comes from the table (what its
    previous owner archived), so a retried POST after a rebalance stays one row."""
    from sensorlib.history.batches import Retries

    table = open_table(settings, READINGS)
    batch = rows(0, 0, 1).set_column(8, "event_id", pa.array(["e-0", "e-1"]))
    table, _, _, _ = commit_batch(table, batch, READINGS.topic(settings), {0: 2})
    at_ms = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)
    mine = Retries(span_ms=600_000)
    assert mine.first(1, "s1", "x", at_ms)  # a partition this writer already had
    mine.reload(table, {0})
    assert not mine.first(0, "s0", "e-1", at_ms)  # archived by the previous owner
    assert mine.first(0, "s0", "e-2", at_ms)
    assert not mine.first(1, "s1", "x", at_ms)  # the other partitions' memory is kept
