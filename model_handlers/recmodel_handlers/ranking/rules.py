"""The request's rules over scored candidates, applied greedily from the highest score down:
exclusions, out-of-stock items, caps per category and per brand, a seller's share of the
slots, then top-K. A candidate a rule passes over is recorded with that rule's name, so an
explanation can say why a higher-scored item is not in the list."""

from __future__ import annotations

from typing import Any

import numpy as np

from recmodel_handlers.model.features import CandidateFeatures, RankingRules

EXCLUDED, OUT_OF_STOCK = "exclude", "inStock"


def _is_plain(candidates: CandidateFeatures, rules: RankingRules) -> bool:
    return (
        not rules.exclude
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


def rank_items(
    candidates: CandidateFeatures,
    scores: np.ndarray,
    rules: RankingRules,
    passed_over: list[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Items sorted by score, highest first, honouring the rules. `passed_over` gets (id, rule)
    for each candidate a rule kept out before the list was full. An empty value
    (no category, brand or seller given) is never capped."""
    ids = candidates.ids
    order = np.argsort(-scores, kind="stable")
    if _is_plain(candidates, rules):
        top = order[: rules.top_k]
        return [{"id": ids[i], "score": round(float(scores[i]), 6)} for i in top.tolist()]
    out_of_stock = set(candidates.out_of_stock)
    caps = _caps(candidates, rules)
    counts: list[dict[str, int]] = [{} for _ in caps]
    items: list[dict[str, Any]] = []
    for i in order.tolist():
        item_id = ids[i]
        rule = EXCLUDED if item_id in rules.exclude else OUT_OF_STOCK if i in out_of_stock else None
        if rule is None:
            for (name, values, cap), count in zip(caps, counts, strict=True):
                value = values[i]
                if value and count.get(value, 0) >= cap:
                    rule = name
                    break
        if rule is not None:
            if passed_over is not None:
                passed_over.append((item_id, rule))
            continue
        for (_, values, _), count in zip(caps, counts, strict=True):
            if values[i]:
                count[values[i]] = count.get(values[i], 0) + 1
        items.append({"id": item_id, "score": round(float(scores[i]), 6)})
        if len(items) >= rules.top_k:
            break
    return items
