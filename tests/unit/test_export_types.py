"""``sensorlib sql --out`` keeps types: DATE a date, integer sums integers, intervals seconds,
in CSV and Parquet alike; CSV text cells still cannot start a formula (issue 25 item 8)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sensorlib.errors import ExportError
from sensorlib.replay.export import plain_types, write_frame

QUERY = """
select date '2026-11-29' + (range % 2)::int as day, sum(range::bigint) as total,
       count(*) as n, max(ts) - min(ts) as span, avg(range) as mean,
       case when range % 2 = 0 then '=HYPERLINK("x")' else '-5' end as label,
       max(ts) as last, sum(case when range > 100 then 1 end) as none_sum
from (select range, timestamptz '2026-11-29 00:00:00+00' + to_seconds(range) as ts
      from range(10))
group by all order by day
"""


def _table() -> pa.Table:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.sql(QUERY).to_arrow_table()


def test_plain_types_keep_dates_integers_and_make_intervals_seconds() -> None:
    table = plain_types(_table())
    kinds = {f.name: f.type for f in table.schema}
    assert kinds["day"] == pa.date32()
    assert kinds["total"] == pa.int64() and kinds["n"] == pa.int64()
    assert kinds["span"] == pa.float64()
    assert table.column("span").to_pylist() == [8.0, 8.0]
    assert table.column("total").to_pylist() == [20, 25]
    huge = duckdb.sql("select 170141183460469231731687303715884105727::hugeint as h").to_arrow_table()
    assert pa.types.is_decimal(plain_types(huge).schema.field("h").type)  # too big: exact


def test_parquet_keeps_the_types(tmp_path: Path) -> None:
    out = write_frame(_table(), tmp_path / "x.parquet")
    back = pq.read_table(out)
    assert back.schema.field("day").type == pa.date32()
    assert back.schema.field("total").type == pa.int64()
    assert back.column("day").to_pylist() == [dt.date(2026, 11, 29), dt.date(2026, 11, 30)]
    assert back.column("label").to_pylist()[0] == '=HYPERLINK("x")'  # data: exact


def test_csv_writes_dates_integers_seconds_and_neutralises(tmp_path: Path) -> None:
    out = write_frame(_table(), tmp_path / "x.csv")
    rows = list(csv.DictReader(out.open()))
    assert [r["day"] for r in rows] == ["2026-11-29", "2026-11-30"]
    assert [r["total"] for r in rows] == ["20", "25"] and rows[0]["n"] == "5"
    assert rows[0]["span"] == "8.0"
    assert rows[0]["label"] == "'=HYPERLINK(\"x\")" and rows[1]["label"] == "'-5"
    assert rows[0]["last"] == "2026-11-29T00:00:08.000000Z"
    assert rows[0]["none_sum"] == ""  # a null integer is empty, not NaN
    with pytest.raises(ExportError, match="already exists"):
        write_frame(_table(), out)
