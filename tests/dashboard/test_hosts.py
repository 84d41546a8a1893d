"""DNS rebinding: the dashboard answers only to allowed Host names, over real sockets.

The rebinding attack: a page on ``http://evil.example:PORT`` whose name is then pointed
at 127.0.0.1. For the browser that page is same-origin with the dashboard, so its
requests carry ``Host: evil.example:PORT`` and a *matching* ``Origin`` (or
``Sec-Fetch-Site: same-origin``), which Tornado's Origin check lets through. Only the
Host check stops it. No Kafka is needed for any of this: the servers here point at a
port where no broker listens (they show the "Kafka unreachable" banner).
"""

from __future__ import annotations

import base64
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.kafka.ports import free_port
from sensorlib.services.hosts import host_allowed, split_host, websocket_origins
from tests.conftest import CHROMIUM, CHROMIUM_ARGS

EVIL = "evil.example"

# -- the rule -----------------------------------------------------------------------


@pytest.mark.parametrize(("host", "ok"), [
    ("localhost:5006", True), ("LOCALHOST:5006", True), ("localhost.:5006", True),
    ("localhost", True), ("127.0.0.1:5006", True), ("[::1]:5006", True),
    (f"{EVIL}:5006", False), (EVIL, False), ("localhost:5007", False),
    ("localhost.evil.example:5006", False), ("127.0.0.1.nip.io:5006", False),
    ("", False), (None, False), ("localhost:5006, evil.example", False),
    ("localhost:abc", False), ("localhost:0", False), ("localhost:99999", False),
    ("user@localhost:5006", False), ("[::1", False), ("::1:5006", False),
])
def test_host_rule(host: str | None, ok: bool) -> None:
    allowed = Settings().hosts()
    assert host_allowed(host, allowed, 5006) is ok


def test_entries_with_a_port_and_without_a_server_port() -> None:
    allowed = ["dash.example.com", "proxy.example:443"]
    assert host_allowed("dash.example.com:5006", allowed, 5006)
    assert host_allowed("proxy.example:443", allowed, 5006)
    assert not host_allowed("proxy.example:5006", allowed, 5006)
    assert host_allowed("dash.example.com:9999", allowed, None)  # in-app: any port
    assert not host_allowed(f"{EVIL}:5006", allowed, None)


def test_split_host_refuses_junk() -> None:
    assert split_host("[::1]:5006") == ("::1", 5006)
    for junk in ("", " ", ":5006", "[::1]x", "[::1]:", "a/b", "a\\b", "<x>"):
        assert split_host(junk) is None, junk


def test_origins_come_from_the_same_list_never_a_wildcard() -> None:
    assert websocket_origins(Settings(), 5006) == ["127.0.0.1:5006", "localhost:5006"]
    custom = Settings().replace(allowed_hosts=("dash.example.com", "::1", "p.example:443"))
    assert sorted(websocket_origins(custom, 7000)) == [  # the loopback names always stay
        "127.0.0.1:7000", "dash.example.com:7000", "localhost:7000", "p.example:443"]


# -- over real sockets ----------------------------------------------------------------


def no_kafka(kit: Any, base: Settings, **changes: object) -> Settings:
    return kit.private_settings(base, f"localhost:{free_port()}", **changes)


@pytest.fixture(scope="module")
def guarded(kit: Any, base_settings: Settings,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """What ``sensorlib dashboard`` runs, with the default allowed names."""
    settings = no_kafka(kit, base_settings, allowed_hosts=())
    dashboard = kit.start_dashboard(settings, tmp_path_factory.mktemp("guarded") / "panel.log")
    try:
        yield dashboard
    finally:
        dashboard.stop()


@pytest.fixture(scope="module")
def plain(kit: Any, base_settings: Settings,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``panel serve dashboards/live.py`` run by hand: only the app's own check."""
    settings = no_kafka(kit, base_settings, allowed_hosts=())
    dashboard = kit.start_dashboard(settings, tmp_path_factory.mktemp("plain") / "panel.log",
                                    command=kit.plain_panel_serve)
    try:
        yield dashboard
    finally:
        dashboard.stop()


def port_of(dashboard: Any) -> int:
    return dashboard.settings.dashboard_port


def get(dashboard: Any, path: str, host: str, **headers: str) -> httpx.Response:
    url = f"http://127.0.0.1:{port_of(dashboard)}{path}"
    return httpx.get(url, headers={"Host": host, **headers}, timeout=30.0)


def token_of(page: str) -> str:
    found = re.search(r'token[\\"\']*\s*:\s*[\\"\']*([A-Za-z0-9_\-.]{20,})', page)
    assert found, "no session token in the page"
    return found.group(1)


def upgrade(dashboard: Any, host: str, origin: str, token: str, **headers: str) -> str:
    """Send a websocket upgrade by hand; return the response's status line."""
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /live/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Origin: {origin}\r\nSec-WebSocket-Protocol: bokeh, {token}\r\n{extra}\r\n")
    with socket.create_connection(("127.0.0.1", port_of(dashboard)), timeout=30) as sock:
        sock.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode()


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/live", "/live/ws", "/live/autoload.js", "/liveness",
                                  "/static/js/bokeh.min.js", "/favicon.ico", "/", "/no-such-page"])
