"""Why an item ranks where it does: exact Shapley values over feature groups.

Each group (the user, the context, the item id, its category, brand, price and each dense
feature) is either present or replaced by its "missing" value, the same one the features
give an absent field (bucket 0, or the training mean for a number). With 9 groups there are
512 coalitions; every coalition of every explained item is scored in one batched forward
pass (the user side once per user/context coalition), then Shapley's formula weighs the
marginal contributions.

Why Shapley over groups and not occlusion or gradients: the values add up *exactly* to the
score minus the score with every group missing (Shapley's efficiency property, up to float
rounding), so a reader can trust that the numbers explain the whole difference; occluding one
group at a time does not add up, and integrated gradients only approximately (and not through
embedding lookups). The cost is bounded: 512 x K rows, ~30 ms for K = 10 on one CPU core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recmodel_handlers.model.features import EncodedRequest
from recmodel_handlers.model.network import RankingModel

USER_GROUPS = ("user", "context")
ITEM_GROUPS = ("item", "category", "brand")
MAX_EXPLAINED = 50  # items per request; beyond that the top ones are explained
EXPLAIN_METHOD = "shapley-over-feature-groups"


@dataclass
class Explanation:
    groups: list[str]
    baseline: np.ndarray  # [K] score with every group missing
    full: np.ndarray  # [K] score with every group present (the served score)
    contributions: np.ndarray  # [K, G]

    def item(self, k: int) -> dict[str, Any]:
        return {
            "baseline": round(float(self.baseline[k]), 6),
            "contributions": {g: round(float(v), 6) for g, v in zip(self.groups, self.contributions[k], strict=True)},
        }


def groups_of(model: RankingModel) -> list[str]:
    return [*USER_GROUPS, *ITEM_GROUPS, *model.schema.item_dense]


def _shapley_weights(n: int) -> np.ndarray:
    """weight[size] = size! (n - size - 1)! / n!"""
    return np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])


@torch.inference_mode()
def explain(model: RankingModel, request: EncodedRequest, rows: list[int], device: torch.device) -> Explanation:
    """Shapley values of each group for the candidates at `rows` of the request."""
    groups = groups_of(model)
    n = len(groups)
    coalitions = np.arange(2**n)
    present = ((coalitions[:, None] >> np.arange(n)) & 1).astype(bool)  # [C, G]
    k = len(rows)
    user, candidates = request.user, request.candidates

    # The user side: one vector per (user present, context present).
    variants = np.array([[u, c] for c in (0, 1) for u in (0, 1)], dtype=bool)  # index = u + 2c
    keep_user = torch.from_numpy(variants[:, 0]).to(device)
    keep_context = torch.from_numpy(variants[:, 1]).to(device)
    user_vectors = model.user_tower(
        torch.where(keep_user, user.user.to(device).expand(4), 0),
        torch.where(keep_user, user.segment.to(device).expand(4), 0),
        torch.where(keep_context, user.device.to(device).expand(4), 0),
        torch.where(keep_context[:, None], user.query.to(device).expand(4, -1), 0),
        torch.where(keep_user[:, None], user.dense.to(device).expand(4, -1), 0.0),
    )
    variant = torch.from_numpy(present[:, 0].astype(np.int64) + 2 * present[:, 1].astype(np.int64)).to(device)

    index = torch.tensor(rows, device=device)
    mask = torch.from_numpy(present).to(device)  # [C, G]

    def masked(values: torch.Tensor, group: int) -> torch.Tensor:  # [K] ids -> [C*K]
        return torch.where(mask[:, group, None], values.to(device)[index][None, :], 0).reshape(-1)

    dense = candidates.dense.to(device)[index]  # [K, D], 0 = the training mean
    dense_mask = mask[:, len(USER_GROUPS) + len(ITEM_GROUPS) :]  # [C, D]
    logits = model.scorer(
        user_vectors[variant].repeat_interleave(k, dim=0),
        masked(candidates.item, 2),
        masked(candidates.category, 3),
        masked(candidates.brand, 4),
        (dense[None, :, :] * dense_mask[:, None, :]).reshape(-1, dense.shape[1]),
    )
    scores = torch.sigmoid(logits.float()).reshape(len(coalitions), k).cpu().numpy().astype(np.float64)

    weights = _shapley_weights(n)
    sizes = present.sum(axis=1)
    contributions = np.zeros((k, n))
    for g in range(n):
        without = coalitions[~present[:, g]]
        gain = scores[without | (1 << g)] - scores[without]  # [C/2, K]
        contributions[:, g] = (weights[sizes[without]][:, None] * gain).sum(axis=0)
    return Explanation(groups=groups, baseline=scores[0], full=scores[-1], contributions=contributions)
