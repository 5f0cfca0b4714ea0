"""A work queue of RecModel keys, as client-go's rate-limited workqueue behaves (pure, thread-safe).

- a key is queued at most once, however many events name it;
- a key is never handed to two workers at once: added while in progress, it comes back after;
- a key that failed comes back after a delay that doubles per failure, until it succeeds.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque


class WorkQueue:
    def __init__(self, base_delay: float = 0.5, max_delay: float = 300.0) -> None:
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, str]] = []
        self._failures: dict[str, int] = {}
        self._busy_since: dict[str, float] = {}
        self._shutdown = False
        self.base_delay = base_delay
        self.max_delay = max_delay

    def add(self, key: str) -> None:
        with self._cond:
            if key in self._dirty or self._shutdown:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._delayed, (time.monotonic() + delay, key))
            self._cond.notify()

    def retry(self, key: str) -> float:
        """Queues a failed key again after its backoff; returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = float(min(self.base_delay * 2**failures, self.max_delay))
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """The key succeeded: its next failure starts from the base delay."""
        with self._cond:
            self._failures.pop(key, None)

    def _promote_due(self) -> float | None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, key = heapq.heappop(self._delayed)
            if key not in self._dirty:
                self._dirty.add(key)
                if key not in self._processing:
                    self._queue.append(key)
        return self._delayed[0][0] - now if self._delayed else None

    def get(self, timeout: float | None = None) -> str | None:
        """The next key to work on (mark it `done` after), or None on timeout or shutdown."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                wait = self._promote_due()
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    self._busy_since[key] = time.monotonic()
                    return key
                if self._shutdown:
                    return None
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            self._busy_since.pop(key, None)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def drop(self, key: str) -> None:
        """Forget a key entirely (its object is gone)."""
        with self._cond:
            self._failures.pop(key, None)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def longest_busy(self) -> float:
        """Seconds the oldest key in progress has been worked on (0 when none is)."""
        with self._cond:
            if not self._busy_since:
                return 0.0
            return time.monotonic() - min(self._busy_since.values())

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._delayed)
