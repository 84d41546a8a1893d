"""Running the report notebook: papermill for a period, the HTML export, the reports folder.

:func:`run_report` executes the report notebook (``04_report.ipynb``, shipped inside the
package: :func:`report_notebook`) with papermill for a period and writes the executed
notebook, an HTML export and the period's full alert list (Parquet, CSV) next to each
other, named by the period, and an ``index.html`` of the folder.
``sensorlib report --start yesterday --end today --out reports/`` does the same from cron
or a systemd timer. The tables the notebook shows are :mod:`sensorlib.notebook.report`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from sensorlib.config import Settings
from sensorlib.errors import EmptyReport, KafkaUnavailable, ReportError
from sensorlib.notebook.report import describe_period, html_text
from sensorlib.replay.periods import TimeLike, resolve_period

__all__ = [
    "OFFLINE_TEMPLATE",
    "REPORT_NOTEBOOK",
    "prune_reports",
    "report_notebook",
    "run_report",
    "write_index",
]

#: The report notebook's file name (``notebooks/04_report.ipynb`` in a checkout).
REPORT_NOTEBOOK = "04_report.ipynb"
_KERNEL = "python3"


def report_notebook(settings: Settings | None = None) -> Path:
    """The report notebook ``sensorlib report`` runs.

    The one in ``settings.notebooks_dir`` (``SENSORLIB_NOTEBOOKS``) when set, for a report
    of your own; else the one shipped in the package (in a checkout a link to
    ``notebooks/04_report.ipynb``, whose content setuptools puts into the wheel).

    Raises:
        ReportError: ``SENSORLIB_NOTEBOOKS`` names a folder without ``04_report.ipynb``, or
            the package was installed without its notebook.
    """
    settings = Settings.from_env() if settings is None else settings
    if settings.notebooks_dir is not None:
        path = settings.notebooks_dir / REPORT_NOTEBOOK
        if not path.is_file():
            raise ReportError(f"{REPORT_NOTEBOOK} not found in SENSORLIB_NOTEBOOKS="
                              f"{settings.notebooks_dir}; unset it to run the report shipped "
                              "with sensorlib")
        return path
    path = Path(__file__).resolve().parent / REPORT_NOTEBOOK
    if not path.is_file():
        raise ReportError(f"{REPORT_NOTEBOOK} is missing from the installed package "
                          f"({path.parent}); reinstall sensorlib, or set SENSORLIB_NOTEBOOKS "
                          "to a folder holding it")
    return path


def _kernel_name() -> str:
    """A kernelspec that runs this interpreter, installed into sys.prefix when missing."""
    from jupyter_client.kernelspec import KernelSpecManager

    if _KERNEL not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix",
                        "--name", _KERNEL], check=True, capture_output=True)
    return _KERNEL


def _kernel_config(sockets: Path) -> Any:
    """Kernel over Unix sockets in a private folder: no TCP port, no plain-text warning.

    Over TCP, ipykernel warns on every start that it runs "over TCP without encryption",
    which would land in every cron log; the report's kernel only ever talks to this
    process, so local sockets (mode 700 folder) are the right transport anyway.
    """
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = str(sockets / "kernel")
    # jupyter_client interrupts a kernel before shutting it down; when that lands while the
    # kernel handles a message, it logs "KeyboardInterrupt caught in kernel" to stderr
    # (the cron log) although the report succeeded. Drop that one record, nothing else.
    quiet = ("__import__('ipykernel.kernelapp').kernelapp.IPKernelApp.instance().log.addFilter("
             "lambda r: 'KeyboardInterrupt caught' not in r.getMessage())")
    config.NotebookClient.extra_arguments = [f"--IPKernelApp.exec_lines={quiet}"]
    return config


def _stamp(t: pd.Timestamp | None) -> str:
    return "beginning" if t is None else t.strftime("%Y%m%dT%H%M%SZ")


#: nbconvert's lab template without what it loads from a CDN (require.js, MathJax,
#: Mermaid, the widget manager): a report opens offline. Its figures need none of them
#: (BokehJS is embedded inline by ``plots.load()``; tables are plain HTML).
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""


def _export_html(notebook: Path, html_path: Path, title: str) -> None:
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True,
                            extra_loaders=[DictLoader({"sensorlib_offline.html.j2":
                                                       OFFLINE_TEMPLATE})],
                            template_file="sensorlib_offline.html.j2")
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata["title"] = title
    for cell in nb.cells:  # outputs with nothing to show (e.g. JS-only loaders) are noise
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if o.get("output_type") != "display_data" or o.get("data")]
    body, _ = exporter.from_notebook_node(nb)
    html_path.write_text(body, encoding="utf-8")


#: The files of one report, by suffix after its name.
_REPORT_FILES = (".ipynb", ".html", "_alerts.parquet", "_alerts.csv")


def _reports(out: Path) -> list[str]:
    """Names (``report_<start>_<end>``) of the reports in ``out``, oldest period first."""
    return sorted(p.name[: -len(".html")] for p in out.glob("report_*.html")
                  if not p.name.endswith("_alerts.html"))


def prune_reports(out_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest reports (by period) in ``out_dir``; returns what went.

    Only files named like a report (``report_*.ipynb/.html/_alerts.parquet/_alerts.csv``)
    are touched; ``index.html`` and anything else in the folder stay.
    """
    if keep < 1:
        raise ReportError(f"--keep must be at least 1 (got {keep})")
    out = Path(out_dir)
    removed = []
    for name in _reports(out)[:-keep]:
        for suffix in _REPORT_FILES:
            path = out / f"{name}{suffix}"
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
    return removed


