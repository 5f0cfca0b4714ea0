"""Pure pieces of the ranking core: the rules, the cache, the quality metrics, the batcher."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from recmodel_handlers.model.features import RankingRules
from recmodel_handlers.ranking.batching import MicroBatcher
from recmodel_handlers.ranking.cache import LruTtlCache
from recmodel_handlers.ranking.quality import auc, ndcg_at_k
from recmodel_handlers.ranking.rules import rank_items


def test_rank_items_applies_exclusions_cap_and_top_k() -> None:
    ids = ["a", "b", "c", "d", "e"]
    categories = ["x", "x", "x", "y", "y"]
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    items = rank_items(ids, categories, scores, RankingRules(top_k=3, exclude=frozenset({"a"}), max_per_category=1))
    assert [i["id"] for i in items] == ["b", "d"]
    assert [i["id"] for i in rank_items(ids, categories, scores, RankingRules(top_k=2))] == ["a", "b"]


def test_cache_expires_and_evicts() -> None:
    now = [0.0]
    cache: LruTtlCache[int] = LruTtlCache(max_entries=2, ttl_seconds=10, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # evicts the least recently used: b
    assert cache.get("b") is None and cache.get("c") == 3
    now[0] = 11
    assert cache.get("a") is None and cache.hits == 2 and cache.misses == 2
    assert LruTtlCache[int](0, 10).get("x") is None


def test_metrics_on_known_cases() -> None:
    gains = np.array([3.0, 2.0, 0.0])
    assert ndcg_at_k(np.array([0.9, 0.5, 0.1]), gains, 3) == pytest.approx(1.0)
    assert ndcg_at_k(np.array([0.1, 0.5, 0.9]), gains, 3) < 0.7
    assert auc(np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 0, 1, 0])) == 1.0
    assert auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5


def test_batcher_groups_concurrent_requests_and_keeps_answers_apart() -> None:
    sizes: list[int] = []
    in_flight = [0]

    def process(items: list[int]) -> list[int]:
        return [i * 10 for i in items]

    async def scenario() -> list[int]:
        batcher = MicroBatcher(
            process, max_batch_size=8, max_latency_ms=50, in_flight=lambda: in_flight[0], on_batch=sizes.append
        )
        in_flight[0] = 20
        results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        in_flight[0] = 1
        alone = await batcher.submit(99)
        batcher.close()
        return [*results, alone]

    results = asyncio.run(scenario())
    assert results == [i * 10 for i in range(20)] + [990]
    assert sum(sizes) == 21 and max(sizes) <= 8 and len(sizes) < 21
    assert sizes[-1] == 1  # a lone request is not held back
