"""free_port: distinct ports for a caller that asks for several before binding any."""

from __future__ import annotations

import socket

from sensorlib.kafka.ports import free_port


def test_free_port_never_hands_out_a_port_twice_in_one_process() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
