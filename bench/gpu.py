"""The GPU part of the benchmark, for a machine with CUDA (run it when one is lent):

    python -m bench.gpu [--model-dir DIR] [--out FILE]

Same models and requests as `make bench`; scores in-process on cuda for 1,000 and 5,000
candidates and batches of 1-32 requests, with the quality gate's NDCG@10 per precision, and
the device's measured bf16 matmul peak for the compute floor:
  small model  fp32, bf16, fp16
  large model  (1.02B parameters, `recmodel train --size large`) fp32, bf16 and int8 (row-wise
               int8 tables on the device), with the device memory each takes."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench import models
from recmodel_handlers.ranking.core import RankingCore
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.tools.samples import make_request


def timed(fn: Any, repeat: int = 50) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", default="bench/results/work/model")
    parser.add_argument("--large-model-dir", default="bench/results/work/model-large")
    parser.add_argument("--out", default="bench/results/gpu.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this script is for the GPU machine")
    model_dir = models.trained(Path(args.model_dir), models.SMALL)
    large_dir = models.trained(Path(args.large_model_dir), models.LARGE)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    peak = 2 * 8192**3 / (timed(lambda: a @ a, 20) / 1000) / 1e12
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "peak_bf16_tflops": peak, "runs": []}
    for model, directory, precisions in (
        ("small", model_dir, ("fp32", "bf16", "fp16")),
        ("large", large_dir, ("fp32", "bf16", "int8")),
    ):
        for precision in precisions:
            _score(results, model, directory, precision)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


def _score(results: dict[str, Any], model: str, model_dir: Path, precision: str) -> None:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    core = RankingCore.from_dir(
        model_dir, CoreSettings(precision=precision, max_quality_drop=0.01, cache_entries=0, max_candidates=5000)
    )
    results.setdefault("memory", {})[f"{model}-{precision}"] = {
        "allocated_gb": torch.cuda.memory_allocated() / 2**30,
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30,
    }
    for candidates in (1000, 5000):
        for batch in (1, 8, 32):
            requests = [core.encode(make_request(candidates, seed=i)) for i in range(batch)]
            ms = timed(lambda c=core, r=requests: c.score(r))
            row = {
                "model": model,
                "precision": core.precision,
                "candidates": candidates,
                "batch": batch,
                "score_ms": ms,
                "candidates_per_s": candidates * batch / ms * 1000,
            }
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
    if core.gate:
        results[f"gate_{model}_{precision}"] = core.gate.to_json()


if __name__ == "__main__":
    main()
