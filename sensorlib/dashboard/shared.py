"""One running background object per :class:`~sensorlib.config.Settings` in a server process.

Every browser session of the dashboard shares the Kafka monitor and the Ops scraper of its
settings instead of starting its own (one consumer, one scrape loop per process).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from sensorlib.config import Settings
from sensorlib.dashboard.allocator import purge

T = TypeVar("T")

__all__ = ["PerSettings", "trim_memory", "trim_memory_soon"]

#: A closed session's release is followed by one collection and trim, at most this often.
TRIM_EVERY = 2.0
_trim_lock = threading.Lock()
_trim_pending = False


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    return trim  # glibc only; None elsewhere (musl, macOS)


_TRIM = _malloc_trim()


def trim_memory() -> None:
    """Collect reference cycles now and hand the C heap's free pages back to the system.

    A closed session leaves cycles (Bokeh models and Panel views refer to each other) and,
    once collected, free memory that the C allocator would otherwise keep for good.
    """
    gc.collect()
    if not purge() and _TRIM is not None:  # jemalloc's free pages, or glibc's
        _TRIM(0)


def trim_memory_soon() -> None:
    """:func:`trim_memory`, once for a burst of closed sessions, :data:`TRIM_EVERY` s after
    the first: on the calling thread's event loop when it runs one (the server's, which
    built and freed the sessions: jemalloc's cache of freed objects is per thread), else
    in a background thread."""
    global _trim_pending
    with _trim_lock:
        if _trim_pending:
            return
        _trim_pending = True

    def now() -> None:
        global _trim_pending
        with _trim_lock:
            _trim_pending = False
        trim_memory()

    try:
        asyncio.get_running_loop().call_later(TRIM_EVERY, now)
        return
    except RuntimeError:  # no loop in this thread
        pass

    def later() -> None:
        time.sleep(TRIM_EVERY)
        now()

    threading.Thread(target=later, name="dashboard-trim", daemon=True).start()


class PerSettings(Generic[T]):
    """Makes (``make(settings)``, once) and keeps one object per settings; thread-safe.

    >>> made = PerSettings(lambda s: object())
    >>> s = Settings()
    >>> made.get(s) is made.get(s)
    True
    """

    def __init__(self, make: Callable[[Settings], T]) -> None:
        self._make = make
        self._made: dict[Settings, T] = {}
        self._lock = threading.Lock()

    def get(self, settings: Settings) -> T:
        """The object for ``settings``, made on first use."""
        with self._lock:
            made = self._made.get(settings)
            if made is None:
                made = self._made[settings] = self._make(settings)
            return made
