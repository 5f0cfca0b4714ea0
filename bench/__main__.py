"""`make bench` (about 10 minutes here) and `make bench-quick` (about one).

Writes bench/results/results.json, results.md (the table the README shows) and latency.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from bench import report, serving
from bench.stages import compute_floor
from recmodel_handlers.stage_bench import run as stage_run

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    description = (
        f"{cpu}, {os.cpu_count()} cores"
        + (f", {gpu}" if gpu else ", no GPU")
        + f"; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    return {
        "description": description,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def train_model(out: Path) -> Path:
    if not (out / "manifest.json").exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "recmodel_handlers.cli",
                "train",
                f"--out={out}",
                "--rows=100000",
                "--epochs=2",
                "--name=ranker",
                "--version=v1",
            ],
            check=True,
        )
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = results["serving"].get("1000", {})

    def at(variant: str, concurrency: int) -> dict[str, Any] | None:
        return next((r for r in rows.get(variant, []) if r["concurrency"] == concurrency), None)

    out = []
    best1, naive1 = at("kserve-best", 1), at("naive", 1)
    if best1 and naive1:
        ratio = naive1["p50_ms"] / best1["p50_ms"]
        out.append(
            {
                "target": "best path >= 30x faster than naive at concurrency 1 (p50)",
                "measured": f"{ratio:.0f}x",
                "met": ratio >= 30,
            }
        )
    best8, ts8 = at("kserve-best", 8), at("torchserve", 8)
    if best8 and ts8:
        ratio = best8["rps"] / ts8["rps"]
        p99 = best8["p99_ms"] / ts8["p99_ms"]
        out.append(
            {
                "target": ">= 3x TorchServe-default req/s at concurrency 8",
                "measured": f"{ratio:.1f}x",
                "met": ratio >= 3,
            }
        )
        out.append(
            {
                "target": "p99 <= 1/3 of TorchServe-default's at concurrency 8",
                "measured": f"{p99:.2f}x",
                "met": p99 <= 1 / 3,
            }
        )
    stages = results.get("stages")
    if stages:
        ratio = stages["request_over_forward"]
        out.append(
            {
                "target": "in-process request (bytes in, bytes out) <= 2x the forward pass",
                "measured": f"{ratio:.2f}x",
                "met": ratio <= 2,
            }
        )
    best = results["precisions"].get(results["best_precision"], {})
    out.append(
        {
            "target": "NDCG@10 of the served precision within the gate (0.01)",
            "measured": f"drop {best.get('ndcg_drop', 0):.4f}",
            "met": best.get("ndcg_drop", 1) <= 0.01,
        }
    )
    return out


OPERATOR_COUNTS = (1, 200, 1000)


def operator_only() -> None:
    """The operator benchmark alone, into results/operator.json and operator.md."""
    from bench import operator_bench
    from devcluster.fixtures import running_cluster

    work = RESULTS / "work"
    work.mkdir(parents=True, exist_ok=True)
    with running_cluster() as tools:
        rows = operator_bench.run(tools, work, counts=OPERATOR_COUNTS)
    killed = operator_bench.run_killed(work)
    (RESULTS / "operator.json").write_text(json.dumps({"batches": rows, "killed": killed}, indent=2))
    table = report.operator_table(rows, killed)
    (RESULTS / "operator.md").write_text(table)
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="1,000 candidates, concurrency 1 and 8, short runs, no operator part"
    )
    parser.add_argument("--no-operator", action="store_true")
    parser.add_argument("--operator-only", action="store_true", help="only the operator part (about 6 minutes)")
    args = parser.parse_args()
    if args.operator_only:
        operator_only()
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = RESULTS / "work"
    work.mkdir(exist_ok=True)
    started = time.monotonic()
    model_dir = train_model(work / "model")

    sizes = (1000,) if args.quick else (100, 1000, 5000)
    concurrencies = (1, 8) if args.quick else (1, 8, 32)
    seconds = 4.0 if args.quick else 10.0
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "serving": {}}
    print(f"== precisions and the quality gate ({time.monotonic() - started:.0f}s)", flush=True)
    results["best_precision"], results["precisions"] = serving.choose_best_precision(model_dir, max_quality_drop=0.01)
    print(json.dumps(results["precisions"], indent=1), flush=True)
    results["stages"] = stage_run(model_dir, candidates=1000, repeat=100)
    results["floor"] = compute_floor(model_dir, results["stages"]["forward_ms"])

    rounds = 1 if args.quick else 2
    with ExitStack() as stack:
        print(f"== starting every server ({time.monotonic() - started:.0f}s)", flush=True)
        running = {
            variant: (stack.enter_context(server), path)
            for variant, (path, server) in serving.servers(model_dir, work, results["best_precision"]).items()
        }
        # All servers stay up and the variants take turns, round after round, so that drift in
        # the machine's speed (a shared VM) lands on every variant alike.
        for size in sizes:
            for concurrency in concurrencies:
                samples: dict[str, list[serving.Sample]] = {}
                for round_index in range(rounds):
                    order = list(running)[round_index % len(running) :] + list(running)[: round_index % len(running)]
                    for variant in order:
                        if variant == "naive" and concurrency > 1:
                            continue  # seconds per request: concurrency 1 is enough to compare
                        url, path = running[variant]
                        samples.setdefault(variant, []).append(
                            serving.measure(url, path, size, concurrency, seconds / rounds, 2000)
                        )
                for variant, runs in samples.items():
                    row = serving.merge(runs, concurrency, size)
                    results["serving"].setdefault(str(size), {}).setdefault(variant, []).append(row)
                    print(
                        f"  {variant:<12} {size:>5} candidates, c={concurrency:<3} p50 {row['p50_ms']:8.1f} ms  "
                        f"p99 {row['p99_ms']:8.1f} ms  {row['rps']:8.1f} req/s",
                        flush=True,
                    )
    for size in sizes:
        results["serving"][str(size)]["in-process"] = [serving.in_process(model_dir, size, seconds, 2000)]
    results["targets"] = targets(results)

    if not (args.quick or args.no_operator):
        from bench import operator_bench
        from devcluster.fixtures import running_cluster

        print(f"== operator ({time.monotonic() - started:.0f}s)", flush=True)
        with running_cluster() as tools:
            results["operator"] = operator_bench.run(tools, work, counts=OPERATOR_COUNTS)
        results["operator_killed"] = operator_bench.run_killed(work)
    results["seconds"] = time.monotonic() - started
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2))
    table = report.markdown(results)
    (RESULTS / "results.md").write_text(table)
    report.plot(results, RESULTS / "latency.png")
    print(table)
    print(f"results in {RESULTS} ({results['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
