"""Training and evaluation on ranking documents, with the serving feature code."""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from recmodel_handlers.embeddings import RowWiseAdagrad
from recmodel_handlers.features import FeatureEncoder, FeatureSchema, FeatureStats, fit_stats, stack_requests
from recmodel_handlers.model import ModelConfig, RankingModel
from recmodel_handlers.quality import auc, mean_ndcg, recall_at_k

Doc = dict[str, Any]
K = 10
SPARSE_LR = 0.05  # row-wise Adagrad's rate for sparse tables


@dataclass(frozen=True)
class SizePreset:
    """`recmodel train --size`: the model's tables and the generated shop they are trained on."""

    dim: int
    user_buckets: int
    item_buckets: int
    sparse: bool
    world_users: int
    world_items: int


SIZES = {
    "small": SizePreset(48, 20_000, 20_000, sparse=False, world_users=600, world_items=3_000),
    # 16M rows x 64 = 1.02B parameters (4.1 GB fp32, 1.1 GB row-wise int8).
    "large": SizePreset(64, 4_000_000, 12_000_000, sparse=True, world_users=20_000, world_items=50_000),
}


@dataclass
class EncodedSet:
    """Documents as stacked tensors: one row per user (doc), one per candidate."""

    user: torch.Tensor
    segment: torch.Tensor
    device: torch.Tensor
    query: torch.Tensor
    user_dense: torch.Tensor
    owner: torch.Tensor
    item: torch.Tensor
    category: torch.Tensor
    brand: torch.Tensor
    item_dense: torch.Tensor
    labels: torch.Tensor

    def model_inputs(self, candidates: torch.Tensor) -> tuple[torch.Tensor, ...]:
        docs, owner = torch.unique(self.owner[candidates], return_inverse=True)
        return (
            self.user[docs],
            self.segment[docs],
            self.device[docs],
            self.query[docs],
            self.user_dense[docs],
            owner,
            self.item[candidates],
            self.category[candidates],
            self.brand[candidates],
            self.item_dense[candidates],
        )


def encode_set(encoder: FeatureEncoder, docs: Sequence[Doc]) -> EncodedSet:
    tensors = stack_requests([encoder.encode(doc) for doc in docs])
    labels = torch.tensor([float(c.get("label", False)) for d in docs for c in d["candidates"]])
    return EncodedSet(**tensors, labels=labels)


@torch.inference_mode()
def score_documents(
    model: nn.Module, encoder: FeatureEncoder, docs: Sequence[Doc], chunk: int = 64
) -> list[np.ndarray]:
    """Scores per document (float64), in the order of its candidates."""
    out: list[np.ndarray] = []
    for start in range(0, len(docs), chunk):
        part = docs[start : start + chunk]
        data = encode_set(encoder, part)
        scores = model(*data.model_inputs(torch.arange(len(data.item)))).float().numpy().astype(np.float64)
        sizes = np.cumsum([len(d["candidates"]) for d in part])[:-1]
        out.extend(np.split(scores, sizes))
    return out


def gains_of(doc: Doc) -> np.ndarray:
    """True relevance where the generator knows it, else the observed label."""
    return np.asarray([float(c.get("relevance", c.get("label", 0.0))) for c in doc["candidates"]])


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


def trained_rows(model: RankingModel, data: EncodedSet) -> dict[str, Any]:
    """Per id table: its rows and how many of them training touched. The others keep their
    initial values (normal(0, 1)): ids that hash there score as an unknown id would."""
    touched = {"user_tower.user": data.user, "scorer.item": data.item}
    return {
        name: {"rows": table.num_embeddings, "trained": int(torch.unique(touched[name]).numel())}
        for name, table in model.id_tables().items()
    }


@dataclass
class TrainResult:
    model: RankingModel
    stats: FeatureStats
    metrics: dict[str, Any]


