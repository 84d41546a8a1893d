"""``sensorlib replay`` over an empty period: exit 4 (nothing in the period), no file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorlib.cli import build_parser
from sensorlib.config import Settings
from sensorlib.errors import EXIT_CODES, EmptyReport

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("kind", ["readings", "alerts"])
def test_an_empty_period_exits_4_and_writes_nothing(topics: Settings, tmp_path: Path,
                                                    kind: str) -> None:
    out = tmp_path / "empty.csv"
    argv = ["replay", "--start", "2h ago", "--end", "1h ago", "--source", "kafka",
            "--out", str(out)] + (["--alerts"] if kind == "alerts" else [])
    args = build_parser().parse_args(argv)
    with pytest.raises(EmptyReport, match=f"no {kind} between") as caught:
        args.handler(args, topics)
    assert caught.value.exit_code == 4 and "nothing in the period" in EXIT_CODES[4]
    assert not out.exists() and list(tmp_path.iterdir()) == []
