"""A week of history with a hostile sensor: every notebook and the report, in Chromium.

One module-scoped back-fill (a week of the fleet at one reading per 20 s per sensor, its
alerts, dead letters, plus a sensor whose id and location are HTML/JS) on private topics;
then the report (``sensorlib report`` as a subprocess, like cron runs it) and every
notebook (papermill), exported to HTML. The tests check what an analyst and an attacker
would: the files stay under 3 MB, nothing from Kafka runs as script in Chromium (and it
shows as text), the live tail states its cap, and the report's exit codes and stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# notebooks/tools is on sys.path: see conftest.py.
from backfill import HOSTILE_ID, HOSTILE_LOCATION, backfill
from screenshots import execute, to_html

from sensorlib.config import Settings
from tests.conftest import private_settings

from .conftest import REPO, subprocess_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

LIMIT = 3_000_000  # bytes: a rendered week must stay mailable
SENSORLIB = str(Path(sys.executable).parent / "sensorlib")
PARAMETERS = {
    "01_live_tail.ipynb": {"max_records": 20_000, "live_chart": False},  # an exported page
    "02_replay_analysis.ipynb": {"start": "-7d"},
    "03_tune_rules.ipynb": {"start": "-1d"},
    "06_dead_letters.ipynb": {"start": "-7d"},
}


@dataclass
class Week:
    settings: Settings
    env: dict[str, str]
    pages: dict[str, Path]  # name -> HTML
    notebooks: dict[str, Path]  # name -> executed .ipynb
    report_run: subprocess.CompletedProcess[str]
    out: Path


def report(env: dict[str, str], out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SENSORLIB, "report", "--out", str(out), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def week(base_settings: Settings, kafka_cluster: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Week]:
    settings = private_settings(base_settings, kafka_cluster)
    backfill(settings, days=7, interval=20, hostile=True, dead_letters=35)
    env = subprocess_env(settings)
    out = tmp_path_factory.mktemp("week")
    run = report(env, out / "reports", "--start=-7d", "--end", "now")
    pages, notebooks = {}, {}
    if run.returncode == 0:
        pages["report"] = next((out / "reports").glob("report_*.html"))
        notebooks["report"] = pages["report"].with_suffix(".ipynb")
    saved = dict(os.environ)
    os.environ.update(env)  # the kernels papermill starts inherit the private topics
    try:
        for name, parameters in PARAMETERS.items():
            notebooks[name] = execute(name, parameters, out)
            pages[name] = to_html(notebooks[name])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield Week(settings, env, pages, notebooks, run, out)


def test_the_report_runs_like_cron_runs_it_with_a_clean_stderr(week: Week) -> None:
    run = week.report_run
    assert run.returncode == 0, run.stderr
    assert "without encryption" not in run.stderr  # the kernel talks over local sockets
    assert run.stderr.strip() == "", run.stderr
    folder = week.pages["report"].parent
    names = sorted(p.name for p in folder.iterdir())
    stem = week.pages["report"].stem
    assert names == sorted(["index.html", f"{stem}.html", f"{stem}.ipynb",
                            f"{stem}_alerts.csv", f"{stem}_alerts.parquet"])
    assert f'href="{stem}.html"' in (folder / "index.html").read_text()


def test_a_rendered_week_stays_under_3_mb(week: Week) -> None:
    sizes = {name: (page.stat().st_size, week.notebooks[name].stat().st_size)
             for name, page in week.pages.items()}
    assert set(sizes) == {"report", *PARAMETERS}
    for name, (html, ipynb) in sizes.items():
        assert html < LIMIT, (name, html)
        assert ipynb < LIMIT, (name, ipynb)


def test_nothing_from_kafka_runs_in_chromium_and_it_shows_as_text(week: Week, browser) -> None:
    fired: list[str] = []
    for name, path in week.pages.items():
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda d, n=name: (fired.append(f"{n}: {d.message}"), d.dismiss()))
        page.goto(path.as_uri())
        page.wait_for_function("() => window.Bokeh !== undefined", timeout=30_000)
        # Pick the hostile sensor in every sensor selector (titles and legends change).
        for select in page.query_selector_all("select"):
            options = select.eval_on_selector_all("option", "os => os.map(o => o.value)")
            if HOSTILE_ID in options:
                select.select_option(HOSTILE_ID)
        page.wait_for_timeout(300)
        text = page.inner_text("body")
        if name in ("report", "02_replay_analysis.ipynb"):
            assert HOSTILE_ID in text, name
        if name == "report":
            assert HOSTILE_LOCATION in text
        if name == "06_dead_letters.ipynb":
            assert "<img src=x onerror=alert(3)>" in text
        assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0, name
        page.close()
    assert fired == []


def test_the_live_tail_says_when_it_hit_its_cap(week: Week) -> None:
    text = week.pages["01_live_tail.ipynb"].read_text(encoding="utf-8")
    assert "capped</b>: the last 20,000 of the" in text
    assert "records that had arrived since then were read" in text


def test_tables_show_rounded_numbers(week: Week) -> None:
    import re

    text = week.pages["report"].read_text(encoding="utf-8")
    table = text[text.index("Summary per sensor"):text.index("Temperature, humidity and alerts")]
    numbers = re.findall(r">(-?[\d,]+\.\d+)<", table)
    assert numbers and all(len(n.split(".")[1]) == 1 for n in numbers), numbers[:10]
    assert re.search(r">\d{1,3},\d{3}<", table)  # reading counts with thousands separators


def test_an_unknown_sensor_fails_clearly_and_writes_nothing(week: Week, tmp_path: Path) -> None:
    run = report(week.env, tmp_path, "--start=-7d", "--end", "now", "--sensor", "sensor-99")
    assert run.returncode != 0
    assert "no readings from 'sensor-99'" in run.stderr and "sensor-01" in run.stderr
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.glob("report_*"))


def test_an_empty_period_fails_clearly_and_writes_nothing(week: Week, tmp_path: Path) -> None:
    run = report(week.env, tmp_path, "--start", "2020-01-01", "--end", "2020-01-02")
    assert run.returncode != 0
    assert "no readings on" in run.stderr and "2020-01-01 00:00" in run.stderr
    assert not list(tmp_path.glob("report_*"))
