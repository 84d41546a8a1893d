"""Ports: free, open or held by whom, and the check that refuses to start a server on a taken
port while naming the process that holds it."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import psutil

from sensorlib.errors import PortInUse


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


#: Ports :func:`free_port` has handed out in this process (never handed out twice).
_GIVEN: set[int] = set()


def free_port() -> int:
    """An ephemeral TCP port that is free right now (for tests and side-by-side runs).

    Never the same port twice in one process: a caller that asks for several ports before
    binding any (``sensorlib up`` on free ports: producer, processor, archiver, dashboard)
    gets distinct ones, although the kernel may offer a just-closed port again.
    """
    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise PortInUse("no free TCP port found that this process has not handed out already")


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now: a test bind with SO_REUSEADDR, as
    uvicorn, http.server, Tornado and the JVM bind (so a port in TIME_WAIT counts as free,
    a listening one, on this address or on all of them, as taken)."""
    bind_host = {"": "0.0.0.0", "localhost": "127.0.0.1"}.get(host, host).strip("[]")
    try:
        infos = socket.getaddrinfo(bind_host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return True  # an unknown name: the server itself will say so
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            return False
    return True


def _command(proc: psutil.Process) -> str:
    """A process's command line, short: ``sensorlib producer`` for sensorlib's own."""
    try:
        argv = proc.cmdline()
    except psutil.Error:
        return ""
    for i, arg in enumerate(argv):
        if arg == "sensorlib.cli" and i and argv[i - 1] == "-m":
            return " ".join(["sensorlib", *argv[i + 1:]])
        if arg == "sensorlib.dashboard.server" and i and argv[i - 1] == "-m":
            return "sensorlib dashboard"
        if Path(arg).name == "sensorlib" and i <= 1:
            return " ".join(["sensorlib", *argv[i + 1:]])
        if arg == "kafka.Kafka":
            return "Apache Kafka (kafka.Kafka " + " ".join(argv[i + 1:]) + ")"
    text = " ".join(argv)
    return text if len(text) <= 80 else text[:77] + "..."


def _listeners(port: int) -> set[int | None]:
    """Pids listening on TCP ``port`` here (None for a process psutil may not see)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return set()
    return {c.pid for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}


def _sensorlib_up(proc: psutil.Process) -> psutil.Process | None:
    """The ``sensorlib up`` that ``proc`` is or was started by, if any."""
    try:
        for candidate in [proc, *proc.parents()[:4]]:  # a service, or a child it forked
            if _command(candidate).startswith("sensorlib up"):
                return candidate
    except psutil.Error:
        pass
    return None


def port_holder(port: int) -> str | None:
    """Who listens on TCP ``port`` on this machine, in words, e.g. ``pid 4242 (python3:
    sensorlib producer), started by pid 4200 (sensorlib up)``; None when no listener is
    found (psutil cannot see another user's pid: then it says so)."""
    pids = _listeners(port)
    if not pids:
        return None
    known = sorted(pid for pid in pids if pid is not None)
    if not known:
        return "a process of another user (its pid is not visible to you)"
    words = []
    for pid in known:
        try:
            proc = psutil.Process(pid)
            text = f"pid {pid} ({proc.name()}: {_command(proc)})"
            up = _sensorlib_up(proc)
            if up is not None and up.pid != pid:
                text += f", started by pid {up.pid} ({_command(up)})"
        except psutil.Error:
            text = f"pid {pid}"
        words.append(text)
    return " and ".join(words)


def check_ports(host: str, ports: Sequence[tuple[int, str, str]]) -> None:
    """Refuse at once when a port is taken, before anything starts.

    Args:
        host: the address the servers will bind.
        ports: ``(port, what, variable)`` triples, e.g. ``(8081, "producer API",
            "SENSORLIB_PRODUCER_PORT")``; port 0 (any free port) is skipped.

    Raises:
        PortInUse: naming each taken port, what needs it, the process that holds it and
            how to choose another.
    """
    taken = [(port, what, variable) for port, what, variable in ports
             if port and not port_free(host, port)]
    if not taken:
        return
    lines = []
    ups: set[int] = set()
    for port, what, variable in taken:
        lines.append(f"port {port} ({what}, {variable}) on {host} is in use by "
                     f"{port_holder(port) or 'another program'}")
        for pid in _listeners(port) - {None}:
            try:
                up = _sensorlib_up(psutil.Process(pid))
            except psutil.Error:
                continue
            if up is not None:
                ups.add(up.pid)
    variables = ", ".join(dict.fromkeys(v for _, _, v in taken))
    if ups:
        pids = ", ".join(map(str, sorted(ups)))
        advice = (f"another `sensorlib up` is running (pid {pids}): use it (`sensorlib status`), "
                  f"stop it first (Ctrl-C in its terminal, or `kill {pids}`), or give this one "
                  f"other ports ({variables})")
    else:
        advice = f"stop that program, or choose other ports ({variables})"
    if len(lines) == 1:
        raise PortInUse(f"{lines[0]} — {advice}")
    raise PortInUse("ports sensorlib needs are in use:\n" + "\n".join(f"  {line}" for line in lines)
                    + f"\n{advice[0].upper()}{advice[1:]}")
