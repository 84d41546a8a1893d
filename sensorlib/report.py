"""Reports: per-sensor summaries and figures of a period, and scheduled papermill runs.

:func:`run_report` executes ``notebooks/04_report.ipynb`` with papermill for a period
and writes the executed notebook and an HTML export next to each other, named by the
period. ``sensorlib report --start yesterday --end today --out reports/`` does the same
from cron or a systemd timer. The summary and figure helpers are what the notebooks call.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from sensorlib.config import Settings
from sensorlib.errors import KafkaUnavailable, SensorlibError
from sensorlib.replay import TimeLike, resolve_period

__all__ = [
    "REPORT_NOTEBOOK",
    "STATUS_COLOURS",
    "ReportError",
    "alerts_overlay",
    "describe_period",
    "notebooks_dir",
    "run_report",
    "settings_for",
    "style_status",
    "summary_table",
]

REPORT_NOTEBOOK = "04_report.ipynb"
#: Background colours of the dashboard's statuses.
STATUS_COLOURS = {"critical": "#e74c3c", "warning": "#f39c12", "normal": "#27ae60"}
_KERNEL = "python3"


class ReportError(SensorlibError):
    """A report could not be produced (the message names the failing cell)."""


# -- notebook helpers -----------------------------------------------------------------------


def settings_for(bootstrap_servers: str | None = None, readings_topic: str | None = None,
                 alerts_topic: str | None = None) -> Settings:
    """``Settings.from_env()`` with a notebook's parameter overrides applied (None = keep)."""
    settings = Settings.from_env()
    changes: dict[str, Any] = {}
    if bootstrap_servers:
        changes.update(bootstrap_servers=bootstrap_servers, external=True)
    if readings_topic:
        changes["topic_readings"] = readings_topic
    if alerts_topic:
        changes["topic_alerts"] = alerts_topic
    return settings.replace(**changes) if changes else settings


def summary_table(readings: pd.DataFrame, alerts: pd.DataFrame) -> pd.DataFrame:
    """One row per sensor: reading count, temperature/humidity statistics, alerts, status.

    Sensors that only appear in ``alerts`` get a row too (with no statistics).
    """
    from sensorlib.events import status_of

    stats = readings.groupby("sensorId").agg(
        location=("location", "last"),
        readings=("temperature", "size"),
        first=("timestamp", "min"),
        last=("timestamp", "max"),
        temp_mean=("temperature", "mean"),
        temp_min=("temperature", "min"),
        temp_max=("temperature", "max"),
        humidity_mean=("humidity", "mean"),
        humidity_min=("humidity", "min"),
        humidity_max=("humidity", "max"),
    )
    latest = readings.sort_values("timestamp", kind="stable").groupby("sensorId").tail(1)
    stats["status"] = pd.Series(
        [status_of(t, h) for t, h in zip(latest["temperature"], latest["humidity"], strict=True)],
        index=latest["sensorId"].to_numpy(), dtype="str")
    counts = (alerts.groupby(["sensorId", "severity"]).size().unstack(fill_value=0)
              .reindex(columns=["warning", "critical"], fill_value=0).add_suffix("_alerts"))
    table = stats.join(counts, how="outer")
    for column in ("readings", "warning_alerts", "critical_alerts"):
        table[column] = table[column].fillna(0).astype("int64")
    table.index.name = "sensorId"
    numbers = table.select_dtypes("float").columns
    table[numbers] = table[numbers].round(2)
    return table.sort_index()


def describe_period(start: pd.Timestamp | None, end: pd.Timestamp | None) -> str:
    """``2026-01-01 00:00:00 → 2026-01-02 00:00:00 UTC (end excluded)`` for headings."""
    def show(t: pd.Timestamp | None, open_end: str) -> str:
        return open_end if t is None else f"{t:%Y-%m-%d %H:%M:%S}"

    return f"{show(start, 'the beginning')} → {show(end, 'now')} UTC (end excluded)"


def style_status(frame: pd.DataFrame, column: str = "status") -> Any:
    """A pandas Styler colouring ``column`` with the dashboard's status colours."""
    def colour(value: object) -> str:
        bg = STATUS_COLOURS.get(str(value))
        return f"background-color: {bg}; color: white; font-weight: bold" if bg else ""

    times = {c: (lambda t: "" if pd.isna(t) else t.strftime("%Y-%m-%d %H:%M:%S"))
             for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)}
    return frame.style.map(colour, subset=[column]).format(precision=2).format(times)


