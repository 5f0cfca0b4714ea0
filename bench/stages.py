"""The compute floor: what the hardware allows for the model's arithmetic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from recmodel_handlers.model.package import load_package


def peak_matmul_gflops(dtype: torch.dtype, size: int = 2048, repeat: int = 10) -> float:
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeat):
        a @ b
    seconds = (time.perf_counter() - started) / repeat
    return 2 * size**3 / seconds / 1e9


def compute_floor(model_dir: Path, forward_ms: float, candidates: int = 1000) -> dict[str, Any]:
    model = load_package(model_dir).model
    flops = model.flops_per_candidate()
    fp32 = peak_matmul_gflops(torch.float32)
    bf16 = peak_matmul_gflops(torch.bfloat16)
    return {
        "flops_per_candidate": flops,
        "peak_gflops_fp32": fp32,
        "peak_gflops_bf16": bf16,
        "floor_ms_fp32": flops * candidates / (fp32 * 1e9) * 1000,
        "floor_ms_bf16": flops * candidates / (bf16 * 1e9) * 1000,
        "forward_ms": forward_ms,
    }
