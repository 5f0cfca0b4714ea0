"""The large model (`recmodel train --size large`, 1.02B parameters) in `make bench`: size,
memory per replica fp32 vs int8, the quality gate, startup to ready, and latency."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devcluster.harness.servers import kserve_server


def memory(model_dir: Path, precision: str) -> dict[str, Any]:
    """bench.memory in a process of its own: a fresh replica's RSS, every row hot."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.memory", f"--model-dir={model_dir}", f"--precision={precision}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def startup_seconds(model_dir: Path, precision: str, log: Path) -> float:
    """From starting `recmodel serve` to its readiness endpoint answering 200 (quality gate and
    warm-up included); the package's pages are in the page cache, as on a node where another
    replica of the model already runs."""
    started = time.monotonic()
    with kserve_server(model_dir, "ranker", log, extra_args=[f"--precision={precision}", "--max-quality-drop=0.01"]):
        return time.monotonic() - started


def describe(model_dir: Path, work: Path) -> dict[str, Any]:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    files = {f.name: f.stat().st_size for f in model_dir.iterdir() if f.is_file()}
    out: dict[str, Any] = {
        "parameters": manifest["parameters"],
        "tables": manifest["metrics"]["tables"],
        "train_seconds": manifest["metrics"]["train_seconds"],
        "ndcg@10": manifest["metrics"]["model"]["ndcg@10"],
        "files_mb": {name: size / 2**20 for name, size in files.items()},
        "precisions": {},
    }
    for precision in ("fp32", "int8"):
        print(f"  large model, {precision}: memory and startup", flush=True)
        out["precisions"][precision] = {
            **memory(model_dir, precision),
            "startup_s": startup_seconds(model_dir, precision, work / f"large-startup-{precision}.log"),
        }
    return out
