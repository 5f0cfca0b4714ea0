"""How far two rankings of the same candidates agree: NDCG@K of one ranking, with the other
ranking's order as the ideal. 1.0 when the top K match in order; it falls as the top items
move or leave the top K, most for those at the top."""

from __future__ import annotations

import math
from collections.abc import Sequence

AGREEMENT_AT = 10


def _relevance(reference: Sequence[str], k: int) -> dict[str, float]:
    """Graded relevance from the reference's order: its first item k, its k-th item 1, others 0."""
    return {item: float(k - rank) for rank, item in enumerate(reference[:k])}


def _dcg(items: Sequence[str], relevance: dict[str, float], k: int) -> float:
    return sum(relevance.get(item, 0.0) / math.log2(rank + 2) for rank, item in enumerate(items[:k]))


def ranking_agreement(reference: Sequence[str], candidate: Sequence[str], k: int = AGREEMENT_AT) -> float:
    """NDCG@k of `candidate` judged by `reference` (the stable model's ranking)."""
    k = min(k, len(reference))
    if k == 0:
        return 1.0
    relevance = _relevance(reference, k)
    ideal = _dcg(reference, relevance, k)
    return _dcg(candidate, relevance, k) / ideal
