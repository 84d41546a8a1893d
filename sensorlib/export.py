"""Writing frames to files safely: Parquet or CSV, never over a file or through a symlink.

Everything in a readings or alerts frame came from Kafka, so a CSV cell is attacker text:
a sensorId of ``=HYPERLINK("http://evil.example", "click")`` would be a live formula when
the file is opened in a spreadsheet. :func:`write_frame` neutralises such cells the way
OWASP recommends — a leading ``'`` before a text cell that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return — so the spreadsheet shows the text as typed. Numbers and
timestamps are written as values (a negative temperature stays ``-5.0``). Parquet keeps
the exact strings: it is data, not a document.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from sensorlib.errors import ExportError

__all__ = ["FORMULA_PREFIXES", "ExportError", "neutralise_formulas", "write_frame"]

#: A text cell starting with one of these is a formula (or a DDE payload) in a spreadsheet.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
SUFFIXES = (".parquet", ".csv")



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


def write_frame(frame: pd.DataFrame, out: Path | str, *, force: bool = False) -> Path:
    """Write ``frame`` to ``out`` (``.parquet`` or ``.csv``) and return the path.

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
    try:
        if path.suffix == ".parquet":
            frame.to_parquet(partial, index=False)
        else:
            neutralise_formulas(frame).to_csv(partial, index=False,
                                              date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
