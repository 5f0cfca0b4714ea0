"""Request batching across concurrent requests: one forward pass for many requests.

A batch closes when it holds `max_batch_size` requests, when `max_latency_ms` passed since
its first request, or at once when no other request is on its way (so a lone request never
waits). Scoring runs on one worker thread, so the event loop keeps parsing new requests
while the model computes.

Admission: the batcher knows the work it holds (in candidates, say) and how fast it gets
through work, so it can say how long a newcomer would wait. `admit` refuses work that would
wait longer than a budget (the caller answers 503) unless nothing is waiting at all, so a
replica under 4x its capacity answers the requests it takes as fast as it would unloaded,
instead of answering all of them late. A request whose caller gave up (deadline) before its
batch formed is dropped unscored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from recmodel_handlers.errors import Overloaded

T = TypeVar("T")
R = TypeVar("R")


SCORING_NICENESS = 5


def _yield_to_the_event_loop() -> None:
    """The scoring thread runs a little below the event loop (Linux schedules threads, and nice
    is per thread): when both want the core, the loop answers first, so a refusal or a request's
    parsing does not wait behind a forward pass; scoring still gets every cycle the loop leaves."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: as before
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SCORING_NICENESS)


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        process: Callable[[list[T]], list[R]],
        max_batch_size: int,
        max_latency_ms: float,
        in_flight: Callable[[], int] = lambda: 0,
        on_batch: Callable[[int], None] = lambda size: None,
        weight: Callable[[T], float] = lambda item: 1.0,
    ) -> None:
        self._process = process
        self.max_batch_size = max(1, max_batch_size)
        self.max_latency = max(0.0, max_latency_ms) / 1000.0
        self._in_flight = in_flight
        self._on_batch = on_batch
        self._weight = weight
        self.queued_weight = 0.0  # submitted and not answered yet
        self.rate: float | None = None  # weight per second, moving average over batches
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="recmodel-score", initializer=_yield_to_the_event_loop
        )

    def estimated_wait(self) -> float:
        return self.queued_weight / self.rate if self.rate else 0.0

    def admit(self, budget_seconds: float) -> None:
        wait = self.estimated_wait()
        if self.queued_weight > 0 and wait > budget_seconds:
            raise Overloaded(wait, budget_seconds)

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run())
        future: asyncio.Future[R] = loop.create_future()
        weight = self._weight(item)
        self.queued_weight += weight
        self._queue.put_nowait((item, future))
        try:
            return await future
        finally:
            self.queued_weight -= weight

    async def _collect(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> list[tuple[T, asyncio.Future[R]]]:
        loop = asyncio.get_running_loop()
        batch = [await queue.get()]
        deadline = loop.time() + self.max_latency
        while len(batch) < self.max_batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or self._in_flight() <= len(batch):
                break  # nobody else is coming, or waited long enough
            try:
                batch.append(await asyncio.wait_for(queue.get(), timeout=remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [entry for entry in await self._collect(self._queue) if not entry[1].done()]
            if not batch:
                continue  # every caller gave up: nothing to compute
            self._on_batch(len(batch))
            items = [item for item, _ in batch]
            started = loop.time()
            try:
                results = await loop.run_in_executor(self._executor, self._process, items)
                self._observe(sum(map(self._weight, items)), loop.time() - started)
            except Exception as error:  # each waiting request gets the failure, the worker lives on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _observe(self, weight: float, seconds: float) -> None:
        sample = weight / max(seconds, 1e-6)
        self.rate = sample if self.rate is None else 0.8 * self.rate + 0.2 * sample

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
