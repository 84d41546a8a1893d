"""A broker that cannot start says why: the first error of its log (issue 24, item 6)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sensorlib.config import Settings
from sensorlib.errors import BrokerError
from sensorlib.kafka.broker import LocalKafka, first_errors
from sensorlib.kafka.ports import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_a_taken_port_shows_the_bind_failure(base_settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as taken:  # bound, not listening: only the JVM's bind finds it
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        kafka = LocalKafka(tmp_path / "k", ports=[port], controller_ports=[free_port()],
                           settings=base_settings, heap="256m")
        (tmp_path / "k" / "node-1").mkdir(parents=True)
        # An earlier run's error in the same (appended) log must not be shown as this one's.
        (tmp_path / "k" / "node-1" / "broker.log").write_text(
            "[t] ERROR an old run's failure (x)\n")
        try:
            with pytest.raises(BrokerError) as caught:
                kafka.start(timeout=120)
        finally:
            kafka.stop()
    message = str(caught.value)
    assert f"failed to bind to localhost:{port}" in message, message
    assert "Address already in use" in message
    first = message.index("First error")
    assert first < message.index("Last lines")
    assert "an old run's failure" not in message


def test_a_listening_port_is_refused_naming_its_process(base_settings: Settings,
                                                        tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        kafka = LocalKafka(tmp_path / "k", ports=[port], controller_ports=[free_port()],
                           settings=base_settings, heap="256m")
        with pytest.raises(BrokerError, match=rf"port {port} \(Kafka\).*pid {os.getpid()} "):
            kafka.start(timeout=30)
    assert kafka.pid(kafka.nodes[0]) is None


def test_first_errors_skips_stack_frames() -> None:
    lines = ["[a] INFO starting (x)", "[b] ERROR Unable to start acceptor for PLAINTEXT (y)",
             "org.apache.kafka.common.KafkaException: Socket server failed to bind",
             "\tat kafka.network.Acceptor.openServerSocket(SocketServer.scala:1)",
             "Caused by: java.net.BindException: Address already in use",
             "\tat java.base/sun.nio.ch.Net.bind0(Native Method)",
             "[c] INFO shutting down (z)", "[d] ERROR second (w)", "[e] ERROR third (v)"]
    assert first_errors(lines) == [lines[1], lines[2], lines[4], lines[7]]
