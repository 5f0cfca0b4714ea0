"""Another writer that keeps changing fields we own: noticed, named, and answered with backoff.

A change someone else makes to a field we apply is put back at once, twice in a row (a person's
`kubectl scale`, an edit by hand). A third within `WINDOW_SECONDS` is a contest: from then on
the child is restored `BASE_DELAY` seconds after the last restore, the delay doubling each time
up to `MAX_DELAY`, and the RecModel says who the other writer is. The desired state is always
the one restored: the field is never handed over. Once the child has stayed as we apply it for
`WINDOW_SECONDS`, the contest is over and the delay starts from the beginning again.

Pure: the caller passes the clock (seconds, monotonic) in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

WINDOW_SECONDS = 30.0
FREE_REPAIRS = 2
BASE_DELAY = 10.0
MAX_DELAY = 300.0

Key = tuple[str, str, str]  # (plural, namespace, name) of the child


@dataclass
class Contest:
    repairs: list[float] = field(default_factory=list)  # when foreign changes were put back
    delay: float = 0.0  # 0 while uncontested
    writers: dict[str, list[str]] = field(default_factory=dict)  # manager -> fields

    @property
    def contested(self) -> bool:
        return self.delay > 0

    def due(self) -> float:
        return self.repairs[-1] + self.delay if self.repairs else 0.0


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
            if not contest.contested:
                contest.repairs = [t for t in contest.repairs if now - t < WINDOW_SECONDS]
                if len(contest.repairs) >= FREE_REPAIRS:
                    contest.delay = BASE_DELAY
            wait = contest.due() - now if contest.contested else 0.0
            if wait > 0:
                return wait
            if contest.contested:
                contest.delay = min(contest.delay * 2, MAX_DELAY)
            contest.repairs = [*contest.repairs, now][-FREE_REPAIRS:]
            return 0.0

    def unchanged(self, key: Key, now: float) -> None:
        """The child is as we apply it: a contest ends once it has stayed so for the window."""
        with self._lock:
            contest = self._contests.get(key)
            if contest is not None and (not contest.repairs or now - contest.repairs[-1] >= WINDOW_SECONDS):
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
        """Seconds until a contested child needs a look: its restore, or the end of the contest."""
        with self._lock:
            times = [
                due if (due := contest.due()) > now else contest.repairs[-1] + WINDOW_SECONDS
                for key in keys
                if (contest := self._contests.get(key)) is not None and contest.contested
            ]
        return max(min(times) - now, 0.1) if times else None