def alerts_overlay(readings: pd.DataFrame, alerts: pd.DataFrame, field: str = "temperature",
                   *, width: int = 900, height: int = 320) -> Any:
    """hvPlot lines of ``field`` per sensor with the period's alerts marked on top."""
    import holoviews as hv
    import hvplot.pandas  # noqa: F401 - registers .hvplot

    unit = "°C" if field == "temperature" else "%"
    lines = readings.hvplot.line(x="timestamp", y=field, by="sensorId", width=width,
                                 height=height, ylabel=f"{field} ({unit})", xlabel="time (UTC)",
                                 title=f"{field.capitalize()} with alerts")
    if alerts.empty:
        return lines
    marks = alerts.hvplot.scatter(x="timestamp", y=field, by="severity", marker="x", size=120,
                                  color=["#f39c12", "#e74c3c"], hover_cols=["sensorId", "rule",
                                                                             "reason"])
    return hv.Overlay([lines, marks]).opts(legend_position="right")


# -- running the report notebook ----------------------------------------------------------


def notebooks_dir() -> Path:
    """The ``notebooks/`` folder: ``$SENSORLIB_NOTEBOOKS``, else next to the package."""
    override = os.environ.get("SENSORLIB_NOTEBOOKS", "").strip()
    folder = Path(override).expanduser() if override else (
        Path(__file__).resolve().parent.parent / "notebooks")
    if not (folder / REPORT_NOTEBOOK).is_file():
        raise ReportError(f"{REPORT_NOTEBOOK} not found in {folder}; set SENSORLIB_NOTEBOOKS "
                          "to the folder holding the sensorlib notebooks")
    return folder


def _kernel_name() -> str:
    """A kernelspec that runs this interpreter, installed into sys.prefix when missing."""
    from jupyter_client.kernelspec import KernelSpecManager

    if _KERNEL not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix",
                        "--name", _KERNEL], check=True, capture_output=True)
    return _KERNEL


def _stamp(t: pd.Timestamp | None) -> str:
    return "beginning" if t is None else t.strftime("%Y%m%dT%H%M%SZ")


def _export_html(notebook: Path, html: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:  # outputs with nothing to show (e.g. JS-only loaders) are noise
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if o.get("output_type") != "display_data" or o.get("data")]
    body, _ = exporter.from_notebook_node(nb)
    html.write_text(body, encoding="utf-8")


def run_report(
    start: TimeLike,
    end: TimeLike,
    out_dir: str | Path = "reports/",
    sensors: Iterable[str] | None = None,
    settings: Settings | None = None,
    *,
    timeout: float = 600.0,
) -> Path:
    """Execute the report notebook for ``start <= t < end``; returns the executed .ipynb.

    Writes ``report_<start>_<end>.ipynb`` and ``.html`` into ``out_dir``. The notebook
    gets the bootstrap servers and topic names as papermill parameters (credentials
    stay in the environment, which the kernel inherits, so they never land in a file).

    Raises:
        ReplayError: an empty period.
        KafkaUnavailable: Kafka does not answer (checked before starting a kernel).
        ReportError: the notebook failed; the message names the cell and the error.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from sensorlib.kafka_io import kafka_reachable, wait_for_kafka

    settings = Settings.from_env() if settings is None else settings
    t0, t1 = resolve_period(start, end)
    if t1 is None:
        t1 = pd.Timestamp.now(tz="UTC")
    if not kafka_reachable(settings):  # fail at once, before a kernel starts
        raise KafkaUnavailable(settings.bootstrap_servers, "nothing listens there")
    wait_for_kafka(settings, timeout=10)
    folder = notebooks_dir()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"report_{_stamp(t0)}_{_stamp(t1)}"
    executed = out / f"{name}.ipynb"
    parameters = {
        "bootstrap_servers": settings.bootstrap_servers,
        "start": None if t0 is None else t0.isoformat(),
        "end": t1.isoformat(),
        "sensors": None if sensors is None else list(sensors),
        "readings_topic": settings.topic_readings,
        "alerts_topic": settings.topic_alerts,
    }
    try:
        papermill.execute_notebook(
            str(folder / REPORT_NOTEBOOK), str(executed), parameters=parameters,
            kernel_name=_kernel_name(), cwd=str(folder), progress_bar=False,
            request_save_on_cell_execute=False, execution_timeout=int(timeout),
        )
    except PapermillExecutionError as exc:
        first = (exc.source or "").strip().splitlines()
        where = f"cell {exc.cell_index}" + (f" ({first[0][:60]!r})" if first else "")
        raise ReportError(f"the report notebook failed in {where}: {exc.ename}: {exc.evalue} "
                          f"— the partly executed notebook is {executed}") from None
    _export_html(executed, executed.with_suffix(".html"))
    return executed


# -- command line -------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """``sensorlib report``: run the report notebook for a period (cron-friendly)."""
    try:
        executed = run_report(args.start, args.end, args.out, args.sensor or None, settings,
                              timeout=args.timeout)
    except KafkaUnavailable as exc:
        raise ReportError(f"no report: {exc}") from None
    print(f"report: {executed.with_suffix('.html')} (notebook {executed})")
    return 0
