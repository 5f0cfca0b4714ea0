"""Optimizations as settings of the core: precision (fp32/bf16/fp16/int8; int8 is int8 MLP
weights and activations plus row-wise int8 user and item tables), compilation, and the
quality gate that refuses a precision losing more NDCG@K than allowed."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from recmodel_handlers.model.embeddings import Int8RowwiseEmbedding, SharedLookup, quantize_rows
from recmodel_handlers.model.features import FeatureEncoder
from recmodel_handlers.model.network import RankingModel
from recmodel_handlers.ranking.quality import K, gains_of, mean_ndcg, score_documents

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Int8Linear(nn.Module):
    """int8 weights (per output channel) and int8 activations (per row, computed on the fly),
    multiplied in integers by torch._int_mm and rescaled: the dynamic int8 scheme, written on
    today's ops rather than the deprecated torch.ao.quantization.quantize_dynamic."""

    weight_t: torch.Tensor
    weight_scale: torch.Tensor
    bias: torch.Tensor

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.register_buffer("weight_t", torch.round(weight / scale[:, None]).to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", scale)
        self.register_buffer(
            "bias", linear.bias.detach().float() if linear.bias is not None else torch.zeros(weight.shape[0])
        )
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        rows = x.shape[0]
        x_scale = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0
        x_int = torch.round(x / x_scale).to(torch.int8)
        if rows <= 16:  # torch._int_mm needs more than 16 rows
            x_int = torch.cat([x_int, x_int.new_zeros(17 - rows, x_int.shape[1])])
        product = torch._int_mm(x_int, self.weight_t)[:rows]
        return product.float() * x_scale * self.weight_scale + self.bias


def _quantize_linears(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child))
        else:
            _quantize_linears(child)


class CastOutput(nn.Module):
    """Runs a lower-precision scorer and hands fp32 scores back."""

    def __init__(self, scorer: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.scorer = scorer
        self.dtype = dtype

    def forward(self, user_vec: torch.Tensor, *items: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = self.scorer(user_vec.to(self.dtype), *items).float()
        return scores


def with_precision(
    model: RankingModel, precision: str, int8_tables: dict[str, dict[str, torch.Tensor]] | None = None
) -> RankingModel:
    """A copy of the model whose per-candidate scorer runs in `precision` (the user tower,
    run once per request, stays fp32).

    The user and item tables are never copied (they are most of a large model's bytes):
    int8 reads them row-wise quantized (`int8_tables`, the package's, or quantized here when
    it has none); bf16/fp16 look rows up in the fp32 tables and cast them."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    tables = model.id_tables()
    optimized = copy.deepcopy(model, memo={id(t.weight): t.weight for t in tables.values()})
    if precision in DTYPES:
        dtype = DTYPES[precision]
        optimized.scorer.item = SharedLookup(tables["scorer.item"], dtype)  # type: ignore[assignment]
        optimized.scorer = CastOutput(optimized.scorer.to(dtype), dtype)  # type: ignore[assignment]
    elif precision == "int8":
        quantized = int8_tables or {name: quantize_rows(t.weight.detach()) for name, t in tables.items()}
        optimized.user_tower.user = Int8RowwiseEmbedding(quantized["user_tower.user"])  # type: ignore[assignment]
        optimized.scorer.item = Int8RowwiseEmbedding(quantized["scorer.item"])  # type: ignore[assignment]
        _quantize_linears(optimized.scorer.mlp)
    return optimized.eval()


def compiled(model: RankingModel) -> RankingModel:
    """torch.compile of the scorer, with shapes dynamic in the number of candidates."""
    model.scorer = torch.compile(model.scorer, dynamic=True)  # type: ignore[assignment]
    return model


@dataclass(frozen=True)
class GateResult:
    precision: str
    reference_ndcg: float
    ndcg: float
    drop: float
    max_drop: float
    order_changed: bool
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def describe(self) -> str:
        verdict = "passed" if self.passed else "refused"
        return (
            f"quality gate {verdict} for {self.precision}: NDCG@{K} {self.ndcg:.4f} vs fp32 {self.reference_ndcg:.4f} "
            f"(drop {self.drop:.4f}, limit {self.max_drop:.4f})"
        )


def quality_gate(
    reference: RankingModel,
    candidate: RankingModel,
    precision: str,
    encoder: FeatureEncoder,
    validation: Sequence[dict[str, Any]],
    max_drop: float,
) -> GateResult:
    """NDCG@K of `candidate` against fp32 on the saved validation set.

    A limit of 0 means "no change allowed": any change in ranking order is refused too,
    even one that happens not to lower NDCG.
    """
    gains = [gains_of(doc) for doc in validation]
    reference_scores = score_documents(reference, encoder, validation)
    candidate_scores = score_documents(candidate, encoder, validation)
    reference_ndcg = mean_ndcg(reference_scores, gains, K)
    ndcg = mean_ndcg(candidate_scores, gains, K)
    drop = max(0.0, reference_ndcg - ndcg)
    order_changed = any(
        not np.array_equal(np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable"))
        for a, b in zip(reference_scores, candidate_scores, strict=True)
    )
    passed = drop <= max_drop and not (max_drop == 0 and order_changed)
    return GateResult(precision, reference_ndcg, ndcg, drop, max_drop, order_changed, passed)