def fit(
    model: RankingModel,
    data: EncodedSet,
    *,
    epochs: int,
    seed: int,
    batch_size: int,
    lr: float,
    log: Any,
) -> float:
    """Minibatch training of `model` on `data` in place; returns the seconds it took.

    Tables with sparse gradients (`ModelConfig.sparse`) are trained by row-wise Adagrad, the
    rest by Adam."""
    sparse = [table.weight for table in model.id_tables().values() if table.sparse]
    dense = [p for p in model.parameters() if all(p is not s for s in sparse)]
    optimizers: list[torch.optim.Optimizer] = [torch.optim.Adam(dense, lr=lr)]
    if sparse:
        optimizers.append(RowWiseAdagrad(sparse, lr=SPARSE_LR))
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    started = time.monotonic()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(data.item), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = loss_fn(model(*data.model_inputs(batch)), data.labels[batch])
            for optimizer in optimizers:
                optimizer.zero_grad()
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            total += loss.item() * len(batch)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f} ({time.monotonic() - started:.1f}s)")
    model.eval()
    return time.monotonic() - started


def train(
    train_docs: Sequence[Doc],
    test_docs: Sequence[Doc],
    schema: FeatureSchema | None = None,
    config: ModelConfig | None = None,
    epochs: int = 3,
    seed: int = 0,
    batch_size: int = 1024,
    lr: float = 3e-3,
    log: Any = print,
) -> TrainResult:
    torch.manual_seed(seed)
    schema = schema or FeatureSchema()
    config = config or ModelConfig()
    stats = fit_stats(train_docs, schema)
    encoder = FeatureEncoder(schema, stats, max_candidates=100_000)
    data = encode_set(encoder, train_docs)
    model = RankingModel(schema, config)
    seconds = fit(model, data, epochs=epochs, seed=seed, batch_size=batch_size, lr=lr, log=log)
    model_metrics = evaluate(score_documents(model, encoder, test_docs), test_docs)
    baseline = evaluate(popularity_scores(train_docs, test_docs), test_docs)
    metrics = {
        "model": model_metrics,
        "popularity": baseline,
        "parameters": model.parameter_count(),
        "tables": trained_rows(model, data),
        "train_rows": len(data.item),
        "test_documents": len(test_docs),
        "train_seconds": round(seconds, 2),
    }
    return TrainResult(model=model, stats=stats, metrics=metrics)


@dataclass
class RetrainResult:
    model: RankingModel
    metrics: dict[str, Any]  # "model" and "parent" on the new validation documents

    @property
    def regression(self) -> float:
        """How much NDCG@K the new model loses against its parent (negative: it gains)."""
        return float(self.metrics["parent"][f"ndcg@{K}"] - self.metrics["model"][f"ndcg@{K}"])


def retrain(
    parent: RankingModel,
    stats: FeatureStats,
    train_docs: Sequence[Doc],
    validation_docs: Sequence[Doc],
    *,
    epochs: int = 2,
    seed: int = 0,
    batch_size: int = 1024,
    lr: float = 1e-3,
    log: Any = print,
) -> RetrainResult:
    """Warm start: the parent's weights and feature statistics (so its normalization and hash
    buckets stay valid: new user and item ids hash into the same tables) trained further on new
    interactions; both models are then measured on the same new validation documents."""
    torch.manual_seed(seed)
    encoder = FeatureEncoder(parent.schema, stats, max_candidates=100_000)
    model = copy.deepcopy(parent)
    seconds = fit(
        model, encode_set(encoder, train_docs), epochs=epochs, seed=seed, batch_size=batch_size, lr=lr, log=log
    )
    metrics = {
        "model": evaluate(score_documents(model, encoder, validation_docs), validation_docs),
        "parent": evaluate(score_documents(parent, encoder, validation_docs), validation_docs),
        "train_rows": sum(len(d["candidates"]) for d in train_docs),
        "validation_documents": len(validation_docs),
        "train_seconds": round(seconds, 2),
    }
    return RetrainResult(model=model, metrics=metrics)
