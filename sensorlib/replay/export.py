"""Writing frames to files safely: Parquet or CSV, never over a file or through a symlink.

Everything in a readings or alerts frame came from Kafka, so a CSV cell is attacker text:
a sensorId of ``=HYPERLINK("http://evil.example", "click")`` would be a live formula when
the file is opened in a spreadsheet. :func:`write_frame` neutralises such cells the way
OWASP recommends — a leading ``'`` before a text cell that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return — so the spreadsheet shows the text as typed. Numbers and
timestamps are written as values (a negative temperature stays ``-5.0``). Parquet keeps
the exact strings: it is data, not a document.

:func:`write_frame` also takes a ``pyarrow.Table`` (what ``sensorlib sql --out`` writes:
DuckDB's result as Arrow, not pandas), whose types it keeps (:func:`plain_types`): a DATE
stays a date (``2026-11-29`` in CSV, ``date32`` in Parquet), an integer ``sum`` (DuckDB's
HUGEINT, a ``decimal(38, 0)`` in Arrow) stays an integer, an INTERVAL becomes seconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from sensorlib.errors import ExportError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FORMULA_PREFIXES", "ExportError", "neutralise_formulas", "plain_types",
           "write_frame"]

#: A text cell starting with one of these is a formula (or a DDE payload) in a spreadsheet.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
SUFFIXES = (".parquet", ".csv")


def _interval_seconds(column: pa.ChunkedArray) -> pa.Array:
    import pyarrow as pa

    # A month counts 30 days (DuckDB's own epoch() of an INTERVAL does the same).
    values = [None if v is None else v.months * 2_592_000 + v.days * 86_400 + v.nanoseconds / 1e9
              for v in column.to_pylist()]
    return pa.array(values, pa.float64())


def plain_types(table: pa.Table) -> pa.Table:
    """``table`` with types every reader keeps: integer decimals (DuckDB's HUGEINT sums)
    as ``int64`` when they fit, intervals and durations as ``float64`` seconds; the
    rest (dates, timestamps, decimals with a scale, text) unchanged.

    >>> import duckdb
    >>> t = duckdb.sql("select sum(range) s, interval 90 second i from range(3)").to_arrow_table()
    >>> plain_types(t).to_pylist()
    [{'s': 3, 'i': 90.0}]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    columns, fields = [], []
    for field, column in zip(table.schema, table.columns, strict=True):
        kind = field.type
        if pa.types.is_decimal(kind) and kind.scale == 0:
            bounds = [v.as_py() for v in pc.min_max(column).values()] if len(column) else []
            fits = all(v is None or -(2**63) <= v < 2**63 for v in bounds)
            if fits:
                column = column.cast(pa.int64())
        elif kind == pa.month_day_nano_interval():
            column = _interval_seconds(column)
        elif pa.types.is_duration(kind):
            column = pc.divide(column.cast(pa.int64()).cast(pa.float64()),
                               {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[kind.unit])
        columns.append(column)
        fields.append(pa.field(field.name, column.type))
    return pa.table(columns, schema=pa.schema(fields))


def _arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """A frame for CSV text: nullable integers stay integers, dates stay dates."""
    import pyarrow as pa

    mapping = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(),
               pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
               pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
               pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
               pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=mapping.get, date_as_object=True)



def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot start a spreadsheet formula.

    >>> neutralise_formulas(pd.DataFrame({"s": ["=1+1", "ok", "-x"], "t": [-5.0, 1.0, 2.0]}))
           s    t
    0  '=1+1 -5.0
    1     ok  1.0
    2    '-x  2.0
    """
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            text = column.astype(object)
            risky = text.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_PREFIXES))
            if risky.any():
                out[name] = text.where(~risky, "'" + text.where(risky, ""))
    return out


def write_frame(frame: pd.DataFrame | pa.Table, out: Path | str, *,
                force: bool = False) -> Path:
    """Write ``frame`` to ``out`` (``.parquet`` or ``.csv``) and return the path.

    ``frame`` may be a ``pyarrow.Table``: its types are kept (:func:`plain_types`), Parquet
    is written from Arrow and CSV with dates as ``YYYY-MM-DD`` and integers without ``.0``.

    Refuses to replace an existing file unless ``force``, and never writes through a
    symlink (even with ``force``): a link planted where a report goes could otherwise make
    sensorlib overwrite any file the user can write. CSV cells are neutralised
    (:func:`neutralise_formulas`), timestamps are ISO-8601 with ``Z``.

    Raises:
        ExportError: wrong suffix, the file exists, or the path is a symlink.
    """
    path = Path(out)
    if path.suffix not in SUFFIXES:
        raise ExportError(f"the output must end in .parquet or .csv, got {path.name!r}")
    if path.is_symlink():
        raise ExportError(f"{path} is a symbolic link; refusing to write through it — "
                          "choose another file name")
    if path.exists() and not force:
        raise ExportError(f"{path} already exists; choose another name, or pass --force "
                          "to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside it, then rename over it: no half-written file, and the rename replaces a
    # symlink planted after the check above rather than following it.
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    arrow = None if isinstance(frame, pd.DataFrame) else plain_types(frame)
    try:
        if arrow is not None and path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(arrow, partial)
        elif arrow is not None:
            neutralise_formulas(_arrow_to_frame(arrow)).to_csv(
                partial, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        elif path.suffix == ".parquet":
            frame.to_parquet(partial, index=False)
        else:
            neutralise_formulas(frame).to_csv(partial, index=False,
                                              date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
