"""The dashboard asks for a login beyond loopback (issue 23 item 7) and loads nothing from
the internet (issue 24 item 14).

Real dashboard server processes. "Beyond loopback" is the server bound to 0.0.0.0 and
reached through 127.0.0.1; in the browser every request for another host is aborted and
counted, so nothing ever leaves the machine.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.dashboard import serve_command
from sensorlib.kafka.ports import free_port
from tests.offline import LOCAL_HOSTS, off_machine_urls

pytestmark = pytest.mark.kafka

TOKEN = "dashboard-Test-Token-0123456789abcdef"


class Served:
    def __init__(self, process: subprocess.Popen[bytes], base: str, log: Path) -> None:
        self.process, self.base, self.log = process, base, log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _start(settings: Settings, tmp_path: Path, host: str, **env: str) -> Served:
    port = free_port()
    settings = settings.replace(dashboard_port=port)
    full = {**os.environ, **settings.to_env(), "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "PYTHONUNBUFFERED": "1", **env}
    log = tmp_path / f"dashboard-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(serve_command(settings, host=host), env=full, stdout=out,
                                   stderr=subprocess.STDOUT)
    return Served(process, f"http://127.0.0.1:{port}", log)


def _wait_liveness(served: Served, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert served.process.poll() is None, served.log_text()
        try:
            if httpx.get(served.base + "/liveness", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"dashboard not live within {timeout}s:\n{served.log_text()}")


def _stop(served: Served) -> None:
    if served.process.poll() is None:
        served.process.terminate()
        try:
            served.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait(timeout=15)


@pytest.fixture
def open_dashboard(topics: Settings, tmp_path: Path) -> Iterator[Served]:
    """On loopback, no token: no login (as before)."""
    served = _start(topics, tmp_path, "127.0.0.1")
    try:
        _wait_liveness(served)
        yield served
    finally:
        _stop(served)


@pytest.fixture
def exposed_dashboard(topics: Settings, tmp_path: Path) -> Iterator[Served]:
    """Bound to 0.0.0.0 with a token: login required."""
    served = _start(topics, tmp_path, "0.0.0.0", SENSORLIB_API_TOKEN=TOKEN)
    try:
        _wait_liveness(served)
        yield served
    finally:
        _stop(served)


def test_beyond_loopback_the_dashboard_asks_for_a_login(exposed_dashboard: Served) -> None:
    base = exposed_dashboard.base
    with httpx.Client(base_url=base, timeout=60) as client:
        first = client.get("/live")
        assert first.status_code in (302, 303), first.text[:300]
        assert "/login" in first.headers["location"]
        login = client.get("/login")
        assert login.status_code == 200 and 'name="password"' in login.text
        assert off_machine_urls(login.text) == []
        assert client.get("/liveness").status_code == 200  # what `sensorlib up` polls
        wrong = client.post("/login", data={"username": "me", "password": "nope"})
        assert wrong.status_code in (302, 303) and "error=" in wrong.headers["location"]
        assert client.get("/live").status_code in (302, 303)
        right = client.post("/login", data={"username": "me", "password": TOKEN})
        assert right.status_code in (302, 303), right.text[:300]
        page = client.get("/live")
        assert page.status_code == 200 and "sensorlib" in page.text
        assert off_machine_urls(page.text) == []
    assert TOKEN not in exposed_dashboard.log_text()


def test_the_login_page_escapes_its_error_message(exposed_dashboard: Served) -> None:
    evil = "<script>alert(1)</script>"
    page = httpx.get(exposed_dashboard.base + "/login", params={"error": evil})
    assert evil not in page.text and "&lt;script&gt;" in page.text


def test_beyond_loopback_without_a_token_the_dashboard_does_not_start(
        topics: Settings, tmp_path: Path) -> None:
    served = _start(topics, tmp_path, "0.0.0.0")
    try:
        code = served.process.wait(timeout=60)
    finally:
        _stop(served)
    assert code != 0
    said = served.log_text()
    assert "SENSORLIB_API_TOKEN" in said and "SENSORLIB_INSECURE" in said


def test_the_served_page_loads_nothing_from_another_machine(open_dashboard: Served) -> None:
    page = httpx.get(open_dashboard.base + "/live", timeout=60)
    assert page.status_code == 200
    assert off_machine_urls(page.text) == []


@pytest.mark.browser
def test_in_chromium_no_request_leaves_the_machine(open_dashboard: Served, browser) -> None:
    elsewhere: list[str] = []
    failed: list[str] = []

    def route(r) -> None:
        host = urlsplit(r.request.url).hostname or ""
        if r.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS \
                or host.startswith("127."):
            r.continue_()
        else:
            elsewhere.append(r.request.url)
            r.abort("internetdisconnected")

    context = browser.new_context()
    try:
        page = context.new_page()
        page.route("**/*", route)
        page.on("requestfailed", lambda req: failed.append(req.url))
        page.goto(open_dashboard.base + "/live", wait_until="load", timeout=60_000)
        page.wait_for_selector(".bk-Tabs, .bk-panel-models-tabs-Tabs, fast-design-system-provider",
                               state="attached", timeout=30_000)
        page.wait_for_timeout(3000)  # late loads (fonts, lazy modules)
    finally:
        context.close()
    assert elsewhere == [], elsewhere
    assert [u for u in failed if "/ws" not in u] == [], failed
