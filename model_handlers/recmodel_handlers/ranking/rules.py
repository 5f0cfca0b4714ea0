"""The request's rules over scored candidates, applied greedily from the highest score down:
exclusions, out-of-stock items, caps per category and per brand, a seller's share of the
slots, then top-K. A candidate a rule passes over is recorded with that rule's name, so an
explanation can say why a higher-scored item is not in the list.

With `diversity` d the greedy order is maximal marginal relevance (Carbonell and Goldstein,
1998) instead: each next item maximizes (1 - d)·score - d·(its largest cosine similarity to
the items already chosen), over the item vectors retrieval uses, among the best
POOL_PER_SLOT·topK candidates the filters leave; the caps still hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from recmodel_handlers.errors import RequestError
from recmodel_handlers.model.features import CandidateFeatures, RankingRules

EXCLUDED, OUT_OF_STOCK, DIVERSITY = "exclude", "inStock", "diversity"
POOL_PER_SLOT = 5  # MMR chooses among this many candidates per slot of top-K (at most MAX_POOL)
MAX_POOL = 2000
ItemVectors = Callable[[np.ndarray], np.ndarray]  # candidate positions -> their item vectors


def _is_plain(candidates: CandidateFeatures, rules: RankingRules) -> bool:
    return (
        rules.diversity is None
        and not rules.exclude
        and not candidates.out_of_stock
        and rules.max_per_category is None
        and rules.max_per_brand is None
        and (rules.max_seller_share is None or candidates.sellers is None)
    )


def _caps(candidates: CandidateFeatures, rules: RankingRules) -> list[tuple[str, list[str], int]]:
    """(rule name, each candidate's value, the most items per value) for each cap asked for."""
    caps = [
        ("maxPerCategory", candidates.categories, rules.max_per_category),
        ("maxPerBrand", candidates.brands, rules.max_per_brand),
        ("maxSellerShare", candidates.sellers, rules.seller_cap()),
    ]
    return [(name, values, cap) for name, values, cap in caps if values is not None and cap is not None]


class _Caps:
    """The caps asked for and how many slots each value holds so far."""

    def __init__(self, candidates: CandidateFeatures, rules: RankingRules) -> None:
        self.caps = _caps(candidates, rules)
        self.counts: list[dict[str, int]] = [{} for _ in self.caps]

    def refusing(self, i: int) -> str | None:
        """The name of the cap candidate i would break, if any."""
        for (name, values, cap), count in zip(self.caps, self.counts, strict=True):
            value = values[i]
            if value and count.get(value, 0) >= cap:
                return name
        return None

    def take(self, i: int) -> None:
        for (_, values, _), count in zip(self.caps, self.counts, strict=True):
            if values[i]:
                count[values[i]] = count.get(values[i], 0) + 1


def _filtered(ids: list[str], out_of_stock: set[int], rules: RankingRules, i: int) -> str | None:
    if ids[i] in rules.exclude:
        return EXCLUDED
    return OUT_OF_STOCK if i in out_of_stock else None


def rank_items(
    candidates: CandidateFeatures,
    scores: np.ndarray,
    rules: RankingRules,
    passed_over: list[tuple[str, str]] | None = None,
    vectors: ItemVectors | None = None,
) -> list[dict[str, Any]]:
    """Items sorted by score, highest first, honouring the rules (with `diversity`, in MMR's
    order: `vectors` gives the item vectors). `passed_over` gets (id, rule) for each candidate
    a rule kept out before the list was full. An empty value (no category, brand or seller
    given) is never capped."""
    ids = candidates.ids
    order = np.argsort(-scores, kind="stable")
    if _is_plain(candidates, rules):
        top = order[: rules.top_k]
        return [{"id": ids[i], "score": round(float(scores[i]), 6)} for i in top.tolist()]
    if rules.diversity is not None:
        if vectors is None:
            raise RequestError("diversity", "needs the model's item vectors: send it to the role that scores (all)")
        return _diverse(candidates, scores, rules, order, passed_over, vectors)
    caps, out_of_stock = _Caps(candidates, rules), set(candidates.out_of_stock)
    items: list[dict[str, Any]] = []
    for i in order.tolist():
        rule = _filtered(ids, out_of_stock, rules, i) or caps.refusing(i)
        if rule is not None:
            if passed_over is not None:
                passed_over.append((ids[i], rule))
            continue
        caps.take(i)
        items.append({"id": ids[i], "score": round(float(scores[i]), 6)})
        if len(items) >= rules.top_k:
            break
    return items


def _diverse(
    candidates: CandidateFeatures,
    scores: np.ndarray,
    rules: RankingRules,
    order: np.ndarray,
    passed_over: list[tuple[str, str]] | None,
    vectors: ItemVectors,
) -> list[dict[str, Any]]:
    """MMR over the best candidates the filters leave, honouring the caps."""
    assert rules.diversity is not None
    ids, weight, out_of_stock = candidates.ids, rules.diversity, set(candidates.out_of_stock)
    pool: list[int] = []
    for i in order.tolist():
        rule = _filtered(ids, out_of_stock, rules, i)
        if rule is not None:
            if passed_over is not None:
                passed_over.append((ids[i], rule))
            continue
        pool.append(i)
        if len(pool) >= min(MAX_POOL, POOL_PER_SLOT * rules.top_k):
            break
    if not pool:
        return []
    at = np.array(pool, dtype=np.int64)
    unit = vectors(at).astype(np.float32)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    relevance = (1 - weight) * scores[at].astype(np.float64)
    closest = np.zeros(len(pool))  # each pooled item's largest similarity to the chosen ones
    open_ = np.ones(len(pool), dtype=bool)
    caps = _Caps(candidates, rules)
    chosen: list[int] = []
    while len(chosen) < rules.top_k and open_.any():
        value = np.where(open_, relevance - weight * closest, -np.inf)
        j = int(np.argmax(value))
        open_[j] = False
        i = pool[j]
        rule = caps.refusing(i)
        if rule is not None:
            if passed_over is not None:
                passed_over.append((ids[i], rule))
            continue
        caps.take(i)
        chosen.append(j)
        closest = np.maximum(closest, unit @ unit[j])
    if passed_over is not None and chosen:  # higher-scored items MMR left out for unlike ones
        lowest = min(scores[pool[j]] for j in chosen)
        passed_over += [(ids[pool[j]], DIVERSITY) for j in np.flatnonzero(open_) if scores[pool[j]] > lowest]
    return [{"id": ids[pool[j]], "score": round(float(scores[pool[j]]), 6)} for j in chosen]
