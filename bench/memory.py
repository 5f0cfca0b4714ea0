"""Resident memory of one replica's core with every row of its tables hot.

    python -m bench.memory --model-dir DIR --precision int8

Prints JSON: RSS before the package is loaded (the interpreter and torch), after loading, and
after reading every tensor the served model reads (what a replica holds once traffic has
touched every item and user row). The tables are memory-mapped: the pages are the file's,
shared with every other replica on the node through the page cache.
"""

from __future__ import annotations

import argparse
import json
import time

import psutil
import torch

from recmodel_handlers.ranking.core import RankingCore
from recmodel_handlers.settings import CoreSettings


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    before = rss_mb()
    started = time.monotonic()
    core = RankingCore.from_dir(args.model_dir, CoreSettings(precision=args.precision, max_quality_drop=0.01))
    load_seconds = time.monotonic() - started
    loaded = rss_mb()
    tensors = [*core.model.parameters(), *core.model.buffers()]
    with torch.inference_mode():
        for tensor in tensors:
            tensor.view(-1)[:: max(1, 4096 // tensor.element_size())].sum()  # one element per page
    served_bytes = sum(t.nelement() * t.element_size() for t in tensors)
    print(
        json.dumps(
            {
                "precision": core.precision,
                "rss_before_load_mb": before,
                "rss_loaded_mb": loaded,
                "rss_hot_mb": rss_mb(),
                "model_hot_mb": rss_mb() - before,
                "served_tensor_mb": served_bytes / 2**20,
                "core_seconds": load_seconds,
                "gate": core.gate.to_json() if core.gate else None,
            }
        )
    )


if __name__ == "__main__":
    main()
