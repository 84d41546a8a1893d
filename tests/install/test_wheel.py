"""``pip install .`` into a clean virtual environment outside the checkout: the command, the
report and ``sensorlib up`` work from the installed package alone (issue 26 item 4).

The checkout is copied to a temporary folder (symbolic links kept: the package links its
report notebook and dashboard script to ``notebooks/`` and ``dashboards/``), installed
from there with ``constraints.txt`` into a venv without system site-packages, and the copy
is deleted before anything runs: whatever the installed ``sensorlib`` needs must be in the
wheel. Every command runs from an empty folder, without ``PYTHONPATH``, so the checkout's
``sensorlib`` cannot be what answers. The dependencies are installed from a wheelhouse in
``SENSORLIB_CACHE`` (``--no-index``), which the first run fills from PyPI.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sensorlib.config import Settings
from sensorlib.kafka.ports import free_port
from tests.install import unreachable
from tests.notebooks.conftest import seed_history
from tests.support import wait_for_up, wait_http

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
#: What the package build needs from a checkout (the rest: tests, docs, benchmarks, caches).
SKIP = shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "*.egg-info", "tests",
                              "docs", "benchmarks", "reports", "artifacts", ".*_cache",
                              ".hypothesis", ".ipynb_checkpoints", "node_modules")


@dataclass(frozen=True)
class Installed:
    """A venv holding sensorlib installed from a wheel, and a clean place to run it."""

    venv: Path
    cwd: Path
    home: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a command: no PYTHONPATH, no SENSORLIB_*/KAFKA_* of the
        test run, Jupyter's folders private (no kernel of another Python is found)."""
        env = {k: v for k, v in os.environ.items()
               if k != "PYTHONPATH" and not k.startswith(("SENSORLIB_", "KAFKA_", "JUPYTER"))}
        env.update(PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                   VIRTUAL_ENV=str(self.venv), JUPYTER_DATA_DIR=str(self.home / "jupyter"),
                   JUPYTER_CONFIG_DIR=str(self.home / "jupyter-config"), PYTHONUNBUFFERED="1")
        env.update(extra)
        return env

    def run(self, *argv: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.bin("sensorlib"), *argv], cwd=self.cwd, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    assert REPO not in root.parents
    source, venv = root / "src", root / "venv"
    shutil.copytree(REPO, source, symlinks=True, ignore=SKIP)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    # The test's own pip installs into the new venv (--python): no pip inside it needed, and
    # no package of this environment visible there (not --system-site-packages). The
    # dependencies come from a wheelhouse in SENSORLIB_CACHE, filled from PyPI on the first
    # run (250 MB: minutes) and again whenever constraints.txt names a wheel it lacks.
    wheels = Settings.from_env().cache_dir / "wheels"
    # --no-compile: no .pyc for 170 packages up front (half the install's time); Python
    # compiles what it imports.
    install = ("install", "--no-compile", "--no-index", "--find-links", str(wheels), "-c",
               str(source / "constraints.txt"), str(source))
    done = _pip(*install, python=venv)
    if done.returncode != 0:
        fetched = _pip("download", "--dest", str(wheels), "-c", str(source / "constraints.txt"),
                       str(source), "setuptools>=68")
        if fetched.returncode != 0 and (why := unreachable(fetched)):
            pytest.skip(f"PyPI is not reachable, so the dependencies cannot be fetched: {why}")
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        for built in wheels.glob("sensorlib-*"):  # the project itself is built each run
            built.unlink()
        done = _pip(*install, python=venv)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(source)  # nothing may refer back to the sources it was built from
    cwd, home = root / "elsewhere", root / "home"
    cwd.mkdir()
    home.mkdir()
    yield Installed(venv, cwd, home)


