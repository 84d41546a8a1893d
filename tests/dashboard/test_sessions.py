"""Dashboard sessions are capped and give their memory back (a served dashboard, real Kafka).

Sessions are opened as a browser opens them: ``GET /live`` (Bokeh builds the session's
document then), then the page's websocket with the session token, asking for the document
(``PULL-DOC-REQ``); closing the websocket ends the session (dropped once unused).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import httpx
import psutil
import pytest
from bokeh.protocol import Protocol
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from sensorlib.dashboard.app import busy_message

TOKEN = re.compile(r'"token":"([^"]+)"')
TITLE = re.compile(r"<title>([^<]*)</title>")


async def open_session(client: httpx.AsyncClient, url: str) -> tuple[str, Any, str]:
    """One session: the page's title, its open websocket and the document it was sent."""
    page = await client.get(url)
    assert page.status_code == 200
    title = TITLE.search(page.text)
    token = TOKEN.search(page.text)
    assert title is not None and token is not None
    origin = url.rsplit("/", 1)[0]
    ws = await websocket_connect(
        HTTPRequest(origin.replace("http://", "ws://") + "/live/ws", headers={"Origin": origin}),
        subprotocols=["bokeh", token.group(1)], max_message_size=1 << 30)
    for _ in range(3):  # ACK: header, metadata, content
        await ws.read_message()
    request = Protocol().create("PULL-DOC-REQ")
    for part in (request.header_json, request.metadata_json, request.content_json):
        await ws.write_message(part)
    parts = [await ws.read_message() for _ in range(3)]  # PULL-DOC-REPLY: the document
    assert all(isinstance(part, str) for part in parts)
    return title.group(1), ws, str(parts[2])


async def open_many(url: str, n: int) -> list[tuple[str, Any, str]]:
    async with httpx.AsyncClient(timeout=120) as client:
        return [await open_session(client, url) for _ in range(n)]


def close_all(sessions: list[tuple[str, Any, str]]) -> None:
    for _, ws, _ in sessions:
        ws.close()


def open_now(url: str) -> float:
    metrics = httpx.get(url.rsplit("/", 1)[0] + "/metrics", timeout=30).text
    found = re.search(r"^sensorlib_dashboard_sessions (\S+)$", metrics, re.MULTILINE)
    assert found is not None
    return float(found.group(1))


def heap(url: str) -> dict[str, float]:
    """The server's jemalloc statistics in MB (empty on CPython's allocator)."""
    metrics = httpx.get(url.rsplit("/", 1)[0] + "/metrics", timeout=30).text
    return {kind: round(float(value) / 2**20, 1) for kind, value in re.findall(
        r'^sensorlib_dashboard_heap_bytes\{kind="(\w+)"\} (\S+)$', metrics, re.MULTILINE)}


async def wait_closed(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while open_now(url) > 0:
        assert time.monotonic() < deadline, "closed sessions were never dropped"
        await asyncio.sleep(1.0)
    await asyncio.sleep(4.0)  # the release's collection and trim run 2 s after the last


async def settled_rss(process: psutil.Process, timeout: float = 30.0) -> int:
    """The server's RSS once it stops falling (the trim after the last close has run)."""
    deadline = time.monotonic() + timeout
    low, steady = process.memory_info().rss, 0
    while steady < 3 and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        rss = process.memory_info().rss
        steady = steady + 1 if rss >= low * 0.995 else 0
        low = min(low, rss)
    return low


@pytest.fixture(scope="module")
def served(dash_settings: Any, kit: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    kit.seed_fleet(dash_settings)
    running = kit.start_dashboard(dash_settings.replace(max_sessions=50),
                                  tmp_path_factory.mktemp("sessions") / "panel.log")
    try:
        yield running
    finally:
        running.stop()


def test_the_51st_session_gets_the_busy_page_and_200_sessions_give_memory_back(served: Any) -> None:
    url = served.url
    process = psutil.Process(served.process.pid)

    async def scenario() -> tuple[float, list[float], list[str], int]:
        close_all(await open_many(url, 3))  # the first sessions import and cache for good
        await wait_closed(url)
        before = await settled_rss(process)
        heaps = [heap(url)]
        peaks: list[float] = []
        refused: list[str] = []
        for wave in range(4):  # 4 x 50 = 200 sessions, 50 open at once
            sessions = await open_many(url, 50)
            assert {title for title, _, _ in sessions} == {"sensorlib · live sensors"}
            assert open_now(url) == 50
            if wave == 0:
                (busy,) = await open_many(url, 1)
                refused.append(busy[0])
                assert "SENSORLIB_MAX_SESSIONS" in busy[2]  # the message, in the document
                assert "sensor-01" not in busy[2]  # and no data
                assert "sensor-01" in sessions[0][2]
                close_all([busy])
                assert open_now(url) == 50  # a busy page is not a session of the cap
            peaks.append(process.memory_info().rss / before)
            close_all(sessions)
            await wait_closed(url)
        after = await settled_rss(process)
        heaps.append(heap(url))
        return before, peaks, refused, after, heaps

    before, peaks, refused, after, heaps = run_apart(scenario())
    print(f"dashboard RSS {before / 2**20:.0f} MB before, peaks x{max(peaks):.2f}, "
          f"{after / 2**20:.0f} MB after 200 sessions; heap (MB) before {heaps[0]}, "
          f"after {heaps[1]}")
    assert refused == ["sensorlib · busy"]
    # Closed sessions are released: the memory of one wave is reused by the next, so 200
    # sessions peak where the first 50 did (before the fix every wave added to it).
    assert max(peaks) <= peaks[0] * 1.05, peaks
    assert after <= before * peaks[0] * 1.05, (before / 2**20, after / 2**20, peaks)
    # After the closes a new session is served again.
    (title, _, _), = run_apart(_one(url))
    assert title == "sensorlib · live sensors"
    # The goal: back within 20 % of before. Met under jemalloc (the server's
    # default when libjemalloc2 is installed, as CI installs it): see
    # sensorlib.dashboard.allocator. On CPython's own allocator every object of the closed
    # sessions is freed too (gc counts as before, live heap +1 MB) but the small-object arenas
    # they filled stay pinned by the few long-lived objects made meanwhile: about x1.35.
    allocator = "jemalloc" if _maps_jemalloc(served.process.pid) else "python"
    if allocator == "python":
        pytest.xfail(f"RSS {before / 2**20:.0f} MB before, {after / 2**20:.0f} MB after "
                     f"(x{after / before:.2f}) on CPython's allocator: install libjemalloc2 "
                     "for the dashboard to give closed sessions' memory back within 20 %")
    assert after <= 1.2 * before, (before / 2**20, after / 2**20, peaks)
    assert "memory from jemalloc" in served.log_text()


def _maps_jemalloc(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return "libjemalloc" in maps.read()


def run_apart(coroutine: Any) -> Any:
    """``asyncio.run`` in a thread of its own: the suite's Playwright browser keeps an event
    loop running in the main thread, where ``asyncio.run`` refuses to start."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="sessions-test")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def _one(url: str) -> list[tuple[str, Any, str]]:
    sessions = await open_many(url, 1)
    close_all(sessions)
    return sessions


def test_the_busy_message_says_why_and_what_to_do() -> None:
    text = busy_message(50)
    assert "50 sessions are open" in text and "SENSORLIB_MAX_SESSIONS" in text
    assert "try again" in text
