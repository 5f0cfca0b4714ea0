"""What `recmodel train` reports: a model's NDCG@K, recall@K and AUC, beside a popularity baseline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from recmodel_handlers.ranking.quality import K, auc, gains_of, mean_ndcg, recall_at_k

Doc = dict[str, Any]


def evaluate(per_doc_scores: Sequence[np.ndarray], docs: Sequence[Doc]) -> dict[str, float]:
    labels = [np.asarray([float(c.get("label", False)) for c in d["candidates"]]) for d in docs]
    return {
        f"ndcg@{K}": mean_ndcg(per_doc_scores, [gains_of(d) for d in docs], K),
        f"recall@{K}": float(np.mean([recall_at_k(s, y, K) for s, y in zip(per_doc_scores, labels, strict=True)])),
        "auc": auc(np.concatenate(per_doc_scores), np.concatenate(labels)),
    }


def popularity_scores(train_docs: Sequence[Doc], docs: Sequence[Doc]) -> list[np.ndarray]:
    """Baseline: how often the item was clicked in training."""
    clicks: Counter[str] = Counter(c["id"] for d in train_docs for c in d["candidates"] if c.get("label"))
    return [np.asarray([float(clicks.get(c["id"], 0)) for c in d["candidates"]]) for d in docs]
