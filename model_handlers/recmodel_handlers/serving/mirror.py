"""Mirroring to a canary: a share of the requests this (stable) server answers is sent again to
the canary model, in the background; the canary's rankings are only compared with ours, never
returned. Each document's agreement (`agreement.ranking_agreement`) goes to the
`recmodel_shadow_agreement` histogram, which the operator's canary analysis reads from
Prometheus.

The copy never slows or fails the request it mirrors: it starts after the answer is ready, at
most MAX_IN_FLIGHT copies are under way (more are dropped and counted), and each has its own
timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import httpx
import orjson

from recmodel_handlers.serving import metrics as m
from recmodel_handlers.serving.agreement import ranking_agreement

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 8
TIMEOUT_SECONDS = 5.0


def _ids(result: dict[str, Any]) -> list[str]:
    return [str(item["id"]) for item in result.get("items", [])]


class Mirror:
    def __init__(self, url: str, model: str, percent: float, rng: random.Random | None = None) -> None:
        self.endpoint = f"{url.rstrip('/')}/v1/models/{model}:predict"
        self.model = model
        self.share = percent / 100.0
        self.rng = rng or random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def offer(self, docs: list[Any], ours: list[dict[str, Any]]) -> None:
        """Maybe mirrors the documents just ranked (`ours`: our results, in order)."""
        if not docs or self.rng.random() >= self.share:
            return
        if len(self._tasks) >= MAX_IN_FLIGHT:
            m.SHADOW_REQUESTS.labels(model=self.model, result="dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._compare(docs, [_ids(r) for r in ours]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _compare(self, docs: list[Any], ours: list[list[str]]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT_SECONDS)
        try:
            response = await self._client.post(
                self.endpoint, content=orjson.dumps({"instances": docs}), headers={"content-type": "application/json"}
            )
            response.raise_for_status()
            theirs = [_ids(r) for r in orjson.loads(response.content)["predictions"]]
            if len(theirs) != len(ours):
                raise ValueError(f"{len(theirs)} rankings for {len(ours)} documents")
        except (httpx.HTTPError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as error:
            m.SHADOW_REQUESTS.labels(model=self.model, result="error").inc()
            log.warning("mirrored request to %s failed: %s", self.endpoint, error)
            return
        for reference, candidate in zip(ours, theirs, strict=True):
            m.SHADOW_AGREEMENT.labels(model=self.model).observe(ranking_agreement(reference, candidate))
        m.SHADOW_REQUESTS.labels(model=self.model, result="compared").inc()
