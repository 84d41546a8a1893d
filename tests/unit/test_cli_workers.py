"""``sensorlib processor --workers N`` takes 1 to 64 workers and names the limit otherwise."""

from __future__ import annotations

import pytest

from sensorlib.cli import MAX_WORKERS, build_parser


@pytest.mark.parametrize("value", ["0", "-1", str(MAX_WORKERS + 1), "10**9", "two", ""])
def test_a_worker_count_out_of_range_is_refused(value: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["processor", "--workers", value])
    assert exit_.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_worker_counts_in_range_are_taken() -> None:
    for value in (1, 2, MAX_WORKERS):
        args = build_parser().parse_args(["processor", "--workers", str(value)])
        assert args.workers == value


def test_archive_takes_workers_but_not_with_until_caught_up(tmp_path) -> None:
    from sensorlib.config import Settings
    from sensorlib.errors import UsageError

    assert build_parser().parse_args(["archive", "--workers", "3"]).workers == 3
    args = build_parser().parse_args(["archive", "--workers", "2", "--until-caught-up"])
    with pytest.raises(UsageError, match="--workers"):
        args.handler(args, Settings.from_env().replace(warehouse_dir=tmp_path))
