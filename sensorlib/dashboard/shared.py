"""One running background object per :class:`~sensorlib.config.Settings` in a server process.

Every browser session of the dashboard shares the Kafka monitor and the Ops scraper of its
settings instead of starting its own (one consumer, one scrape loop per process).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from sensorlib.config import Settings

T = TypeVar("T")

__all__ = ["PerSettings"]


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
