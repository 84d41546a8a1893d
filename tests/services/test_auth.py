"""Who may write (issue 23 item 7): the bearer token of the APIs and ``sensorlib up``'s refusal.

Real service processes on real sockets. "Beyond loopback" is tested by binding 0.0.0.0
and connecting through 127.0.0.1: no traffic ever leaves the machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest

from sensorlib.config import Settings, is_loopback
from tests.support import service_env

from .test_producer_api import REFERENCE_PAYLOAD

pytestmark = pytest.mark.kafka

TOKEN = "t0ken-Of-The-Test-Suite-0123456789"


def _reading() -> dict[str, object]:
    return {**REFERENCE_PAYLOAD, "timestamp": datetime.now(UTC).isoformat()}


def _assert_401(answer: httpx.Response, *, invalid: bool) -> None:
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) is invalid
    body = answer.json()
    assert body["error"] == "unauthorized"
    assert body["detail"][0]["field"] == "Authorization"
    assert TOKEN not in answer.text


@pytest.fixture(scope="module")
def guarded(spawn_module, module_topics: Settings):
    """A producer on loopback with a token set: writes need it there too."""
    return spawn_module("producer", module_topics.replace(api_token=TOKEN), "--no-simulate")


def test_with_a_token_every_write_needs_it_even_on_loopback(guarded) -> None:
    url = guarded.url
    _assert_401(httpx.post(url + "/api/events", json=_reading()), invalid=False)
    _assert_401(httpx.post(url + "/api/events", json=_reading(),
                           headers={"Authorization": "Bearer wrong"}), invalid=True)
    _assert_401(httpx.post(url + "/api/events", json=_reading(),
                           headers={"Authorization": f"Basic {TOKEN}"}), invalid=True)
    _assert_401(httpx.post(url + "/api/events/batch", json=[_reading()]), invalid=False)
    _assert_401(httpx.delete(url + "/api/events"), invalid=False)
    _assert_401(httpx.put(url + "/api/sensors", json={}), invalid=False)
    ok = httpx.post(url + "/api/events", json=_reading(),
                    headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 201, ok.text
    batch = httpx.post(url + "/api/events/batch", json=[_reading(), _reading()],
                       headers={"Authorization": f"bearer {TOKEN}"})
    assert batch.status_code == 201, batch.text
    # Reads stay open.
    assert httpx.get(url + "/api/sensors").status_code == 200
    assert httpx.get(url + "/health").status_code == 200
    assert httpx.get(url + "/metrics").status_code == 200


def test_the_token_is_never_logged_or_shown(guarded, module_topics: Settings) -> None:
    httpx.post(guarded.url + "/api/events", json=_reading(), headers={"Authorization": "Bearer x"})
    settings = module_topics.replace(api_token=TOKEN)
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.describe())
    assert TOKEN not in guarded.log_text()
    assert TOKEN not in httpx.get(guarded.url + "/health").text
    assert TOKEN not in httpx.get(guarded.url + "/metrics").text


def test_bound_beyond_loopback_without_a_token_writes_are_refused(spawn, topics: Settings) -> None:
    service = spawn("producer", topics, "--no-simulate", "--host", "0.0.0.0")
    answer = httpx.post(service.url + "/api/events", json=_reading())
    _assert_401(answer, invalid=True)
    reason = answer.json()["detail"][0]["reason"]
    assert "SENSORLIB_API_TOKEN" in reason and "0.0.0.0" in reason
    assert httpx.get(service.url + "/api/sensors").status_code == 200
    assert "bound beyond loopback" in service.log_text()


def test_bound_beyond_loopback_with_a_token_writes_need_it(spawn, topics: Settings) -> None:
    service = spawn("producer", topics.replace(api_token=TOKEN), "--no-simulate",
                    "--host", "0.0.0.0")
    _assert_401(httpx.post(service.url + "/api/events", json=_reading()), invalid=False)
    ok = httpx.post(service.url + "/api/events", json=_reading(),
                    headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 201, ok.text


def test_insecure_beyond_loopback_accepts_writes_as_asked(spawn, topics: Settings) -> None:
    service = spawn("producer", topics.replace(insecure=True), "--no-simulate",
                    "--host", "0.0.0.0")
    assert httpx.post(service.url + "/api/events", json=_reading()).status_code == 201
    assert "open to anyone" in service.log_text()


def test_loopback_without_a_token_is_unchanged(spawn, topics: Settings) -> None:
    service = spawn("producer", topics, "--no-simulate")
    assert httpx.post(service.url + "/api/events", json=_reading()).status_code == 201


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST.", True), ("0.0.0.0", False), ("::", False),
    ("", False), ("192.168.1.10", False), ("example.org", False)])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_up_refuses_a_host_beyond_loopback_without_a_token(settings: Settings, tmp_path) -> None:
    env = service_env(settings, SENSORLIB_HOST="0.0.0.0")
    env.pop("SENSORLIB_API_TOKEN", None)
    env.pop("SENSORLIB_INSECURE", None)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "sensorlib.cli", "up"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "SENSORLIB_API_TOKEN" in said and "--insecure" in said and "0.0.0.0" in said
    assert "sensorlib is up" not in said
    assert time.monotonic() - started < 30  # refused before starting anything