def test_every_route_refuses_a_foreign_host(guarded: Any, path: str) -> None:
    port = port_of(guarded)
    for host in (f"{EVIL}:{port}", EVIL, f"localhost:{port + 1}"):
        answer = get(guarded, path, host)
        assert answer.status_code == 400, (host, answer.status_code)
        assert "DNS-rebinding guard" in answer.text
        assert "bokeh" not in answer.text.lower()


@pytest.mark.slow
def test_the_allowed_names_still_work(guarded: Any) -> None:
    port = port_of(guarded)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}"):
        page = get(guarded, "/live", host)
        assert page.status_code == 200, host
        assert "<title>sensorlib · live sensors</title>" in page.text, host
    assert get(guarded, "/liveness", f"localhost:{port}").status_code == 200
    assert get(guarded, "/static/js/bokeh.min.js", f"localhost:{port}").status_code == 200


@pytest.mark.slow
def test_websocket_upgrade_needs_an_allowed_host(guarded: Any) -> None:
    port = port_of(guarded)
    good = f"127.0.0.1:{port}"
    token = token_of(get(guarded, "/live", good).text)
    bad = f"{EVIL}:{port}"
    # The rebinding case: Origin matches the (foreign) Host, the browser says same-origin.
    assert upgrade(guarded, bad, f"http://{bad}", token).startswith("HTTP/1.1 400")
    assert upgrade(guarded, bad, f"http://{bad}", token,
                   Sec_Fetch_Site="same-origin").startswith("HTTP/1.1 400")
    # A foreign page talking to the real name: the Origin allow-list refuses it.
    assert upgrade(guarded, good, f"http://{bad}", token,
                   Sec_Fetch_Site="cross-site").startswith("HTTP/1.1 403")
    assert upgrade(guarded, good, f"http://{good}", token).startswith("HTTP/1.1 101")
    localhost = f"localhost:{port}"
    assert upgrade(guarded, localhost, f"http://{localhost}", token,
                   Sec_Fetch_Site="cross-site").startswith("HTTP/1.1 101")


@pytest.mark.slow
def test_allowed_hosts_setting_adds_a_name(kit: Any, base_settings: Settings,
                                           tmp_path: Path) -> None:
    settings = no_kafka(kit, base_settings, allowed_hosts=("dash.example.com", "127.0.0.1"))
    dashboard = kit.start_dashboard(settings, tmp_path / "panel.log")
    try:
        port = port_of(dashboard)
        assert get(dashboard, "/live", f"dash.example.com:{port}").status_code == 200
        assert get(dashboard, "/live", f"other.example:{port}").status_code == 400
        token = token_of(get(dashboard, "/live", f"127.0.0.1:{port}").text)
        name = f"dash.example.com:{port}"
        assert upgrade(dashboard, name, f"http://{name}", token,
                       Sec_Fetch_Site="cross-site").startswith("HTTP/1.1 101")
    finally:
        dashboard.stop()
    assert "refused GET /live for Host 'other.example:" in dashboard.log_text()


@pytest.mark.slow
def test_plain_panel_serve_gives_a_foreign_host_no_data(plain: Any) -> None:
    port = port_of(plain)
    page = get(plain, "/live", f"{EVIL}:{port}")
    # Bokeh answers (a plain `panel serve` has no Host check), but the app refused the
    # session: its document (sent over the websocket, see the Chromium test) is the notice.
    assert page.status_code == 200
    assert "<title>sensorlib · refused</title>" in page.text and "live sensors" not in page.text
    good = get(plain, "/live", f"localhost:{port}")
    assert "<title>sensorlib · live sensors</title>" in good.text
    assert "refused a dashboard session for Host 'evil.example:" in plain.log_text()


# -- in Chromium, with the name really pointed at 127.0.0.1 ---------------------------


@pytest.fixture(scope="module")
def rebound(browser: Any) -> Iterator[Any]:
    """A second Chromium (same Playwright) that resolves evil.example to 127.0.0.1."""
    chromium = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {EVIL} 127.0.0.1", "--no-proxy-server"])
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.mark.slow
@pytest.mark.browser
def test_rebinding_in_chromium(rebound: Any, guarded: Any, plain: Any) -> None:
    context = rebound.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        answer = page.goto(f"http://{EVIL}:{port_of(guarded)}/live")
        assert answer.status == 400
        assert "DNS-rebinding guard" in page.inner_text("body")
        assert sockets == []
        page.goto(f"http://{EVIL}:{port_of(plain)}/live")
        page.get_by_text("does not answer to the host name").wait_for(timeout=30_000)
        assert page.locator(".sensor-card").count() == 0
        assert page.locator(".kafka-banner", has_text="Kafka unreachable").count() == 0
        # The names it serves work in the same browser.
        page.goto(f"http://localhost:{port_of(guarded)}/live")
        page.locator(".kafka-banner", has_text="Kafka unreachable").wait_for(timeout=30_000)
        assert dialogs == []
    finally:
        context.close()
