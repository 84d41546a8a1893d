"""The dashboard's DNS-rebinding guard: the Host names and websocket Origins it answers to.

A page served from ``http://evil.example:5006`` whose DNS name the attacker then points
at 127.0.0.1 is, for the browser, *same-origin* with the dashboard: its requests carry
``Origin: http://evil.example:5006`` and ``Host: evil.example:5006``, and Tornado accepts
a websocket whose Origin equals its Host (or that says ``Sec-Fetch-Site: same-origin``)
without asking the Origin allow-list. Only the Host header tells the two apart, so the
server answers only to the names of :meth:`sensorlib.config.Settings.hosts`
(``SENSORLIB_ALLOWED_HOSTS``; by default localhost, 127.0.0.1, ::1 and the bind address).

This module is the pure rule (no Tornado): :func:`host_allowed` and the Origin list.
:func:`sensorlib.dashboard.server.guard_application` puts the check in front of every
route of the server; the app also applies it to its own sessions, for a plain
``panel serve`` that has no such guard.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sensorlib.config import Settings

__all__ = ["HostGuard", "host_allowed", "split_host", "websocket_origins"]


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a Host header or an allow-list entry; None when malformed.

    Names are lower-cased, a trailing dot is dropped, IPv6 literals lose their brackets.

    >>> split_host("LocalHost:5006"), split_host("[::1]:5006"), split_host("::1")
    (('localhost', 5006), ('::1', 5006), ('::1', None))
    >>> split_host("evil.example:http") is None, split_host("a b") is None
    (True, True)
    """
    text = value.strip().lower()
    port_text = ""
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else ""
        if rest == ":":
            return None
    elif text.count(":") == 1:
        name, _, port_text = text.partition(":")
        if not port_text:
            return None
    else:
        name = text  # a bare name, or a bare IPv6 literal (allow-list entries only)
    name = name.rstrip(".")
    if not name or any(c.isspace() or c in "/\\@,;\"'<>" for c in name):
        return None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        return name, int(port_text)
    return name, None


def host_allowed(host: str | None, allowed: Iterable[str], port: int | None) -> bool:
    """Whether a request's Host header names this server.

    An ``allowed`` entry without a port matches that name with no port or with
    ``port`` (the port the server listens on; None: any port). An entry written
    ``name:port`` matches only that port (a proxy that forwards another port).

    >>> host_allowed("localhost:5006", ["localhost"], 5006)
    True
    >>> host_allowed("evil.example:5006", ["localhost", "127.0.0.1"], 5006)
    False
    >>> host_allowed("localhost:7000", ["localhost"], 5006)
    False
    """
    if not host:
        return False
    parsed = split_host(host)
    if parsed is None:
        return False
    name, asked = parsed
    for entry in allowed:
        rule = split_host(entry)
        if rule is None or rule[0] != name:
            continue
        if rule[1] is not None:
            if asked == rule[1]:
                return True
        elif asked is None or port is None or asked == port:
            return True
    return False


def websocket_origins(settings: Settings, port: int) -> list[str]:
    """The websocket Origin allow-list (``--allow-websocket-origin``): each allowed name at ``port``.

    Derived from the same list as the Host check, never ``*``. IPv6 literals are left
    out (Bokeh cannot write them); a page opened on ``[::1]`` is same-origin with its
    websocket, which Tornado accepts once the Host check has passed.
    """
    origins: list[str] = []
    for entry in settings.hosts():
        parsed = split_host(entry)
        if parsed is None or ":" in parsed[0]:
            continue
        name, fixed = parsed
        origin = f"{name}:{fixed or port}"
        if origin not in origins:
            origins.append(origin)
    return origins


class HostGuard:
    """ASGI middleware: a request whose Host header :func:`host_allowed` refuses gets 400
    (DNS rebinding), before any route runs. The FastAPI services' guard; the dashboard's
    Tornado server and the background services' /health server apply the same rule."""

    def __init__(self, app: Any, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = tuple(allowed)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                     if k == b"host"), None)
        if host_allowed(host, self.allowed, None):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = (b'{"error":"unknown Host header; the service answers to the names in '
                b'SENSORLIB_ALLOWED_HOSTS"}')
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"x-content-type-options", b"nosniff")]})
        await send({"type": "http.response.body", "body": body})
