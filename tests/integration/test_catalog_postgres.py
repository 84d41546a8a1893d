"""The archive's catalog on a real PostgreSQL started by sensorlib (``sensorlib db``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from sensorlib.config import Settings
from sensorlib.errors import HistoryError
from sensorlib.history.postgres import LocalPostgres
from sensorlib.history.query import (
    READINGS,
    catalog_uri,
    describe_catalog,
    load_table,
    open_table,
    sql,
    table_status,
)


def test_the_local_server_starts_idempotently_and_says_where_it_is(
        postgres: LocalPostgres) -> None:
    pid = postgres.pid()
    assert pid is not None
    assert postgres.start().pid() == pid  # a second start finds it running
    row = postgres.status()
    assert row["listening"] is True and row["uri"] == postgres.uri
    assert Path(str(row["data"]), "PG_VERSION").exists()


def test_a_table_written_through_postgres_is_read_back(pg_catalog_uri: str,
                                                       tmp_path: Path) -> None:
    settings = Settings().replace(warehouse_dir=tmp_path, catalog_uri=pg_catalog_uri)
    assert catalog_uri(settings) == pg_catalog_uri
    assert load_table(settings, READINGS) is None
    table = open_table(settings, READINGS)
    when = pd.Timestamp("2026-01-02T03:04:05Z").to_pydatetime()
    rows = pa.table({"sensor_id": ["s1"], "temperature": [21.5], "humidity": [40.0],
                     "location": ["lab"], "event_time": [when], "kafka_partition": [0],
                     "kafka_offset": [7], "record_time": [when], "event_id": ["e1"]},
                    schema=READINGS.arrow_schema)
    table.append(rows)
    assert not (tmp_path / "catalog.db").exists()  # nothing went to sqlite
    again = load_table(settings, READINGS)
    assert again is not None and again.current_snapshot() is not None
    assert sql("select sensor_id, temperature from readings", settings=settings,
               tail=False).to_dict("records") == [{"sensor_id": "s1", "temperature": 21.5}]
    assert table_status(settings)[0]["rows"] == 1


def test_a_server_that_does_not_answer_is_named_without_its_password(tmp_path: Path) -> None:
    from sensorlib.kafka.ports import free_port

    uri = f"postgresql://me:hunter2secret@127.0.0.1:{free_port()}/catalog"
    settings = Settings().replace(warehouse_dir=tmp_path, catalog_uri=uri)
    assert "hunter2secret" not in describe_catalog(settings)
    with pytest.raises(HistoryError) as caught:
        load_table(settings, READINGS)
    message = str(caught.value)
    assert "hunter2secret" not in message
    assert "me:***@127.0.0.1" in message and "does not answer" in message
