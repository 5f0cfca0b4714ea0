"""Feature tensors on the wire between the transformer and the predictor (KServe V2 JSON)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recmodel_handlers.errors import RequestError

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
