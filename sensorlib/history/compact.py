"""Compaction of the history tables: one sorted file per event day, old snapshots expired,
unreferenced files deleted (``sensorlib archive compact``)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from sensorlib.config import Settings
from sensorlib.history.query import (
    KINDS,
    offsets_property,
    open_table,
    snapshot_offsets,
)

log = logging.getLogger("sensorlib.history.archiver")

__all__ = ["compact"]

# -- compaction ------------------------------------------------------------------------------


def compact(settings: Settings, *, min_files: int = 4, keep_snapshots: timedelta = timedelta(hours=1),
            orphan_age: timedelta = timedelta(hours=1), progress: Any = None) -> dict[str, Any]:
    """Rewrite each event day with ``min_files`` or more data files into one sorted file.

    The rewrite is an Iceberg overwrite of that day, committed with the same Kafka
    offsets as the snapshot it replaces (so the archiver's place is kept; a commit race
    with a running archiver is retried). Then snapshots older than ``keep_snapshots``
    are expired and data files no snapshot references any more (older than
    ``orphan_age``, so an in-flight append is never touched) are deleted.
    """
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    say = progress or (lambda message: None)
    report: dict[str, Any] = {}
    for kind in KINDS:
        table = open_table(settings, kind)
        topic = kind.topic(settings)
        days: dict[Any, int] = {}
        for task in table.scan().plan_files():
            day = task.file.partition[0]
            days[day] = days.get(day, 0) + 1
        rewritten = 0
        for day, files in sorted(days.items()):
            if files < min_files:
                continue
            start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=int(day))
            where = And(GreaterThanOrEqual("event_time", start.isoformat()),
                        LessThan("event_time", (start + timedelta(days=1)).isoformat()))
            for attempt in range(5):
                table = table.refresh()
                rows = table.scan(row_filter=where).to_arrow()
                rows = rows.take(pc.sort_indices(rows, sort_keys=[("event_time", "ascending")]))
                props = offsets_property(topic, snapshot_offsets(table))
                try:
                    table.overwrite(rows, overwrite_filter=where, snapshot_properties=props)
                    break
                except CommitFailedException:
                    if attempt == 4:
                        raise
            rewritten += 1
            say(f"{topic}: {start:%Y-%m-%d} {files} files -> 1 ({rows.num_rows:,} rows)")
        table = table.refresh()
        expired = _expire(table, keep_snapshots)
        deleted = _delete_orphans(table, orphan_age)
        report[topic] = {"days_rewritten": rewritten, "snapshots_expired": expired,
                         "files_deleted": deleted}
    return report


def _expire(table: Any, keep: timedelta) -> int:
    current = table.current_snapshot()
    if current is None:
        return 0
    cutoff = datetime.now(UTC) - keep
    old = [s.snapshot_id for s in table.snapshots()
           if s.snapshot_id != current.snapshot_id and s.timestamp_ms < cutoff.timestamp() * 1000]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()
    return len(old)


def _delete_orphans(table: Any, min_age: timedelta) -> int:
    """Delete data files of this table that no remaining snapshot references."""
    from pyiceberg.manifest import ManifestContent

    table = table.refresh()
    referenced: set[str] = set()
    for snapshot in table.snapshots():
        for manifest in snapshot.manifests(table.io):
            if manifest.content != ManifestContent.DATA:
                continue
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                referenced.add(entry.data_file.file_path.removeprefix("file://"))
    root = Path(table.location().removeprefix("file://")) / "data"
    cutoff = time.time() - min_age.total_seconds()
    deleted = 0
    for path in root.rglob("*.parquet") if root.exists() else ():
        if str(path) not in referenced and path.stat().st_mtime < cutoff:
            path.unlink()
            deleted += 1
    return deleted

