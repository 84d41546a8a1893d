"""A capped, de-duplicated log of the most recent items (alerts), keyed by their id.

The processor's ``/api/alerts`` and the dashboard's alert feed both keep the last N alerts,
skip an alert id they already hold (a replay, a restart's back-fill) and drop the oldest
when full. Thread-safe: the processing thread adds, HTTP threads read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from sensorlib.errors import UsageError

__all__ = ["RecentById"]

T = TypeVar("T")


class RecentById(Generic[T]):
    """The last ``maxlen`` items by insertion, each id at most once.

    >>> log = RecentById(2, key=lambda a: a["id"])
    >>> [log.add({"id": i}) for i in ("a", "b", "a", "c")]
    [True, True, False, True]
    >>> [a["id"] for a in log.newest_first()]
    ['c', 'b']
    """

    def __init__(self, maxlen: int, *, key: Callable[[T], Hashable],
                 order: Callable[[T], object] | None = None) -> None:
        if maxlen < 1:
            raise UsageError(f"maxlen must be at least 1 (got {maxlen})")
        self.maxlen = maxlen
        self._key = key
        self._order = order
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, item: T) -> bool:
        """Keep ``item``; False (and nothing changes) when its id is already held.

        When full, the oldest item goes: by insertion, or the smallest by ``order``.
        """
        key = self._key(item)
        with self._lock:
            if key in self._items:
                return False
            if len(self._items) >= self.maxlen:
                if self._order is None:
                    self._items.popitem(last=False)
                else:
                    oldest = min(self._items, key=lambda k: self._order(self._items[k]))
                    del self._items[oldest]
            self._items[key] = item
            return True

    def extend(self, items: Iterable[T]) -> int:
        """Add each item; how many were new."""
        return sum(self.add(item) for item in items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def newest_first(self) -> list[T]:
        """A copy of the items, the most recently added first."""
        with self._lock:
            items = list(self._items.values())
        items.reverse()
        return items
