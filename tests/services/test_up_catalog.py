"""`sensorlib up --catalog postgres`: the local PostgreSQL holds the archive's catalog."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sensorlib.cli.status import _archive_status
from sensorlib.config import Settings
from sensorlib.errors import DatabaseError
from sensorlib.history.postgres import LocalPostgres, find_binaries
from sensorlib.history.query import READINGS, close_catalogs, load_table
from sensorlib.kafka.ports import free_port
from tests.support import eventually, service_env, wait_for_up

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_up_with_a_postgres_catalog_archives_into_it_and_stops_it(settings: Settings,
                                                                  tmp_path: Path) -> None:
    try:
        find_binaries()
    except DatabaseError as exc:
        pytest.skip(str(exc))
    port = free_port()
    ports = {"SENSORLIB_PRODUCER_PORT": free_port(), "SENSORLIB_PROCESSOR_PORT": free_port(),
             "SENSORLIB_ARCHIVER_PORT": free_port(), "SENSORLIB_DB_PORT": port}
    env = service_env(settings, **{k: str(v) for k, v in ports.items()},
                      SENSORLIB_DATA=str(tmp_path / "data"),
                      SENSORLIB_WAREHOUSE=str(tmp_path / "warehouse"))
    db = LocalPostgres(tmp_path / "data" / "postgres", port=port)
    url = db.uri
    on_pg = settings.replace(warehouse_dir=tmp_path / "warehouse", catalog_uri=url)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sensorlib.cli", "up", "--no-dashboard",
                                 "--catalog", "postgres"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_up(proc, log, timeout=120)
        eventually(lambda: f"catalog    {url}" in log.read_text(), timeout=10)
        # The archiver (a child) opened its tables in PostgreSQL, not in a sqlite file.
        eventually(lambda: load_table(on_pg, READINGS) is not None, timeout=60)
        assert not (tmp_path / "warehouse" / "catalog.db").exists()
        archive = _archive_status(on_pg)  # what `sensorlib status` says of the archive
        assert archive["catalog"] == url and archive["catalogAnswers"] is True
        assert archive["tables"] and archive["tables"][0]["exists"]
    finally:
        close_catalogs()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        stopped = not db.running()
        db.remove()
    assert code == 0, log.read_text()
    assert stopped, "up started PostgreSQL and must stop it"
