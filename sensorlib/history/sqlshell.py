"""SQL on the archive at a prompt: ``sensorlib sql`` with no query (issue 25 item 8).

One DuckDB connection (:func:`sensorlib.history.query.connect`'s views ``readings``, ``alerts``,
``dead_letters``) stays open for the whole session, so a query costs its own time only —
not the ~1.6 s of opening the catalog, listing the data files and reading Kafka's tail that
every ``sensorlib sql "…"`` pays. Results come back as Arrow (:meth:`Session.query`), so
``--out``/``.out`` keep their types (:func:`sensorlib.replay.export.write_frame`).

At a terminal: a query runs when its line ends with ``;`` (it may span lines), ``Tab``
completes table, column and meta-command names, and history is kept in
``$SENSORLIB_DATA/sql_history``. Not at a terminal (a pipe, a test): every line is one
query, no prompt is printed, and the exit status is 1 if any query failed. Meta commands:
``.tables``, ``.schema [view]``, ``.out FILE`` (the next result to a file), ``.timer on|off``,
``.help``, ``.quit``. An error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sensorlib.config import Settings
from sensorlib.errors import HistoryError, SensorlibError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Session", "SqlShell", "format_table", "history_path"]

META = (".tables", ".schema", ".out", ".timer", ".help", ".quit", ".exit")

KEYWORDS = ("select", "from", "where", "group by", "order by", "having", "limit", "count",
            "avg", "min", "max", "sum", "distinct", "as", "and", "or", "not", "between",
            "date_trunc", "with", "join", "on", "desc", "asc", "case", "when", "then", "else",
            "end", "interval", "event_day", "timestamptz", "union", "all", "by", "is", "null")

HELP = """\
SQL over the archive (DuckDB). Views: readings, alerts, dead_letters (plus Kafka's tail
unless --no-tail). Group daily by event_day (a DATE), not date_trunc('day', event_time).
  .tables            the views
  .schema [view]     columns and types
  .out FILE          write the next result to FILE (.csv or .parquet; types kept)
  .timer on|off      print each query's time (default on)
  .quit / .exit      leave (Ctrl-D too)
At a terminal a query ends with ';' and may span lines; piped, every line is a query."""


def history_path(settings: Settings) -> Path:
    """Where the prompt keeps its history: ``$SENSORLIB_DATA/sql_history``."""
    return settings.data_dir / "sql_history"


class Session:
    """One open DuckDB connection on the archive's views, for many queries."""

    def __init__(self, settings: Settings | None = None, *, tail: bool = True) -> None:
        from sensorlib.history.query import KINDS, _connect

        settings = Settings.from_env() if settings is None else settings
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.con, self.tail_rows, self.notes = _connect(settings, KINDS, tail)
        self.opened_in = time.perf_counter() - started

    def query(self, query: str, params: Any = None) -> pa.Table:
        """The result of ``query`` as an Arrow table.

        Raises:
            HistoryError: empty, not valid SQL, or names something that does not exist.
        """
        import duckdb

        if not query or not query.strip():
            raise HistoryError("the SQL query is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # DuckDB's "extra copy" note on to_arrow
                if params is None:
                    relation = self.con.sql(query)
                    if relation is None:  # a statement without a result (SET, CREATE …)
                        import pyarrow as pa

                        return pa.table({})
                    return relation.to_arrow_table()
                return self.con.execute(query, params).to_arrow_table()
        except duckdb.Error as exc:
            raise HistoryError(f"{type(exc).__name__}: {exc}".strip()) from None

    def views(self) -> list[str]:
        rows = self.con.execute(
            "select table_name from information_schema.tables where table_schema = 'main' "
            "and table_type = 'VIEW' and table_name not like '\\_%' escape '\\' "
            "order by 1").fetchall()
        return [r[0] for r in rows]

    def columns(self, view: str) -> list[tuple[str, str]]:
        rows = self.con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'main' and table_name = ? order by ordinal_position",
            [view]).fetchall()
        return [(r[0], r[1]) for r in rows]

    def close(self) -> None:
        self.con.close()


def format_table(table: pa.Table, max_rows: int = 50) -> str:
    """``table``'s first ``max_rows`` rows as aligned text (types as :mod:`export` keeps them)."""
    import pandas as pd

    from sensorlib.replay.export import _arrow_to_frame, plain_types

    if table.num_columns == 0:
        return "(done)"
    if table.num_rows == 0:
        return f"(no rows; columns: {', '.join(table.column_names)})"
    frame = _arrow_to_frame(plain_types(table.slice(0, max_rows)))
    with pd.option_context("display.max_rows", max_rows, "display.max_columns", 50,
                           "display.width", 200):
        return frame.to_string(index=False)


