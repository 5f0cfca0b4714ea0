"""The ranking model: embeddings for sparse fields, projections of dense ones, user-item
interactions and an MLP to one score per candidate.

The user side is computed once per request (and cached across requests); scoring is one
pass over all candidates of one or several requests (`owner` maps candidates to users).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from recmodel_handlers.model.features import FeatureSchema, UserFeatures


@dataclass(frozen=True)
class ModelConfig:
    dim: int = 48
    hidden: tuple[int, ...] = (256, 128)
    # The user and item tables take sparse gradients, trained by row-wise Adagrad (large models:
    # only the rows a batch touches are updated).
    sparse: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(
            dim=int(data["dim"]), hidden=tuple(int(h) for h in data["hidden"]), sparse=bool(data.get("sparse", False))
        )


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class UserTower(nn.Module):
    def __init__(self, schema: FeatureSchema, dim: int, sparse: bool = False) -> None:
        super().__init__()
        self.user = nn.Embedding(schema.user_buckets, dim, sparse=sparse)
        self.segment = nn.Embedding(schema.segment_buckets, dim)
        self.device = nn.Embedding(schema.device_buckets, dim)
        self.query = nn.Embedding(schema.query_buckets, dim, padding_idx=0)
        self.dense = nn.Linear(len(schema.user_dense), dim)
        self.mlp = _mlp([5 * dim, 2 * dim, dim])

    def forward(
        self, user: torch.Tensor, segment: torch.Tensor, device: torch.Tensor, query: torch.Tensor, dense: torch.Tensor
    ) -> torch.Tensor:
        tokens = (query != 0).sum(dim=1, keepdim=True).clamp(min=1)
        query_vec = self.query(query).sum(dim=1) / tokens
        parts = [self.user(user), self.segment(segment), self.device(device), query_vec, self.dense(dense)]
        user_vec: torch.Tensor = torch.relu(self.mlp(torch.cat(parts, dim=1)))
        return user_vec

    def vectors(self, users: list[UserFeatures], device: torch.device | str = "cpu") -> torch.Tensor:
        """The vectors of encoded users (`FeatureEncoder.encode_user`), one row each."""
        fields = ("user", "segment", "device", "query", "dense")
        vectors: torch.Tensor = self(*(torch.cat([getattr(u, name) for u in users]).to(device) for name in fields))
        return vectors


class ItemScorer(nn.Module):
    def __init__(self, schema: FeatureSchema, config: ModelConfig) -> None:
        super().__init__()
        dim = config.dim
        self.item = nn.Embedding(schema.item_buckets, dim, sparse=config.sparse)
        self.category = nn.Embedding(schema.category_buckets, dim)
        self.brand = nn.Embedding(schema.brand_buckets, dim)
        self.dense = nn.Linear(len(schema.item_dense), dim)
        self.mlp = _mlp([6 * dim + 2, *config.hidden, 1])

    def forward(
        self,
        user_vec: torch.Tensor,
        item: torch.Tensor,
        category: torch.Tensor,
        brand: torch.Tensor,
        dense: torch.Tensor,
    ) -> torch.Tensor:
        item_vec = self.item(item)
        category_vec = self.category(category)
        parts = [
            item_vec,
            category_vec,
            self.brand(brand),
            self.dense(dense.to(item_vec.dtype)),
            user_vec * item_vec,
            user_vec * category_vec,
            (user_vec * item_vec).sum(dim=1, keepdim=True),
            (user_vec * category_vec).sum(dim=1, keepdim=True),
        ]
        logits: torch.Tensor = self.mlp(torch.cat(parts, dim=1)).squeeze(1)
        return logits


class RankingModel(nn.Module):
    def __init__(self, schema: FeatureSchema, config: ModelConfig) -> None:
        super().__init__()
        self.schema = schema
        self.config = config
        self.user_tower = UserTower(schema, config.dim, config.sparse)
        self.scorer = ItemScorer(schema, config)

    def forward(
        self,
        user: torch.Tensor,
        segment: torch.Tensor,
        device: torch.Tensor,
        query: torch.Tensor,
        user_dense: torch.Tensor,
        owner: torch.Tensor,
        item: torch.Tensor,
        category: torch.Tensor,
        brand: torch.Tensor,
        item_dense: torch.Tensor,
    ) -> torch.Tensor:
        """Logits, one per candidate; `owner[i]` is the index of candidate i's user."""
        users = self.user_tower(user, segment, device, query, user_dense)
        logits: torch.Tensor = self.scorer(users[owner], item, category, brand, item_dense)
        return logits

    def item_vectors(
        self, item: torch.Tensor, category: torch.Tensor, brand: torch.Tensor, dense: torch.Tensor
    ) -> torch.Tensor:
        """Retrieval's item side, from the scorer's own tables: the item's id, category and
        brand rows plus its projected dense features (price, popularity, ...)."""
        scorer = self.scorer
        vectors: torch.Tensor = (
            scorer.item(item) + scorer.category(category) + scorer.brand(brand) + scorer.dense(dense.to(torch.float32))
        )
        return vectors

    def forward_with_retrieval(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward`'s logits and, for training, the retrieval logits u·v of the same candidates."""
        user, segment, device, query, user_dense, owner, item, category, brand, item_dense = inputs
        users = self.user_tower(user, segment, device, query, user_dense)[owner]
        retrieval = (users * self.item_vectors(item, category, brand, item_dense)).sum(dim=1)
        return self.scorer(users, item, category, brand, item_dense), retrieval

    def id_tables(self) -> dict[str, nn.Embedding]:
        """The user and item tables, by state_dict prefix: the ones that grow with the shop."""
        return {"user_tower.user": self.user_tower.user, "scorer.item": self.scorer.item}

    def parameter_count(self) -> int:
        return sum(p.nelement() for p in self.parameters())

    def flops_per_candidate(self) -> int:
        """Multiply-adds x2 of the per-candidate part (the user tower runs once per request)."""
        flops = 0
        for module in self.scorer.modules():
            if isinstance(module, nn.Linear):
                flops += 2 * module.in_features * module.out_features
        return flops + 6 * self.config.dim
