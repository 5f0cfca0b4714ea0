"""Training on ranking documents, with the serving feature code (`model.features`)."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from recmodel_handlers.model.embeddings import RowWiseAdagrad
from recmodel_handlers.model.features import FeatureEncoder, FeatureSchema, FeatureStats, fit_stats
from recmodel_handlers.model.inputs import stack_requests
from recmodel_handlers.model.network import ModelConfig, RankingModel
from recmodel_handlers.ranking.quality import K, score_documents
from recmodel_handlers.training.evaluate import evaluate, popularity_scores

Doc = dict[str, Any]
SPARSE_LR = 0.05  # row-wise Adagrad's rate for sparse tables
# The retrieval logit (user·(item + category), `RankingModel.retrieval_logits`) is fitted to
# the labels too, at this weight beside the ranker's loss: a two-tower model inside the ranker.
RETRIEVAL_WEIGHT = 0.5


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
    rest by Adam. The loss is the ranker's plus the retrieval logit's (`RETRIEVAL_WEIGHT`)."""
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
            logits, retrieval = model.forward_with_retrieval(*data.model_inputs(batch))
            labels = data.labels[batch]
            loss = loss_fn(logits, labels) + RETRIEVAL_WEIGHT * loss_fn(retrieval, labels)
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
