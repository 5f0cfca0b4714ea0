"""An LRU cache with a time-to-live, for per-user computations (user tower outputs)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class LruTtlCache(Generic[V]):
    """Bounded twice: by entries and by bytes (`size_of` a value plus its key and overhead)."""

    ENTRY_OVERHEAD = 200  # OrderedDict node, tuple, float, key str header

    def __init__(
        self,
        max_entries: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = 64 * 2**20,
        size_of: Callable[[V], int] = lambda value: 0,
    ) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.ttl_seconds > 0

    def get(self, key: str) -> V | None:
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] < self._clock():
                if entry is not None:
                    del self._entries[key]
                    self.bytes -= entry[2]
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: str, value: V) -> None:
        if not self.enabled:
            return
        cost = len(key) + self.ENTRY_OVERHEAD + self._size_of(value)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[2]
            self._entries[key] = (self._clock() + self.ttl_seconds, value, cost)
            self.bytes += cost
            while len(self._entries) > self.max_entries or (self.bytes > self.max_bytes and len(self._entries) > 1):
                self.bytes -= self._entries.popitem(last=False)[1][2]

    def __len__(self) -> int:
        return len(self._entries)