def test_the_package_is_the_installed_one_with_its_files(installed: Installed) -> None:
    code = ("import sensorlib, sensorlib.dashboard as d\n"
            "from sensorlib.notebook.runner import report_notebook\n"
            "from sensorlib.services.supervise import service_plan\n"
            "from sensorlib.config import Settings\n"
            "s = Settings.from_env()\n"
            "argv = next(x.argv for x in service_plan(s) if x.name == 'dashboard')\n"
            "print(sensorlib.__file__)\n"
            "print(report_notebook(s))\n"
            "print(argv[argv.index('-m') + 2])\n"
            "print(argv[argv.index('--setup') + 1])\n")
    done = subprocess.run([installed.bin("python"), "-c", code], cwd=installed.cwd,
                          env=installed.env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    package, notebook, app, setup = map(Path, done.stdout.split())
    site = installed.venv / "lib"
    for path in (package, notebook, app, setup):
        assert site in path.parents, path  # the installed package, not the checkout
        # Files with content, not links back into a checkout (a wheel holds no links).
        assert path.is_file() and not path.is_symlink(), path
    assert notebook.name == "04_report.ipynb" and '"parameters"' in notebook.read_text()
    assert app.name == "live.py" and "build_app().servable()" in app.read_text()


def test_the_command_runs(installed: Installed) -> None:
    version = installed.run("--version")
    assert version.returncode == 0, version.stderr
    # The version of the installed metadata: pyproject.toml's.
    with open(REPO / "pyproject.toml", "rb") as f:
        assert version.stdout.strip() == tomllib.load(f)["project"]["version"]
    help_text = installed.run("report", "--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "--out" in help_text.stdout


@pytest.mark.kafka
def test_a_report_from_the_installed_package(installed: Installed, topics: Settings) -> None:
    seed_history(topics, minutes=10)
    out = installed.cwd / "reports"
    done = installed.run("report", "--start", "1h ago", "--end", "now", "--out", str(out),
                         timeout=300, **_kafka_env(topics))
    assert done.returncode == 0, done.stdout + done.stderr
    pages = sorted(out.glob("report_*.html"))
    assert len(pages) == 1 and (out / "index.html").is_file()
    assert "Summary per sensor" in pages[0].read_text(encoding="utf-8")
    assert sorted(p.suffix for p in out.glob("report_*_alerts.*")) == [".csv", ".parquet"]
    # Nothing landed in the package or the current folder but the reports asked for.
    assert sorted(p.name for p in installed.cwd.iterdir()) == ["reports"]


@pytest.mark.kafka
def test_up_serves_the_dashboard_from_the_installed_package(installed: Installed,
                                                            topics: Settings) -> None:
    ports = {name: str(free_port()) for name in (
        "SENSORLIB_PRODUCER_PORT", "SENSORLIB_PROCESSOR_PORT", "SENSORLIB_ARCHIVER_PORT",
        "SENSORLIB_DASHBOARD_PORT")}
    log = installed.home / "up.log"
    env = installed.env(**{**_kafka_env(topics), **ports, "SENSORLIB_INTERVAL": "1",
                           "SENSORLIB_DATA": str(installed.home / "data")})
    with open(log, "wb") as sink:
        proc = subprocess.Popen([installed.bin("sensorlib"), "up"], cwd=installed.cwd, env=env,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_up(proc, log, timeout=150)
        base = f"http://127.0.0.1:{ports['SENSORLIB_DASHBOARD_PORT']}"
        page = wait_http(base + "/live", timeout=60)
        assert "<html" in page.text.lower()
        wait_http(f"http://127.0.0.1:{ports['SENSORLIB_PRODUCER_PORT']}/health")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait(timeout=10)
    assert code == 0, log.read_text()


def _kafka_env(settings: Settings) -> dict[str, str]:
    """The private broker and topics of the test, as the child's environment."""
    return {**settings.to_env(), "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}


def _pip(*args: str, python: Path | None = None) -> subprocess.CompletedProcess:
    """This environment's pip, installing into ``python``'s venv when given."""
    target = ["--python", str(python / "bin" / "python")] if python else []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "pip", *target, *args, "--quiet",
                           "--disable-pip-version-check"], env=env, capture_output=True,
                          text=True, timeout=1200, check=False)

