"""``panel serve`` with the Host guard on every route: what ``sensorlib dashboard`` runs.

    python -m sensorlib.dashboard.server dashboards/live.py --port 5006 --address 127.0.0.1 …

Takes exactly the arguments of ``panel serve``. Once Bokeh has built its Tornado
application, and before the server answers anything, every route is put behind
:func:`guard_application` with the names of ``Settings.hosts()``
(``SENSORLIB_ALLOWED_HOSTS``) at the port actually bound: a request for any other
Host gets 400, a websocket upgrade for one is never performed.

Who may look (README "Security: binding beyond loopback"): bound beyond loopback, or
with ``SENSORLIB_API_TOKEN`` set, the dashboard asks for a login first (Panel's basic
auth: any user name, the token as password; its own login page, nothing from a CDN).
Bound beyond loopback with neither a token nor ``SENSORLIB_INSECURE=1`` it refuses to
start. ``/liveness`` and ``/metrics`` stay open, as the APIs' ``/health`` and ``/metrics``.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import os
import secrets
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # before Panel is imported (seconds): re-executing costs little
    from sensorlib.dashboard.allocator import use_configured_allocator

    use_configured_allocator(["-m", "sensorlib.dashboard.server", *sys.argv[1:]])

from panel.command.serve import Serve
from tornado.web import Application, RequestHandler

from sensorlib.config import Settings, is_loopback
from sensorlib.dashboard.allocator import in_use
from sensorlib.errors import DashboardError
from sensorlib.services.hosts import host_allowed

__all__ = ["GuardedServe", "RefusedHost", "guard_application", "main"]

log = logging.getLogger(__name__)

#: What a refused request reads (the refused name is logged, never echoed).
REFUSED = ("This server does not answer to that Host name (DNS-rebinding guard). "
           "Use one of the allowed names, or add the name to SENSORLIB_ALLOWED_HOSTS.\n")


class RefusedHost(RequestHandler):
    """Answers 400 to any method on any path: the Host header named another server."""

    def prepare(self) -> None:
        self.set_status(400)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(REFUSED)

    def check_xsrf_cookie(self) -> None:
        """No cookie check: nothing is served here, and the answer must stay the 400."""


def guard_application(app: Application, allowed: Iterable[str], port: int | None) -> None:
    """Route every request of ``app`` whose Host is not in ``allowed`` to :class:`RefusedHost`.

    Wraps :meth:`tornado.web.Application.find_handler`, the one place every request
    (page, websocket upgrade, static file) is routed through, so handlers added later
    are covered too. Idempotent.
    """
    if getattr(app, "_sensorlib_host_guard", None) is not None:
        return
    names = tuple(allowed)
    if not names:
        raise DashboardError("the Host allow-list is empty: no request could be answered")
    route = app.find_handler
    logged: dict[str, float] = {}

    def find_handler(request: Any, **kwargs: Any) -> Any:
        host = request.headers.get("Host")
        if host_allowed(host, names, port):
            return route(request, **kwargs)
        _note_refusal(logged, (host or "")[:100], request, names)
        return app.get_handler_delegate(request, RefusedHost)

    app.find_handler = find_handler  # type: ignore[method-assign]
    app._sensorlib_host_guard = names  # type: ignore[attr-defined]


def _note_refusal(logged: dict[str, float], host: str, request: Any, names: tuple[str, ...]) -> None:
    # One line per refused name per minute: a rebinding page may retry in a loop.
    now = time.monotonic()
    if now - logged.get(host, -60.0) < 60.0:
        return
    if len(logged) > 1000:
        logged.clear()
    logged[host] = now
    log.warning("refused %s %s for Host %r (allowed: %s; see SENSORLIB_ALLOWED_HOSTS)",
                request.method, request.path[:100], host, ", ".join(names))


#: The login page (no CDN: everything served works offline).
LOGIN_TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "dashboard_login.html"
#: Paths answered without a login: what supervisors and Prometheus poll.
GUEST_ENDPOINTS = ["/liveness", "/metrics"]


def _compare_in_constant_time(password: str) -> None:
    """Panel checks the login password with ``==``; check it with ``hmac.compare_digest``."""
    from panel.auth import BasicLoginHandler

    expected = password.encode()

    def validate(self: Any, username: str, given: str) -> bool:
        return hmac.compare_digest(given.encode(), expected)

    BasicLoginHandler._validate = validate  # type: ignore[method-assign]


def login_password(settings: Settings, addresses: list[str]) -> str | None:
    """The password the dashboard asks for (the API token), None when it asks for none.

    Raises:
        ValueError: bound beyond loopback with no token and without ``SENSORLIB_INSECURE``.
    """
    beyond = [a for a in addresses if not is_loopback(a)]
    if settings.api_token:
        return settings.api_token
    if beyond and not settings.insecure:
        raise DashboardError(f"bound beyond loopback ({', '.join(beyond)}) without a login: set "
                         "SENSORLIB_API_TOKEN (the dashboard's password), or "
                         "SENSORLIB_INSECURE=1 to let anyone on the network look")
    return None


class GuardedServe(Serve):
    """Panel's ``serve`` command, refusing requests whose Host is not an allowed name, and
    asking for a login when bound beyond loopback (:func:`login_password`)."""

    name = "serve"

    def invoke(self, args: argparse.Namespace) -> Any:
        """Turn on the login when needed (set here, not on the command line: the password
        never appears in ``ps``), then serve."""
        settings = Settings.from_env()
        password = login_password(settings, [args.address or "localhost"])
        if password is not None and not args.basic_auth:
            if os.path.exists(password):  # Panel would read such a password as a user file
                raise DashboardError("SENSORLIB_API_TOKEN names a file; use a random token")
            args.basic_auth = password
            args.cookie_secret = args.cookie_secret or secrets.token_urlsafe(32)
            args.basic_login_template = args.basic_login_template or str(LOGIN_TEMPLATE)
            args.oauth_guest_endpoints = [*(args.oauth_guest_endpoints or []), *GUEST_ENDPOINTS]
            _compare_in_constant_time(password)
            log.info("Dashboard login required (any user name; the password is "
                     "SENSORLIB_API_TOKEN)")
        return super().invoke(args)

    def customize_server(self, server: Any) -> Any:
        """Install the Host guard on the server's Tornado application (before it serves)."""
        server = super().customize_server(server)
        # Bokeh keeps no public handle on its Tornado application; fail closed if that moves.
        app = getattr(server, "_tornado", None)
        if app is None or not hasattr(app, "find_handler"):
            raise DashboardError("cannot install the Host guard on this Bokeh version; "
                               "refusing to serve the dashboard unguarded")
        hosts = Settings.from_env().hosts()
        guard_application(app, hosts, server.port)
        log.info("Dashboard answers to Host %s (port %s); set SENSORLIB_ALLOWED_HOSTS for more",
                 ", ".join(hosts), server.port)
        return server


def main(argv: list[str] | None = None) -> int:
    """Parse ``panel serve`` arguments and serve until interrupted."""
    print(f"dashboard: memory from {in_use()}"
          + ("" if in_use() == "jemalloc" else " (install libjemalloc2 for closed sessions' "
             "memory to be returned: see SENSORLIB_DASHBOARD_ALLOCATOR)"),
          file=sys.stderr, flush=True)
    parser = argparse.ArgumentParser(prog="python -m sensorlib.dashboard.server",
                                     description=__doc__.splitlines()[0])
    command = GuardedServe(parser=parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        command.invoke(args)
    except Exception as exc:  # noqa: BLE001 — a one-line error, as `panel serve` gives
        print(f"dashboard: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
