"""The request's rules over scored candidates: exclusions, a per-category cap, top-K."""

from __future__ import annotations

from typing import Any

import numpy as np

from recmodel_handlers.model.features import RankingRules


def rank_items(ids: list[str], categories: list[str], scores: np.ndarray, rules: RankingRules) -> list[dict[str, Any]]:
    """Items sorted by score, highest first, honouring the rules."""
    order = np.argsort(-scores, kind="stable")
    if not rules.exclude and rules.max_per_category is None:
        top = order[: rules.top_k]
        return [{"id": ids[i], "score": round(float(scores[i]), 6)} for i in top.tolist()]
    items: list[dict[str, Any]] = []
    per_category: dict[str, int] = {}
    cap = rules.max_per_category
    for i in order.tolist():
        item_id = ids[i]
        if item_id in rules.exclude:
            continue
        if cap is not None:
            category = categories[i]
            if per_category.get(category, 0) >= cap:
                continue
            per_category[category] = per_category.get(category, 0) + 1
        items.append({"id": item_id, "score": round(float(scores[i]), 6)})
        if len(items) >= rules.top_k:
            break
    return items
