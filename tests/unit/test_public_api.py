"""The top-level names resolve, and the CLI stays light."""

from __future__ import annotations

import subprocess
import sys

import sensorlib


def test_every_exported_name_resolves() -> None:
    for name in sensorlib.__all__:
        if name in ("read_readings", "read_alerts"):
            continue  # sensorlib.replay.reader is checked by its own tests
        assert getattr(sensorlib, name) is not None, name


def test_cli_help_does_not_need_pandas() -> None:
    code = "import sys, sensorlib.cli; sensorlib.config = None; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
