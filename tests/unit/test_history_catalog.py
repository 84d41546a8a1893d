"""Reading history of a topic that was never archived costs no pyiceberg import.

``read_readings`` asks the archive first; when the sqlite catalog does not list the topic's
table, :func:`sensorlib.history.query.load_table` answers from sqlite alone (pyiceberg's import
took about half a second, a fifth of a 300k-record replay).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sensorlib.config import Settings
from sensorlib.history.query import READINGS, load_table, open_table


def test_an_unarchived_topic_is_answered_without_importing_pyiceberg(tmp_path: Path) -> None:
    settings = Settings.from_env().replace(warehouse_dir=tmp_path)
    open_table(settings, READINGS)  # a catalog that lists sensor_readings only
    assert load_table(settings, READINGS) is not None
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sensorlib.config import Settings\n"
        "from sensorlib.history.query import READINGS, load_table\n"
        f"s = Settings.from_env().replace(warehouse_dir=Path({str(tmp_path)!r}),"
        " topic_readings='never-archived')\n"
        "assert load_table(s, READINGS) is None\n"
        "print('pyiceberg' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
