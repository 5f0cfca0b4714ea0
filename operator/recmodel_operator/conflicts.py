"""Another writer that keeps changing fields we own: noticed, named, and answered with backoff.

A change someone else makes to a field we apply is put back at once (a person's `kubectl
scale`, an edit by hand). When the same field manager changes the child again within
`WINDOW_SECONDS` of our last restore, it is a contest: from then on the child is restored
`BASE_DELAY` seconds after the last restore, the delay doubling each time up to `MAX_DELAY`,
and the RecModel says who the other writer is. The desired state is always the one restored:
the field is never handed over. Once the child has stayed as we apply it for `WINDOW_SECONDS`,
the contest is over and the delay starts from the beginning again.

Pure: the caller passes the clock (seconds, monotonic) in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

WINDOW_SECONDS = 30.0
BASE_DELAY = 10.0
MAX_DELAY = 300.0
UNKNOWN = ""  # a change whose writer the managedFields do not show

Key = tuple[str, str, str]  # (plural, namespace, name) of the child


@dataclass
class Contest:
    restored: dict[str, float] = field(default_factory=dict)  # manager -> when its change was put back
    last_restore: float = 0.0
    delay: float = 0.0  # 0 while uncontested
    pending: bool = False  # a change of theirs waits for its restore
    writers: dict[str, list[str]] = field(default_factory=dict)  # manager -> fields

    @property
    def contested(self) -> bool:
        return self.delay > 0

    def due(self) -> float:
        return self.last_restore + self.delay


class Contests:
    """Per-child contest state, shared by the workers (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contests: dict[Key, Contest] = {}

    def changed_by_others(self, key: Key, writers: dict[str, list[str]], now: float) -> float:
        """A field we own was changed by someone else: seconds to wait before putting it back
        (0: now, and the restore is counted as done)."""
        with self._lock:
            contest = self._contests.setdefault(key, Contest())
            if writers:
                contest.writers = writers
            managers = list(writers) or [UNKNOWN]
            if not contest.contested and any(
                now - contest.restored.get(manager, -WINDOW_SECONDS) < WINDOW_SECONDS for manager in managers
            ):
                contest.delay = BASE_DELAY  # the same writer again, right after we put its change back
            if contest.contested:
                wait = contest.due() - now
                contest.pending = wait > 0
                if wait > 0:
                    return wait
                contest.delay = min(contest.delay * 2, MAX_DELAY)
            contest.last_restore = now
            contest.restored.update(dict.fromkeys(managers, now))
            return 0.0

    def unchanged(self, key: Key, now: float) -> None:
        """The child is as we apply it: a contest ends once it has stayed so for the window."""
        with self._lock:
            contest = self._contests.get(key)
            if contest is not None and now - contest.last_restore >= WINDOW_SECONDS:
                del self._contests[key]

    def forget(self, key: Key) -> None:
        with self._lock:
            self._contests.pop(key, None)

    def contested(self, keys: list[Key]) -> list[tuple[Key, Contest]]:
        with self._lock:
            return [
                (key, self._contests[key]) for key in keys if key in self._contests and self._contests[key].contested
            ]

    def next_look(self, keys: list[Key], now: float) -> float | None:
        """Seconds until a contested child needs a look: its pending restore, or the end of the contest."""
        with self._lock:
            times = [
                contest.due() if contest.pending else contest.last_restore + WINDOW_SECONDS
                for key in keys
                if (contest := self._contests.get(key)) is not None and contest.contested
            ]
        return max(min(times) - now, 0.1) if times else None