class SqlShell:
    """The prompt: reads queries from ``stdin`` and answers on ``stdout``/``stderr``."""

    def __init__(self, session: Session, settings: Settings, *, max_rows: int = 50,
                 stdin: IO[str] | None = None, stdout: IO[str] | None = None,
                 stderr: IO[str] | None = None, interactive: bool | None = None) -> None:
        self.session = session
        self.settings = settings
        self.max_rows = max_rows
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.interactive = self.stdin.isatty() if interactive is None else interactive
        self.timer = True
        self.out: str | None = None
        self.failed = 0
        self._names: list[str] | None = None

    # -- output -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)

    def show(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    # -- completion ---------------------------------------------------------------------

    def names(self) -> list[str]:
        if self._names is None:
            names: set[str] = set()
            for view in self.session.views():
                names.add(view)
                names.update(c for c, _ in self.session.columns(view))
            self._names = sorted(names) + list(KEYWORDS)
        return self._names

    def complete(self, text: str, state: int) -> str | None:
        """readline's completer: meta commands at the start, else views, columns, keywords."""
        try:
            import readline

            line = readline.get_line_buffer()
            pool: Iterable[str] = META if line.lstrip().startswith(".") and " " not in \
                line.lstrip() else self.names()
            if line.lstrip().startswith(".schema "):
                pool = self.session.views()
            low = text.lower()
            found = [n for n in pool if n.lower().startswith(low)]
            return found[state] if state < len(found) else None
        except Exception:  # noqa: BLE001 - a completer must never raise into readline
            return None

    def _readline(self) -> Callable[[], None]:
        """Set up history and completion; returns what saves the history."""
        try:
            import readline
        except ImportError:  # pragma: no cover - every Linux Python has it
            return lambda: None
        path = history_path(self.settings)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                readline.read_history_file(path)
        except OSError:
            pass
        readline.set_history_length(2000)
        readline.set_completer(self.complete)
        readline.set_completer_delims(" \t\n,()=<>*+-/;'\"")
        readline.parse_and_bind("tab: complete")

        def save() -> None:
            try:
                readline.write_history_file(path)
            except OSError:
                pass
        return save

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Answer queries until ``.quit`` or end of input; 1 if any failed when piped."""
        save = self._readline() if self.interactive else (lambda: None)
        if self.interactive:
            views = ", ".join(self.session.views())
            self.say(f"sensorlib sql: {views} (opened in {self.session.opened_in:.2f} s). "
                     "End a query with ';'. .help for help, .quit to leave.")
        buffer: list[str] = []
        try:
            while True:
                try:
                    line = self._read("   ...> " if buffer else "sql> ")
                except KeyboardInterrupt:
                    self.show("")
                    buffer.clear()
                    continue
                if line is None:
                    break
                stripped = line.strip()
                if not buffer and stripped.startswith("."):
                    if not self.meta(stripped):
                        break
                    continue
                if not stripped and not buffer:
                    continue
                buffer.append(line)
                if self.interactive and not stripped.endswith(";"):
                    continue
                query = "\n".join(buffer).strip()
                buffer.clear()
                try:
                    self.execute(query)
                except KeyboardInterrupt:
                    self.say("interrupted")
        finally:
            save()
        if buffer:
            self.execute("\n".join(buffer))
        return 1 if (self.failed and not self.interactive) else 0

    def _read(self, prompt: str) -> str | None:
        if self.interactive and self.stdin is sys.stdin:
            try:
                return input(prompt)
            except EOFError:
                self.show("")
                return None
        line = self.stdin.readline()
        return None if line == "" else line.rstrip("\n")

    def execute(self, query: str) -> None:
        """Run one query and show (or write) its result; errors are one line on stderr."""
        from sensorlib.replay.export import write_frame

        query = query.strip().rstrip(";").strip()
        if not query:
            return
        started = time.perf_counter()
        try:
            table = self.session.query(query)
            took = time.perf_counter() - started
            if self.out:
                out, self.out = self.out, None
                path = write_frame(table, out)
                self.say(f"{table.num_rows:,} rows → {path}")
            else:
                self.show(format_table(table, self.max_rows))
                if table.num_rows > self.max_rows:
                    self.say(f"… {table.num_rows - self.max_rows:,} more rows "
                             f"({table.num_rows:,} in all; .out FILE writes them all)")
            if self.timer:
                rows = table.num_rows
                self.say(f"({rows:,} row{'' if rows == 1 else 's'}, {took:.3f} s)")
        except SensorlibError as exc:
            self.failed += 1
            self.say(f"error: {exc}")
        except Exception as exc:  # noqa: BLE001 - the prompt outlives any failed query
            self.failed += 1
            self.say(f"error: {type(exc).__name__}: {exc}")

    def meta(self, line: str) -> bool:
        """Run a meta command; False to leave."""
        word, _, rest = line.partition(" ")
        rest = rest.strip().rstrip(";").strip()
        if word in (".quit", ".exit", ".q"):
            return False
        if word == ".help":
            self.show(HELP)
        elif word == ".tables":
            self.show("  ".join(self.session.views()))
        elif word == ".schema":
            views = [rest] if rest else self.session.views()
            for view in views:
                columns = self.session.columns(view)
                if not columns:
                    self.failed += 1
                    self.say(f"error: no view {view!r} (.tables lists them)")
                    continue
                self.show(f"{view}(" + ", ".join(f"{c} {t}" for c, t in columns) + ")")
        elif word == ".out":
            if not rest:
                self.failed += 1
                self.say("error: .out needs a file name ending in .csv or .parquet")
            else:
                self.out = rest
                self.say(f"the next result goes to {rest}")
        elif word == ".timer":
            self.timer = rest.lower() != "off"
        else:
            self.failed += 1
            self.say(f"error: unknown command {word!r} (.help lists them)")
        return True


def run_prompt(settings: Settings, *, tail: bool = True, max_rows: int = 50) -> int:
    """``sensorlib sql`` without a query: the prompt, on one connection."""
    session = Session(settings, tail=tail)
    try:
        shell = SqlShell(session, settings, max_rows=max_rows)
        for note in session.notes:
            shell.say(f"note: {note}")
        tail_rows = {v: n for v, n in session.tail_rows.items() if n}
        if tail_rows and shell.interactive:
            shell.say("note: the views include what Kafka holds beyond the archive ("
                      + ", ".join(f"{v}: {n:,} rows" for v, n in tail_rows.items())
                      + "; --no-tail for the archive alone)")
        return shell.run()
    finally:
        session.close()
