"""Embedding tables as large models need them: trained sparsely, stored compressed, never copied.

- `RowWiseAdagrad` trains tables from sparse gradients: one accumulator per row (the mean
  squared gradient), and only the rows a batch touched are read or written, as FBGEMM's
  EXACT_ROWWISE_ADAGRAD does. A billion-parameter table then costs 4 bytes of optimizer
  state per row instead of Adam's two full copies.
- `quantize_rows` / `Int8RowwiseEmbedding`: row-wise int8, each row as uint8 codes with its
  own fp16 scale and bias (row ~= bias + scale * code), FBGEMM's layout for quantized
  embedding bags. 64 dims take 68 bytes instead of 256.
- `SharedLookup`: a table outside a module's tree, so that `.to(dtype)` on a lower-precision
  copy of the model casts what a lookup returns instead of converting (copying) the table.

FBGEMM's own CPU kernels were the first choice: fbgemm-gpu-cpu 1.9.0 from PyPI does not load
with torch 2.15 (undefined symbol c10::report_overflow), so these are written on torch ops.
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import torch
from torch import nn

QUANTIZE_CHUNK_ROWS = 1 << 20  # a 12M-row table is quantized 1M rows (256 MB of fp32) at a time


_MADV_RANDOM, _MADV_DONTNEED = 1, 4  # <sys/mman.h> on Linux


def _madvise(tensor: torch.Tensor, advice: int) -> bool:
    if not sys.platform.startswith("linux") or tensor.device.type != "cpu" or tensor.nbytes < mmap.PAGESIZE:
        return False
    start = tensor.data_ptr() // mmap.PAGESIZE * mmap.PAGESIZE
    length = tensor.data_ptr() + tensor.nbytes - start
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), advice)) == 0


def advise_random(tensor: torch.Tensor) -> bool:
    """Tells the kernel a memory-mapped table is read at random rows: a page fault then reads
    that page, not the device's readahead window around it (8 MB on this machine's disk)."""
    return _madvise(tensor, _MADV_RANDOM)


def release_pages(tensor: torch.Tensor) -> bool:
    """Unmaps a memory-mapped (never written) tensor's pages from this process; they stay in
    the page cache, and a later read maps them again. For tables a replica no longer reads:
    the fp32 ones the quality gate compared an int8 replica against."""
    return _madvise(tensor, _MADV_DONTNEED)


def quantize_rows(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """Row-wise int8 of a [rows, dim] table: {"codes": uint8, "scale": fp16, "bias": fp16}.

    Codes are computed against the fp16-rounded scale and bias, the values dequantization
    will use, so rounding the parameters adds no error of its own."""
    rows, dim = weight.shape
    codes = torch.empty(rows, dim, dtype=torch.uint8)
    scale = torch.empty(rows, dtype=torch.float16)
    bias = torch.empty(rows, dtype=torch.float16)
    with torch.no_grad():
        for start in range(0, rows, QUANTIZE_CHUNK_ROWS):
            part = weight[start : start + QUANTIZE_CHUNK_ROWS].float()
            low = part.amin(dim=1).half()
            step = ((part.amax(dim=1) - low.float()) / 255.0).clamp(min=1e-7).half()
            # A step that rounds to fp16's zero or subnormal range would divide by ~0.
            step = torch.where(step.float() < 1e-7, torch.full_like(step, 1e-7), step)
            q = torch.round((part - low.float()[:, None]) / step.float()[:, None]).clamp(0, 255)
            codes[start : start + len(part)] = q.to(torch.uint8)
            scale[start : start + len(part)] = step
            bias[start : start + len(part)] = low
    return {"codes": codes, "scale": scale, "bias": bias}


def dequantize_rows(table: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    """The fp32 rows `rows` of a `quantize_rows` table."""
    codes = table["codes"][rows].float()
    return codes * table["scale"][rows].float().unsqueeze(-1) + table["bias"][rows].float().unsqueeze(-1)


class Int8RowwiseEmbedding(nn.Module):
    """An nn.Embedding stand-in reading a row-wise int8 table (memory-mapped when loaded so)."""

    codes: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor

    def __init__(self, table: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.register_buffer("codes", table["codes"], persistent=False)
        self.register_buffer("scale", table["scale"], persistent=False)
        self.register_buffer("bias", table["bias"], persistent=False)
        self.num_embeddings, self.embedding_dim = table["codes"].shape

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return dequantize_rows({"codes": self.codes, "scale": self.scale, "bias": self.bias}, rows)

    def nbytes(self) -> int:
        return sum(t.nelement() * t.element_size() for t in (self.codes, self.scale, self.bias))


class SharedLookup(nn.Module):
    """Looks rows up in a table it does not own (kept out of the module tree: `.to()`,
    `state_dict()` and `deepcopy` leave the table alone) and returns them as `dtype`."""

    def __init__(self, table: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self._table = (table,)
        self.dtype = dtype

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self._table[0](rows).to(self.dtype)  # type: ignore[no-any-return]

    def __deepcopy__(self, memo: dict[int, object]) -> SharedLookup:
        return SharedLookup(self._table[0], self.dtype)


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per row, for parameters with sparse gradients
    (`nn.Embedding(sparse=True)`): rows a batch did not touch are neither read nor written."""

    def __init__(self, params: list[torch.Tensor], lr: float = 0.05, eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise ValueError("RowWiseAdagrad needs sparse gradients (nn.Embedding(sparse=True))")
                grad = param.grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
                state = self.state[param]
                if "sum" not in state:
                    state["sum"] = torch.zeros(param.shape[0], dtype=torch.float32, device=param.device)
                accumulator: torch.Tensor = state["sum"]
                accumulator.index_add_(0, rows, values.pow(2).mean(dim=1))
                rate = group["lr"] / (accumulator[rows].sqrt() + group["eps"])
                param.index_add_(0, rows, -(values * rate.unsqueeze(1)).to(param.dtype))