def _period_of(name: str) -> str:
    try:
        _, a, b = name.split("_", 2)
        t0 = "the beginning" if a == "beginning" else pd.Timestamp(a)
        t1 = pd.Timestamp(b)
    except ValueError:
        return name
    return describe_period(None if isinstance(t0, str) else t0, t1)


def write_index(out_dir: str | Path) -> Path:
    """``index.html`` in ``out_dir``: every report there, newest period first, with its files."""
    out = Path(out_dir)
    rows = []
    for name in reversed(_reports(out)):
        links = [f'<a href="{html_text(name)}.html">report</a>']
        for suffix, label in (("_alerts.csv", "alerts CSV"), ("_alerts.parquet", "alerts Parquet"),
                              (".ipynb", "notebook")):
            if (out / f"{name}{suffix}").is_file():
                links.append(f'<a href="{html_text(name + suffix)}">{label}</a>')
        size = (out / f"{name}.html").stat().st_size
        rows.append(f"<tr><td>{html_text(_period_of(name))}</td><td>{' · '.join(links)}</td>"
                    f"<td style='text-align:right'>{size / 1e6:,.1f} MB</td></tr>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sensorlib reports</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse}}td,th{{padding:4px 12px;border-bottom:1px solid #ddd;
text-align:left}}</style></head><body>
<h1>sensorlib reports</h1>
<p>{len(rows)} report{"s" if len(rows) != 1 else ""}, newest period first.
Written by <code>sensorlib report</code> on {pd.Timestamp.now(tz="UTC"):%Y-%m-%d %H:%M} UTC.</p>
<table><thead><tr><th>period</th><th>files</th><th>size</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def run_report(
    start: TimeLike,
    end: TimeLike,
    out_dir: str | Path = "reports/",
    sensors: Iterable[str] | None = None,
    settings: Settings | None = None,
    *,
    timeout: float = 600.0,
    keep: int | None = None,
) -> Path:
    """Execute the report notebook for ``start <= t < end``; returns the executed .ipynb.

    Writes ``report_<start>_<end>.ipynb`` and ``.html`` into ``out_dir``, the period's
    full alert list beside them (``…_alerts.parquet`` / ``.csv``), and refreshes
    ``index.html``; with ``keep`` only the ``keep`` newest reports stay. The notebook gets
    the bootstrap servers and topic names as papermill parameters (credentials stay in the
    environment, which the kernel inherits, so they never land in a file).

    Raises:
        ReplayError: a malformed or empty period (end not after start).
        EmptyReport: no readings in the period, or none from a sensor asked for (nothing
            is written).
        KafkaUnavailable: Kafka does not answer (checked before starting a kernel).
        ReportError: the notebook failed; the message names the cell and the error.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from sensorlib.kafka.admin import kafka_reachable, wait_for_kafka

    if keep is not None and keep < 1:
        raise ReportError(f"--keep must be at least 1 (got {keep})")
    settings = Settings.from_env() if settings is None else settings
    t0, t1 = resolve_period(start, end)
    if t1 is None:
        t1 = pd.Timestamp.now(tz="UTC")
    if not kafka_reachable(settings):  # fail at once, before a kernel starts
        raise KafkaUnavailable(settings.bootstrap_servers, "nothing listens there")
    wait_for_kafka(settings, timeout=10)
    notebook = report_notebook(settings)
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
        "alerts_file": str((out / f"{name}_alerts").resolve()),
    }
    # The kernel runs in the folder of a report of your own (its relative paths), else in the
    # output folder: never inside the package, whose modules (report, plots, …) would then
    # shadow top-level imports of the same names.
    cwd = notebook.parent if settings.notebooks_dir is not None else out.resolve()
    sockets = Path(tempfile.mkdtemp(prefix="sensorlib-kernel-"))
    try:
        papermill.execute_notebook(
            str(notebook), str(executed), parameters=parameters,
            kernel_name=_kernel_name(), cwd=str(cwd), progress_bar=False,
            request_save_on_cell_execute=False, execution_timeout=int(timeout),
            config=_kernel_config(sockets),
        )
    except PapermillExecutionError as exc:
        if exc.ename == EmptyReport.__name__:
            for suffix in _REPORT_FILES:
                (out / f"{name}{suffix}").unlink(missing_ok=True)
            raise EmptyReport(f"no report: {exc.evalue}") from None
        first = (exc.source or "").strip().splitlines()
        where = f"cell {exc.cell_index}" + (f" ({first[0][:60]!r})" if first else "")
        raise ReportError(f"the report notebook failed in {where}: {exc.ename}: {exc.evalue} "
                          f"— the partly executed notebook is {executed}") from None
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    _export_html(executed, executed.with_suffix(".html"),
                 f"Sensor report · {describe_period(t0, t1)}")
    if keep is not None:
        prune_reports(out, keep)
    write_index(out)
    return executed

