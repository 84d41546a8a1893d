"""One version (issue 24, item 9): pyproject.toml sets it, the package metadata carries it, and
`sensorlib --version` and every HTTP API's OpenAPI document say the same."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import sensorlib
from sensorlib.config import Settings

ROOT = Path(__file__).resolve().parents[2]
METADATA = version("sensorlib")
# Nothing here talks to Kafka: the apps are built, never started (no lifespan).
SETTINGS = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})


def test_the_metadata_is_pyprojects_version() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert METADATA == declared, (
        f"the installed metadata says {METADATA}, pyproject.toml {declared}: "
        "reinstall (`make setup`) after changing the version")
    assert sensorlib.__version__ == METADATA


def test_cli_version_is_the_metadata() -> None:
    script = Path(sys.executable).with_name("sensorlib")
    command = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from sensorlib.cli import main; sys.exit(main())"]
    result = subprocess.run([*command, "--version"], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == METADATA


def _openapi_version(app) -> str:  # type: ignore[no-untyped-def]
    answer = TestClient(app, base_url="http://127.0.0.1").get("/openapi.json")
    assert answer.status_code == 200
    return answer.json()["info"]["version"]


def test_producer_api_version_is_the_metadata() -> None:
    from sensorlib.services.producer import create_app

    assert _openapi_version(create_app(SETTINGS, simulate=False)) == METADATA


def test_processor_api_version_is_the_metadata() -> None:
    from sensorlib.services.processor import create_app

    assert _openapi_version(create_app(SETTINGS)) == METADATA


def test_processor_front_api_version_is_the_metadata() -> None:
    from sensorlib.services.workers import Workers, create_front_app

    assert _openapi_version(create_front_app(SETTINGS, Workers(SETTINGS, 2))) == METADATA


@pytest.mark.parametrize("folder", ["sensorlib"])
def test_no_version_literal_left_in_the_code(folder: str) -> None:
    """A FastAPI(version="…") or __version__ = "…" literal would drift from the metadata."""
    import re

    pattern = re.compile(r"""(version=|__version__\s*=\s*)["']\d+\.\d+""")
    found = [f"{path.relative_to(ROOT)}:{n}" for path in (ROOT / folder).rglob("*.py")
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line)]
    assert not found, found
