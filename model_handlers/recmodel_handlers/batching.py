"""Request batching across concurrent requests: one forward pass for many requests.

A batch closes when it holds `max_batch_size` requests, when `max_latency_ms` passed since
its first request, or at once when no other request is on its way (so a lone request never
waits). Scoring runs on one worker thread, so the event loop keeps parsing new requests
while the model computes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        process: Callable[[list[T]], list[R]],
        max_batch_size: int,
        max_latency_ms: float,
        in_flight: Callable[[], int] = lambda: 0,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._process = process
        self.max_batch_size = max(1, max_batch_size)
        self.max_latency = max(0.0, max_latency_ms) / 1000.0
        self._in_flight = in_flight
        self._on_batch = on_batch
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recmodel-score")

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run())
        future: asyncio.Future[R] = loop.create_future()
        self._queue.put_nowait((item, future))
        return await future

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
            batch = await self._collect(self._queue)
            self._on_batch(len(batch))
            items = [item for item, _ in batch]
            try:
                results = await loop.run_in_executor(self._executor, self._process, items)
            except Exception as error:  # each waiting request gets the failure, the worker lives on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
