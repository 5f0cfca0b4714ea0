"""Overload: one `recmodel serve` replica offered 1x, 2x, 4x and 8x the load it sustains, open
loop (vegeta, Go: the load generator is not the bottleneck), for the throughput profile (the
defaults) and the latency profile.

The replica is pinned to one core and vegeta to the other, so the load generator never takes
the replica's CPU (on 2 cores it otherwise takes 25-45 % of it and every number is about
vegeta). Capacity is measured closed loop first; then each row says goodput (200s per second)
as a share of it, the refusals' and the accepted requests' p99, and the replica's CPU per
refused request: (CPU used - accepted x CPU per request at capacity) / refused.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from devcluster.build.versions import VEGETA_VERSION, bin_dir
from devcluster.harness.servers import kserve_server, listening_pids
from recmodel_handlers.tools.samples import make_request

VEGETA = bin_dir() / f"vegeta-{VEGETA_VERSION}"
PREDICT = "/v1/models/ranker:predict"
LATENCY_PROFILE = ["--max-batch-size=4", "--max-latency-ms=0", "--max-queue-ms=2"]
PROFILES: dict[str, list[str]] = {"throughput": [], "latency": LATENCY_PROFILE}
MULTIPLES = (1, 2, 4, 8)
SERVER_CPU, LOADGEN_CPU = 0, 1


def vegeta(
    url: str, body: Path, *, rate: str, seconds: float, workers: int = 2, cpu: int | None = None
) -> dict[int, np.ndarray]:
    """Latencies (ms) by HTTP status (0: no answer). rate "0" is closed loop with `workers` clients."""
    target = f"POST {url}\nContent-Type: application/json\n@{body}\n"
    attack = [str(VEGETA), "attack", f"-rate={rate}", f"-duration={seconds}s", "-timeout=30s"]
    if rate == "0":
        attack += [f"-max-workers={workers}", f"-workers={workers}"]
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    results = subprocess.run(attack, input=target.encode(), capture_output=True, check=True, preexec_fn=pin).stdout
    decoded = subprocess.run([str(VEGETA), "encode", "--to=json"], input=results, capture_output=True, check=True)
    by_code: dict[int, list[float]] = {}
    for line in decoded.stdout.splitlines():
        result = json.loads(line)
        by_code.setdefault(result["code"], []).append(result["latency"] / 1e6)
    return {code: np.asarray(values) for code, values in by_code.items()}


def p99(values: np.ndarray | None) -> float:
    return float(np.percentile(values, 99)) if values is not None and len(values) else float("nan")


def _pin(pid: int, cpu: int) -> None:
    """Every thread of the process (the event loop, the scoring thread, torch's) on one core."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {cpu})
        except ProcessLookupError:
            continue


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_profile(model_dir: Path, work: Path, flags: list[str], seconds: float) -> dict[str, Any]:
    body = work / "overload-request.json"
    body.write_text(json.dumps({"instances": [make_request(1000)]}))
    with kserve_server(model_dir, "ranker", work / "overload-serve.log", extra_args=[*flags, "--threads=1"]) as base:
        url = base + PREDICT
        (pid,) = listening_pids(int(base.rsplit(":", 1)[1]))
        _pin(pid, SERVER_CPU)
        vegeta(url, body, rate="20/s", seconds=3, cpu=LOADGEN_CPU)  # warm-up
        unloaded = vegeta(url, body, rate="10/s", seconds=seconds / 2, cpu=LOADGEN_CPU).get(200)
        before = cpu_seconds(pid)
        closed = vegeta(url, body, rate="0", seconds=seconds, workers=4, cpu=LOADGEN_CPU)
        accepted_at_capacity = len(closed.get(200, []))
        capacity = accepted_at_capacity / seconds
        cpu_per_request = (cpu_seconds(pid) - before) / max(accepted_at_capacity, 1)
        rows = []
        for multiple in MULTIPLES:
            _pin(pid, SERVER_CPU)  # threads started since (the batcher's) land on the same core
            before = cpu_seconds(pid)
            result = vegeta(url, body, rate=f"{multiple * capacity:.0f}/s", seconds=seconds, cpu=LOADGEN_CPU)
            used = cpu_seconds(pid) - before
            accepted, refused = result.get(200, np.asarray([])), result.get(503, np.asarray([]))
            other = sum(len(v) for code, v in result.items() if code not in (200, 503))
            rows.append(
                {
                    "offered": multiple,
                    "offered_rps": multiple * capacity,
                    "goodput_rps": len(accepted) / seconds,
                    "goodput_share": len(accepted) / seconds / capacity if capacity else float("nan"),
                    "refused": len(refused),
                    "other_answers": other,
                    "refusal_p99_ms": p99(refused),
                    "accepted_p99_ms": p99(accepted),
                    "cpu_per_refused_ms": (used - len(accepted) * cpu_per_request) / len(refused) * 1000
                    if len(refused)
                    else float("nan"),
                }
            )
            print(
                f"    {multiple}x ({multiple * capacity:.0f} req/s): goodput {rows[-1]['goodput_share']:.0%} "
                f"of capacity, {len(refused)} refused (p99 {rows[-1]['refusal_p99_ms']:.1f} ms), accepted p99 "
                f"{rows[-1]['accepted_p99_ms']:.1f} ms, CPU per refusal {rows[-1]['cpu_per_refused_ms']:.2f} ms",
                flush=True,
            )
    return {
        "capacity_rps": capacity,
        "cpu_per_request_ms": cpu_per_request * 1000,
        "unloaded_p99_ms": p99(unloaded),
        "rows": rows,
    }


def run(model_dir: Path, work: Path, seconds: float = 8.0) -> dict[str, Any]:
    results = {}
    for profile, flags in PROFILES.items():
        print(f"  overload, {profile} profile", flush=True)
        results[profile] = measure_profile(model_dir, work, flags, seconds)
    return results
