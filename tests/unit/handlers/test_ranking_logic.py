"""Pure pieces of the ranking core: the rules, the cache, the quality metrics, the batcher."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from recmodel_handlers.errors import RequestError
from recmodel_handlers.model.features import CandidateFeatures, RankingRules
from recmodel_handlers.ranking.batching import MicroBatcher
from recmodel_handlers.ranking.cache import LruTtlCache
from recmodel_handlers.ranking.quality import auc, ndcg_at_k
from recmodel_handlers.ranking.rules import rank_items


def _candidates(
    ids: list[str],
    categories: list[str],
    brands: list[str] | None = None,
    sellers: list[str] | None = None,
    out_of_stock: list[int] | None = None,
) -> CandidateFeatures:
    empty = torch.zeros(len(ids), dtype=torch.int64)
    return CandidateFeatures(
        ids=ids,
        categories=categories,
        brands=brands or [""] * len(ids),
        item=empty,
        category=empty,
        brand=empty,
        dense=torch.zeros(len(ids), 4),
        sellers=sellers,
        out_of_stock=out_of_stock or [],
    )


def _ranked(
    candidates: CandidateFeatures, scores: list[float], rules: RankingRules
) -> tuple[list[str], list[tuple[str, str]]]:
    passed: list[tuple[str, str]] = []
    items = rank_items(candidates, np.array(scores), rules, passed)
    return [i["id"] for i in items], passed


def test_rank_items_applies_exclusions_cap_and_top_k() -> None:
    candidates = _candidates(["a", "b", "c", "d", "e"], ["x", "x", "x", "y", "y"])
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    ids, passed = _ranked(candidates, scores, RankingRules(top_k=3, exclude=frozenset({"a"}), max_per_category=1))
    assert ids == ["b", "d"]
    assert passed == [("a", "exclude"), ("c", "maxPerCategory"), ("e", "maxPerCategory")]
    assert _ranked(candidates, scores, RankingRules(top_k=2)) == (["a", "b"], [])


def test_brand_cap_seller_share_and_stock_each_name_their_rule() -> None:
    ids = [f"i{n}" for n in range(8)]
    candidates = _candidates(
        ids,
        categories=[""] * 8,  # no category: never capped
        brands=["p", "p", "q", "q", "r", "", "", "s"],
        sellers=["s1", "s1", "s1", "s2", "s2", "s1", "s3", "s3"],
        out_of_stock=[2],
    )
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    # top 4, one item per brand, no seller above half the slots (2 of 4), i2 out of stock
    rules = RankingRules(top_k=4, max_per_category=1, max_per_brand=1, max_seller_share=0.5)
    got, passed = _ranked(candidates, scores, rules)
    assert got == ["i0", "i3", "i4", "i5"]
    assert passed == [("i1", "maxPerBrand"), ("i2", "inStock")]
    # every rule holds on the answer
    sellers = [candidates.sellers[ids.index(i)] for i in got]  # type: ignore[index]
    assert max(sellers.count(s) for s in set(sellers)) <= rules.seller_cap() == 2
    # a quarter of 4 slots: one per seller; the list ends short when the rules leave no more
    got, passed = _ranked(candidates, scores, RankingRules(top_k=4, max_seller_share=0.25))
    assert got == ["i0", "i3", "i6"]
    assert passed == [
        ("i1", "maxSellerShare"),
        ("i2", "inStock"),
        ("i4", "maxSellerShare"),
        ("i5", "maxSellerShare"),
        ("i7", "maxSellerShare"),
    ]


def test_diversity_picks_unlike_items_by_mmr_and_still_honours_caps() -> None:
    """a, b and c are near copies (one direction), d and e point elsewhere: plain ranking takes
    the copies first; MMR at weight 0.5 takes a, then the unlike d, then e before b."""
    ids = ["a", "b", "c", "d", "e", "f"]
    candidates = _candidates(ids, categories=["x", "x", "x", "y", "z", "y"], out_of_stock=[5])
    scores = [0.9, 0.89, 0.88, 0.6, 0.5, 0.95]
    directions = np.array([[1, 0, 0], [1, 0.01, 0], [1, 0, 0.01], [0, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=np.float32)
    asked: list[list[int]] = []

    def vectors(rows: np.ndarray) -> np.ndarray:
        asked.append(rows.tolist())
        return directions[rows]

    def ranked(rules: RankingRules) -> tuple[list[str], list[tuple[str, str]]]:
        passed: list[tuple[str, str]] = []
        return [i["id"] for i in rank_items(candidates, np.array(scores), rules, passed, vectors)], passed

    assert ranked(RankingRules(top_k=3))[0] == ["a", "b", "c"]  # f scores best but is out of stock
    got, passed = ranked(RankingRules(top_k=3, diversity=0.5))
    assert got == ["a", "d", "e"]
    assert ("f", "inStock") in passed and {("b", "diversity"), ("c", "diversity")} <= set(passed)
    assert sorted(asked[-1]) == [0, 1, 2, 3, 4]  # the pool: what the filters left, best first
    # a cap still holds inside MMR: one item per category, so the copies can never come back
    got, _ = ranked(RankingRules(top_k=5, diversity=0.05, max_per_category=1))
    assert got == ["a", "d", "e"]
    with pytest.raises(RequestError, match="diversity"):
        rank_items(candidates, np.array(scores), RankingRules(top_k=3, diversity=0.5))


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
