"""The Makefile's Python checks (issue 24, item 1): a Python older than requires-python is
refused with the fix, a missing one is named, and a .venv made by another Python (or whose
install never finished) is rebuilt for $(PYTHON). Real make, real interpreters, real venvs;
the full install on Debian's own Python is proven by .ci/run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"
DEBIAN_PYTHON = Path("/usr/bin/python3")
#: venvs without pip: the checks are the point here, not the install (seconds under load)
FAST = ("VENV_ARGS=--without-pip",)

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(["make", "--no-print-directory", "-f", str(MAKEFILE), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=300)


def test_this_python_passes_the_check() -> None:
    result = make("check-python", f"PYTHON={sys.executable}")
    assert result.returncode == 0, result.stderr
    assert "fine for sensorlib" in result.stdout


def test_a_too_old_python_is_refused_with_the_fix(tmp_path: Path) -> None:
    """A requires-python this interpreter does not meet: a clear message naming the
    requirement, the interpreter's version and how to pick another one."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nrequires-python = ">=3.99"\n')
    result = make("check-python", f"PYTHON={sys.executable}", cwd=tmp_path)
    assert result.returncode != 0
    version = ".".join(map(str, sys.version_info[:3]))
    assert "sensorlib needs Python >=3.99 (requires-python in pyproject.toml)" in result.stderr
    assert f"is Python {version}" in result.stderr
    assert "make PYTHON=/path/to/that/python3" in result.stderr


def test_an_upper_bound_is_checked_too(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('requires-python = ">=3.8, <3.9"\n')
    result = make("check-python", f"PYTHON={sys.executable}", cwd=tmp_path)
    assert result.returncode != 0 and "needs Python >=3.8, <3.9" in result.stderr


def test_a_missing_python_is_named(tmp_path: Path) -> None:
    result = make("test-fast", f"PYTHON={tmp_path}/no-such-python3", f"VENV={tmp_path}/venv")
    assert result.returncode != 0
    assert f"PYTHON={tmp_path}/no-such-python3 not found" in result.stderr
    assert not (tmp_path / "venv").exists()


def _base_python() -> Path:
    return Path(getattr(sys, "_base_executable", sys.executable)).resolve()


@pytest.mark.skipif(not DEBIAN_PYTHON.exists() or _base_python() == DEBIAN_PYTHON.resolve(),
                    reason="needs two different Pythons: /usr/bin/python3 and this one")
def test_a_venv_of_another_python_is_rebuilt(tmp_path: Path) -> None:
    venv = tmp_path / "venv"

    def python_of_venv() -> str:
        return subprocess.run([str(venv / "bin" / "python"), "-c", "import sys; print(sys.version)"],
                              capture_output=True, text=True, check=True).stdout

    made = make("venv", f"PYTHON={DEBIAN_PYTHON}", f"VENV={venv}", *FAST)
    assert made.returncode == 0, made.stderr
    debian = python_of_venv()
    (venv / ".installed").touch()  # as if its install had finished
    again = make("venv", f"PYTHON={DEBIAN_PYTHON}", f"VENV={venv}", *FAST)
    assert again.returncode == 0 and "rebuilding" not in again.stdout  # same Python: kept

    other = make("venv", f"PYTHON={_base_python()}", f"VENV={venv}", *FAST)
    assert other.returncode == 0, other.stderr
    assert f"rebuilding {venv}: it was made by Python" in other.stdout
    assert python_of_venv() == sys.version + "\n" != debian

    # Made by the right Python, but its install never finished (no stamp): rebuilt too.
    unfinished = make("venv", f"PYTHON={_base_python()}", f"VENV={venv}", *FAST)
    assert f"rebuilding {venv}: its last install did not finish" in unfinished.stdout
