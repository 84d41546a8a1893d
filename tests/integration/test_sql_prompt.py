"""``sensorlib sql`` with no query: a prompt on one DuckDB connection, driven through stdin
as a pipe (one query per line), meta commands, errors without tracebacks, typed ``.out``
(issue 25 item 8)."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sensorlib.config import Settings
from tests.integration.test_archive import archive_all, fleet, publish
from tests.support import service_env

pytestmark = pytest.mark.kafka


@pytest.fixture
def archived(topics: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    catalog = (request.getfixturevalue("history_catalog")
               if "history_catalog" in request.fixturenames else None)
    settings = topics.replace(warehouse_dir=tmp_path / "warehouse", data_dir=tmp_path / "data",
                              catalog_uri=catalog)
    readings = fleet(datetime(2026, 6, 1, 23, 50, tzinfo=UTC), 20)
    publish(settings, readings)
    archive_all(settings)
    return settings


def _prompt(settings: Settings, lines: list[str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sensorlib.cli", "sql", *extra],
                          input="\n".join(lines) + "\n", check=False, capture_output=True, text=True,
                          env=service_env(settings), timeout=120)


@pytest.mark.usefixtures("history_catalog")  # on sqlite and on PostgreSQL
def test_the_prompt_answers_piped_queries_on_one_connection(archived: Settings,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "daily.csv"
    done = _prompt(archived, [
        ".tables",
        ".schema readings",
        "select count(*) as n from readings",
        "select no_such_column from readings",
        "",
        "select event_day, count(*) as n, sum(kafka_offset) as s from readings group by 1 order by 1;",
        f".out {out}",
        "select event_day, count(*) as n, sum(kafka_offset) as s from readings group by 1 order by 1",
        ".nonsense",
        ".quit",
        "select 'never run' as x",
    ], "--no-tail")
    assert "Traceback" not in done.stderr + done.stdout
    assert done.returncode == 1  # a query and a meta command failed (piped: a script sees it)
    assert "readings" in done.stdout and "alerts" in done.stdout and "dead_letters" in done.stdout
    assert re.search(r"readings\(sensor_id VARCHAR, .*event_day DATE", done.stdout)
    assert "error: BinderException" in done.stderr and "no_such_column" in done.stderr
    assert "error: unknown command '.nonsense'" in done.stderr
    assert "never run" not in done.stdout
    # One connection: each query costs milliseconds, not the catalog's start-up.
    times = [float(t) for t in re.findall(r"rows?, ([0-9.]+) s\)", done.stderr)]
    assert len(times) == 3 and max(times) < 1.0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["event_day"] for r in rows] == ["2026-06-01", "2026-06-02"]
    assert all(re.fullmatch(r"\d+", r["n"]) and re.fullmatch(r"\d+", r["s"]) for r in rows)


def test_one_shot_out_keeps_types_and_no_query_with_out_is_refused(archived: Settings,
                                                                  tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    target = tmp_path / "d.parquet"
    done = subprocess.run([sys.executable, "-m", "sensorlib.cli", "sql", "--no-tail",
                           "select event_day, sum(kafka_offset) as s from readings group by 1",
                           "--out", str(target)], check=False, capture_output=True, text=True,
                          env=service_env(archived), timeout=120)
    assert done.returncode == 0, done.stderr
    schema = pq.read_schema(target)
    assert str(schema.field("event_day").type) == "date32[day]"
    assert str(schema.field("s").type) == "int64"
    refused = _prompt(archived, [], "--out", str(tmp_path / "x.csv"))
    assert refused.returncode == 2 and "--out needs a query" in refused.stderr
