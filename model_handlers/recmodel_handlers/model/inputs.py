"""The model's input tensors, declared once (TorchRec's `PredictFactory.batching_metadata` is the model).

Every reader of the contract reads this table: `stack_requests` (training, and the transformer
sending features to the predictor), `RankingModel.forward`'s argument order, the predictor's V2
metadata and its checks of what arrives. A tensor is on the user side (one row per request) or
the item side (one row per candidate); `owner[i]` is candidate i's request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from recmodel_handlers.errors import RequestError
from recmodel_handlers.model.features import EncodedRequest, FeatureSchema

Side = Literal["user", "item"]


@dataclass(frozen=True)
class ModelInput:
    name: str
    side: Side
    datatype: str  # the Open Inference Protocol's name for the element type
    dtype: torch.dtype
    width: Callable[[FeatureSchema], int] | None = None  # columns of a 2-D tensor; None: 1-D

    def shape(self, schema: FeatureSchema) -> tuple[int, ...]:
        """-1 is the batch dimension (requests or candidates)."""
        return (-1,) if self.width is None else (-1, self.width(schema))

    @property
    def numpy_dtype(self) -> type[np.generic]:
        return np.int64 if self.dtype == torch.int64 else np.float32


def _int64(name: str, side: Side, width: Callable[[FeatureSchema], int] | None = None) -> ModelInput:
    return ModelInput(name, side, "INT64", torch.int64, width)


def _fp32(name: str, side: Side, width: Callable[[FeatureSchema], int]) -> ModelInput:
    return ModelInput(name, side, "FP32", torch.float32, width)


# In the order RankingModel.forward takes them.
MODEL_INPUTS: tuple[ModelInput, ...] = (
    _int64("user", "user"),
    _int64("segment", "user"),
    _int64("device", "user"),
    _int64("query", "user", lambda s: s.max_query_tokens),
    _fp32("user_dense", "user", lambda s: len(s.user_dense)),
    _int64("owner", "item"),
    _int64("item", "item"),
    _int64("category", "item"),
    _int64("brand", "item"),
    _fp32("item_dense", "item", lambda s: len(s.item_dense)),
)
NAMES = tuple(spec.name for spec in MODEL_INPUTS)
Tensors = dict[str, torch.Tensor]


def stack_requests(requests: Sequence[EncodedRequest]) -> Tensors:
    """Many encoded requests as the model's named inputs."""
    sizes = torch.tensor([len(r.candidates.ids) for r in requests])
    users = [r.user for r in requests]
    items = [r.candidates for r in requests]
    return {
        "user": torch.cat([u.user for u in users]),
        "segment": torch.cat([u.segment for u in users]),
        "device": torch.cat([u.device for u in users]),
        "query": torch.cat([u.query for u in users]),
        "user_dense": torch.cat([u.dense for u in users]),
        "owner": torch.repeat_interleave(torch.arange(len(requests)), sizes),
        "item": torch.cat([c.item for c in items]),
        "category": torch.cat([c.category for c in items]),
        "brand": torch.cat([c.brand for c in items]),
        "item_dense": torch.cat([c.dense for c in items]),
    }


def ordered(tensors: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The tensors as RankingModel.forward's positional arguments."""
    return tuple(tensors[name] for name in NAMES)


def from_arrays(arrays: Mapping[str, np.ndarray], schema: FeatureSchema) -> Tensors:
    """Arrays received over the wire, checked against the declaration: every input present,
    the declared width, sides that agree (as many rows per side, owners in range)."""
    missing = [name for name in NAMES if name not in arrays]
    if missing:
        raise RequestError("inputs", f"missing tensors {', '.join(missing)}")
    tensors: Tensors = {}
    rows: dict[Side, int] = {}
    for spec in MODEL_INPUTS:
        array = np.ascontiguousarray(arrays[spec.name], dtype=spec.numpy_dtype)
        want = spec.shape(schema)
        if array.ndim != len(want) or (len(want) == 2 and array.shape[1] != want[1]):
            raise RequestError(spec.name, f"must have shape {list(want)} (-1: any), got {list(array.shape)}")
        if rows.setdefault(spec.side, array.shape[0]) != array.shape[0]:
            raise RequestError(
                spec.name, f"has {array.shape[0]} rows; the other {spec.side} tensors have {rows[spec.side]}"
            )
        tensors[spec.name] = torch.from_numpy(array)
    owner = tensors["owner"]
    if len(owner) and (int(owner.min()) < 0 or int(owner.max()) >= rows["user"]):
        raise RequestError("owner", f"must index the {rows['user']} user rows")
    return tensors
