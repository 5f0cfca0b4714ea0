"""Feature tensors on the wire between the transformer and the predictor (KServe V2 JSON)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recmodel_handlers.errors import RequestError
from recmodel_handlers.features import EncodedRequest

# name -> (V2 datatype, numpy dtype)
TENSORS: dict[str, tuple[str, Any]] = {
    "user": ("INT64", np.int64),
    "segment": ("INT64", np.int64),
    "device": ("INT64", np.int64),
    "query": ("INT64", np.int64),
    "user_dense": ("FP32", np.float32),
    "owner": ("INT64", np.int64),
    "item": ("INT64", np.int64),
    "category": ("INT64", np.int64),
    "brand": ("INT64", np.int64),
    "item_dense": ("FP32", np.float32),
}


def to_tensors(requests: list[EncodedRequest]) -> dict[str, torch.Tensor]:
    sizes = torch.tensor([len(r.candidates.ids) for r in requests])
    return {
        "user": torch.cat([r.user.user for r in requests]),
        "segment": torch.cat([r.user.segment for r in requests]),
        "device": torch.cat([r.user.device for r in requests]),
        "query": torch.cat([r.user.query for r in requests]),
        "user_dense": torch.cat([r.user.dense for r in requests]),
        "owner": torch.repeat_interleave(torch.arange(len(requests)), sizes),
        "item": torch.cat([r.candidates.item for r in requests]),
        "category": torch.cat([r.candidates.category for r in requests]),
        "brand": torch.cat([r.candidates.brand for r in requests]),
        "item_dense": torch.cat([r.candidates.dense for r in requests]),
    }


def to_v2_inputs(tensors: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    return [
        {"name": name, "datatype": TENSORS[name][0], "shape": list(value.shape), "data": value.flatten().tolist()}
        for name, value in tensors.items()
    ]


def from_v2_inputs(inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    missing = [name for name in TENSORS if name not in inputs]
    if missing:
        raise RequestError("inputs", f"missing tensors {', '.join(missing)}")
    return {name: torch.from_numpy(np.ascontiguousarray(inputs[name], dtype=TENSORS[name][1])) for name in TENSORS}
