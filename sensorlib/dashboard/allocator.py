"""The dashboard server's memory allocator: jemalloc when it is installed, so that the memory
of closed sessions goes back to the system.

A session's objects fill CPython's own small-object arenas (1 MiB each). The few long-lived
objects made while sessions are open (the feed's samples, the monitors' history) land in
those arenas too and pin them: the server's RSS stayed ~35 % above its start after 200
sessions had come and gone, though every object of theirs was freed. Under jemalloc
(``PYTHONMALLOC=malloc``: every object from jemalloc's page-sized slabs, free pages purged
by a background thread) it comes back within 20 %.

``SENSORLIB_DASHBOARD_ALLOCATOR``: ``auto`` (jemalloc when found, else CPython's own),
``jemalloc`` (refuse to start without it) or ``python`` (CPython's own). Debian and Ubuntu:
``apt install libjemalloc2``. Linux only (the library is preloaded: ``LD_PRELOAD``).
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from collections.abc import Mapping

from sensorlib.config import DASHBOARD_ALLOCATORS, Settings
from sensorlib.errors import ConfigError

__all__ = ["ALLOCATORS", "JEMALLOC_CONF", "allocator_env", "find_jemalloc", "heap_stats", "in_use",
           "purge", "use_allocator", "use_configured_allocator"]

#: The values ``SENSORLIB_DASHBOARD_ALLOCATOR`` takes (the settings' own list).
ALLOCATORS = DASHBOARD_ALLOCATORS
#: Freed pages are purged by jemalloc's own thread within a second; one arena (each keeps
#: its own partly used pages, and the server's work is on one thread: its event loop).
JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1,tcache:false"
_MARK = "SENSORLIB_ALLOCATOR_APPLIED"
_PATTERNS = ("/usr/lib/*-linux-gnu/libjemalloc.so.2", "/usr/lib64/libjemalloc.so.2",
             "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2")


def find_jemalloc() -> str | None:
    """The path of ``libjemalloc.so.2``, or None (not installed, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    for pattern in _PATTERNS:
        for path in sorted(glob.glob(pattern)):
            if os.path.isfile(path):
                return path
    return None


def allocator_env(choice: str, environ: Mapping[str, str]) -> dict[str, str] | None:
    """The variables that put a Python process on jemalloc, or None when it stays on
    CPython's own allocator. ``jemalloc`` without the library raises ConfigError."""
    if choice not in ALLOCATORS:
        raise ConfigError(f"SENSORLIB_DASHBOARD_ALLOCATOR must be one of {', '.join(ALLOCATORS)}, "
                          f"got {choice!r}")
    if choice == "python":
        return None
    path = find_jemalloc()
    if path is None:
        if choice == "jemalloc":
            raise ConfigError("SENSORLIB_DASHBOARD_ALLOCATOR=jemalloc but libjemalloc.so.2 is not "
                              "installed: `apt install libjemalloc2` (Debian, Ubuntu), or set it "
                              "to auto")
        return None
    preload = environ.get("LD_PRELOAD", "")
    return {"LD_PRELOAD": f"{path} {preload}".strip(), "PYTHONMALLOC": "malloc",
            "MALLOC_CONF": environ.get("MALLOC_CONF") or JEMALLOC_CONF,
            _MARK: preload or "-"}


def use_allocator(choice: str, argv: list[str]) -> None:
    """Re-execute this process (same pid) under jemalloc when ``choice`` asks for it and it
    is not in force yet; return when nothing is to be done. In the new process the
    variables are taken out of ``os.environ`` again, so that its children do not inherit
    them."""
    was = os.environ.pop(_MARK, None)
    if was is not None:  # this is the re-executed process
        for name in ("PYTHONMALLOC", "MALLOC_CONF"):
            os.environ.pop(name, None)
        if was == "-":
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = was
        return
    extra = allocator_env(choice, os.environ)
    if extra is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv], {**os.environ, **extra})


def use_configured_allocator(argv: list[str]) -> None:
    """:func:`use_allocator` as ``SENSORLIB_DASHBOARD_ALLOCATOR`` says (default ``auto``);
    exits with status 2 and the reason when it cannot be honoured."""
    try:  # the settings read the variable (and check every other one: same exit as later)
        use_allocator(Settings.from_env().dashboard_allocator, argv)
    except ConfigError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _mallctl() -> object | None:
    try:
        fn = ctypes.CDLL(None).mallctl
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_MALLCTL = _mallctl()


def in_use() -> str:
    """``jemalloc`` when it is this process's ``malloc`` (preloaded), else ``python``."""
    return "jemalloc" if _MALLCTL is not None else "python"


def heap_stats() -> dict[str, int] | None:
    """jemalloc's ``allocated`` (bytes in live objects), ``active`` (in pages holding
    some) and ``resident`` (bytes it holds in RAM) now; None when jemalloc is not in use."""
    if _MALLCTL is None:
        return None
    epoch = ctypes.c_uint64(1)  # the statistics are a snapshot, refreshed by a new epoch
    _MALLCTL(b"epoch", None, None, ctypes.byref(epoch), ctypes.sizeof(epoch))
    out = {}
    for kind in ("allocated", "active", "resident"):
        value = ctypes.c_size_t(0)
        size = ctypes.c_size_t(ctypes.sizeof(value))
        if _MALLCTL(f"stats.{kind}".encode(), ctypes.byref(value), ctypes.byref(size),
                    None, 0) != 0:
            return None
        out[kind] = int(value.value)
    return out


def purge() -> bool:
    """Hand jemalloc's free pages back to the system now: the calling thread's cache of
    freed objects first (call it on the thread that freed most: the server's event loop),
    then every arena's free pages. False when jemalloc is not in use."""
    if _MALLCTL is None:
        return False
    _MALLCTL(b"thread.tcache.flush", None, None, None, 0)
    return _MALLCTL(b"arena.4096.purge", None, None, None, 0) == 0
