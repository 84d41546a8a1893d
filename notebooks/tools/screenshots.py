"""Execute every notebook and the report over a week of history, render them, screenshot them.

``make screenshots`` runs this: it starts a private Apache Kafka on free ports (unless
``--bootstrap`` names one that already holds history), back-fills a week of the simulated
fleet ending now (:mod:`backfill`), runs ``sensorlib report`` for the week and executes
each notebook with papermill, exports every one to HTML, and screenshots each page at
1,280 px in headless Chromium. The report's first screen becomes
``notebooks/img/report.png``, the picture in the README; the rest goes to ``--out``
(default ``build/screenshots``), with a ``sizes.json`` of every file.

    .venv/bin/python notebooks/tools/screenshots.py                 # everything, ~5 minutes
    .venv/bin/python notebooks/tools/screenshots.py --bootstrap localhost:9092 --no-backfill
    .venv/bin/python notebooks/tools/screenshots.py --only 05_history_sql.ipynb --interval 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parent
REPO = NOTEBOOKS.parent
CHROMIUM = os.environ.get("SENSORLIB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: Parameters of each notebook for a week of history.
WEEK = {
    "02_replay_analysis.ipynb": {"start": "-7d"},
    "03_tune_rules.ipynb": {"start": "-1d"},
    "05_history_sql.ipynb": {"start": "-7d"},  # over the archive the tool fills too
    "06_dead_letters.ipynb": {"start": "-7d"},
    "07_backtest_rules.ipynb": {},  # in memory: its own simulated week
    "01_live_tail.ipynb": {"live_chart": False},  # last: by then the simulator has sent minutes
}


def execute(name: str, parameters: dict, out: Path, timeout: int = 900) -> Path:
    """Run one notebook with papermill into ``out`` (kernel over local sockets)."""
    import papermill

    from sensorlib.notebook.runner import _kernel_config, _kernel_name

    executed = out / name
    sockets = Path(tempfile.mkdtemp(prefix="sensorlib-kernel-"))
    try:
        papermill.execute_notebook(str(NOTEBOOKS / name), str(executed), parameters=parameters,
                                   kernel_name=_kernel_name(), cwd=str(NOTEBOOKS),
                                   progress_bar=False, execution_timeout=timeout,
                                   config=_kernel_config(sockets))
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    return executed


def to_html(notebook: Path) -> Path:
    """The notebook as one HTML page (code shown, as a reader of the notebook sees it)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    page = notebook.with_suffix(".html")
    page.write_text(body, encoding="utf-8")
    return page


def screenshot(pages: list[tuple[Path, Path]], *, first_screen: int = 0) -> list[str]:
    """Each (html, png) at 1,280 px wide, full page (or its first ``first_screen`` pixels);
    returns the messages of dialogs that fired (none should: nothing from Kafka is script)."""
    from playwright.sync_api import sync_playwright

    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for html, png in pages:
                page = browser.new_page(viewport={"width": 1280, "height": first_screen or 900})
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(html.resolve().as_uri())
                page.wait_for_load_state("load")
                # Bokeh figures draw on canvases once the embedded BokehJS has run.
                page.wait_for_function("() => !document.querySelector('.bk-root, "
                                       "[data-root-id]') || window.Bokeh !== undefined",
                                       timeout=30_000)
                page.wait_for_timeout(1500)
                page.screenshot(path=str(png), full_page=not first_screen)
                page.close()
        finally:
            browser.close()
    return dialogs


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="a broker to use instead of a private one")
    parser.add_argument("--no-backfill", action="store_true", help="use the history already there")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between two readings of a sensor in the back-fill")
    parser.add_argument("--only", action="append", choices=sorted(WEEK), metavar="NOTEBOOK",
                        help="just this notebook (repeatable); no report, no README image")
    parser.add_argument("--out", default=str(REPO / "build" / "screenshots"))
    parser.add_argument("--readme-image", default=str(NOTEBOOKS / "img" / "report.png"))
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from backfill import backfill

    from sensorlib.config import Settings
    from sensorlib.kafka.broker import LocalKafka
    from sensorlib.kafka.ports import free_port
    from sensorlib.notebook.runner import run_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kafka = None
    live: subprocess.Popen[bytes] | None = None
    settings = Settings.from_env()
    work = Path(tempfile.mkdtemp(prefix="sensorlib-screenshots-"))
    try:
        if args.bootstrap:
            settings = settings.replace(bootstrap_servers=args.bootstrap, external=True)
        else:
            kafka = LocalKafka(work / "kafka", ports=[free_port()], controller_ports=[free_port()],
                               settings=settings, heap="768m")
            kafka.start(timeout=180)
            # A private archive too: the user's (of another cluster, with the same topic
            # names) would be merged into this broker's history by read_readings.
            settings = settings.replace(bootstrap_servers=kafka.bootstrap_servers, external=True,
                                        warehouse_dir=work / "warehouse")
        os.environ.update(settings.to_env())
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
        t0 = time.monotonic()
        from sensorlib.kafka.admin import ensure_topics

        ensure_topics(settings)
        # The fleet in real time meanwhile, for the live tail.
        live = subprocess.Popen([str(Path(sys.executable).parent / "sensorlib"), "simulate",
                                 "--quiet", "--duration", "1800"], env=dict(os.environ),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not args.no_backfill:
            backfill(settings, days=args.days, interval=args.interval, dead_letters=60, say=True)
            if kafka is not None:  # the private archive: notebook 05 queries it
                from sensorlib.history.archiver import Archiver

                done = Archiver(settings).run(until_caught_up=True)
                print(f"archived {done}", file=sys.stderr)
        pages = []
        if not args.only:
            report = run_report(f"-{args.days:g}d", "now", out / "reports", settings=settings)
            pages.append((report.with_suffix(".html"), out / "report.png"))
        for name, parameters in WEEK.items():
            if args.only and name not in args.only:
                continue
            print(f"executing {name}", file=sys.stderr)
            page = to_html(execute(name, parameters, out))
            pages.append((page, out / f"{Path(name).stem}.png"))
        dialogs = screenshot(pages)
        readme = Path(args.readme_image)
        if not args.only:
            readme.parent.mkdir(parents=True, exist_ok=True)
            dialogs += screenshot([(pages[0][0], readme)], first_screen=1500)
        sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*"))
                 if p.is_file() and p.suffix in (".html", ".ipynb", ".png", ".csv", ".parquet")}
        (out / "sizes.json").write_text(json.dumps(sizes, indent=1), encoding="utf-8")
        for path, size in sizes.items():
            print(f"{size / 1e6:8.2f} MB  {path}")
        print(f"README image: {readme}; screenshots in {out} "
              f"({time.monotonic() - t0:.0f}s)")
        if dialogs:
            print(f"error: dialogs fired (script ran from data): {dialogs}", file=sys.stderr)
            return 1
        return 0
    finally:
        if live is not None:
            live.terminate()
            live.wait(timeout=30)
        if kafka is not None:
            kafka.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
