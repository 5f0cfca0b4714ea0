"""Ranking quality: NDCG@K, recall@K and AUC, and a model's scores of documents.

What the quality gate measures a precision by, and what training reports (`training.evaluate`):
one definition for both, so the server never imports training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from recmodel_handlers.model.features import FeatureEncoder
from recmodel_handlers.model.inputs import ordered, stack_requests

K = 10  # NDCG@K, recall@K: the cut every report and the quality gate use
Doc = dict[str, Any]


@torch.inference_mode()
def score_documents(
    model: nn.Module, encoder: FeatureEncoder, docs: Sequence[Doc], chunk: int = 64
) -> list[np.ndarray]:
    """Scores per document (float64), in the order of its candidates."""
    out: list[np.ndarray] = []
    for start in range(0, len(docs), chunk):
        part = docs[start : start + chunk]
        tensors = stack_requests([encoder.encode(doc) for doc in part])
        scores = model(*ordered(tensors)).float().numpy().astype(np.float64)
        out.extend(np.split(scores, np.cumsum([len(d["candidates"]) for d in part])[:-1]))
    return out


def gains_of(doc: Doc) -> np.ndarray:
    """True relevance where the generator knows it, else the observed label."""
    return np.asarray([float(c.get("relevance", c.get("label", 0.0))) for c in doc["candidates"]])


def ndcg_at_k(scores: np.ndarray, gains: np.ndarray, k: int) -> float:
    order = np.argsort(-scores, kind="stable")[:k]
    discounts = 1.0 / np.log2(np.arange(2, len(order) + 2))
    dcg = float(np.sum(gains[order] * discounts))
    ideal = np.sort(gains)[::-1][:k]
    idcg = float(np.sum(ideal * discounts[: len(ideal)]))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    positives = labels.sum()
    if positives == 0:
        return 0.0
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].sum() / min(positives, k))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    labels = labels.astype(bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return 0.5
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    ranks[order] = np.arange(1, len(scores) + 1)
    # average ranks of ties
    _unique, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for s, c in zip(start[counts > 1], counts[counts > 1], strict=True):
        ranks[order[s : s + c]] = ranks[order[s : s + c]].mean()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def mean_ndcg(per_doc_scores: Sequence[np.ndarray], per_doc_gains: Sequence[np.ndarray], k: int) -> float:
    values = [ndcg_at_k(s, g, k) for s, g in zip(per_doc_scores, per_doc_gains, strict=True)]
    return float(np.mean(values)) if values else 0.0
