"""Fixtures of the notification tests: a real Alertmanager (Debian's binary), a webhook
receiver and an SMTP server (aiosmtpd) of the test's own, and a broker free to be stopped."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensorlib.config import Settings
from sensorlib.kafka.broker import LocalKafka
from sensorlib.kafka.ports import free_port
from sensorlib.notify.alertmanager import alertmanager_command, alertmanager_config

needs_alertmanager = pytest.mark.skipif(
    shutil.which("prometheus-alertmanager") is None and shutil.which("alertmanager") is None,
    reason="prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)")


class Webhook:
    """A small HTTP server recording Alertmanager's webhook notifications (JSON bodies)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.times: list[float] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.bodies.append(json.loads(raw))
                received.times.append(time.time())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, status: str = "firing") -> list[dict[str, Any]]:
        return [a for body in self.bodies for a in body["alerts"] if a["status"] == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """A real SMTP server (aiosmtpd) keeping every message it is handed."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Message] = []
        self.envelopes: list[Any] = []
        box = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                box.envelopes.append(envelope)
                box.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


class Alertmanager:
    """Debian's prometheus-alertmanager on a free port, its state in ``folder``."""

    def __init__(self, folder: Path, settings: Settings, webhook: str, **timing: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "alertmanager.yml"
        self.config.write_text(alertmanager_config(settings, webhooks=[webhook], **timing))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Alertmanager:
        argv = alertmanager_command(self.config, self.folder / "data", self.port)
        argv = [a for a in argv if not a.startswith("--log.level")] + ["--log.level=info"]
        with open(self.folder / "alertmanager.log", "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"Alertmanager did not start: {(self.folder / 'alertmanager.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.process = None


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.close()


@pytest.fixture
def alertmanager(tmp_path: Path, base_settings: Settings, webhook: Webhook,
                 mailbox: Mailbox) -> Iterator[Alertmanager]:
    """A running Alertmanager sending to ``webhook`` and by e-mail to ``mailbox``."""
    settings = base_settings.replace(smtp_host="127.0.0.1", smtp_port=mailbox.port,
                                     smtp_from="sensorlib@example.com",
                                     smtp_to=("ops@example.com",))
    am = Alertmanager(tmp_path, settings, webhook.url, group_wait="1s", group_interval="2s")
    am.start()
    yield am
    am.stop()


@pytest.fixture(scope="module")
def own_kafka(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A single-node broker of this module's own, free to be stopped."""
    from tests.faults.conftest import start_kafka

    kafka = start_kafka(tmp_path_factory.mktemp("notify-kafka"), base_settings)
    yield kafka
    kafka.stop()


@pytest.fixture
def spawn_notify(tmp_path: Path) -> Iterator[Any]:
    """Start ``sensorlib notify`` processes; all are stopped after the test."""
    from tests.support import Spawner

    spawner = Spawner(tmp_path)
    yield spawner
    spawner.stop_all()
