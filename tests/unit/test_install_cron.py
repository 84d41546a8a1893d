"""The documented cron line works on a fresh checkout (issue 24, item 2): run as cron would,
by /bin/sh in a folder with no reports/ yet, it must reach sensorlib and leave its log in
reports/cron.log. Kafka is really down here (nothing listens on the port), so the report
fails fast; what matters is that the failure is logged instead of the shell refusing to open
the log."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent


def _cron_line() -> str:
    text = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```cron\n(.*?)```", text, re.DOTALL)
    assert block, "notebooks/README.md has no ```cron block"
    lines = [line for line in block.group(1).splitlines() if re.match(r"^[\d*]", line)]
    assert len(lines) == 1, lines
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (VENV / "bin" / "sensorlib").exists(), reason="needs an installed venv")
def test_the_documented_cron_line_logs_on_a_fresh_checkout(tmp_path: Path) -> None:
    line = _cron_line()
    command = line.split(None, 5)[5]  # after minute, hour, day, month, weekday
    assert command.startswith("cd /opt/sensorlib && ")
    checkout = tmp_path / "sensorlib"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(VENV)
    command = command.replace("cd /opt/sensorlib", f"cd {checkout}", 1)

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),  # cron's bare environment
           "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_free_port()}"}
    result = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True,
                            text=True, check=False, timeout=120)

    assert "cron.log" not in result.stderr, result.stderr  # the shell could open the log
    log = checkout / "reports" / "cron.log"
    assert log.exists()
    assert result.returncode != 0  # no Kafka: the report fails, and says why in the log
    assert "Kafka" in log.read_text(), log.read_text()
