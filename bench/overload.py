"""Overload: one `recmodel serve` replica offered 1x, 2x, 4x and 8x the load it sustains, open
loop (vegeta, Go: the load generator is not the bottleneck), for the throughput profile (the
defaults) and the latency profile.

The replica is pinned to one core and vegeta to the other, so the load generator never takes
the replica's CPU (on 2 cores it otherwise takes 25-45 % of it and every number is about
vegeta). Capacity is measured closed loop first: the most answered with 2, 4 or 8 clients back to
back (more clients than the replica takes at once only get refused); then each row says goodput (200s per second) as a share of it, the
refusals' and the accepted requests' p99, and how busy the replica's core was. What one refusal
costs is measured on its own: the same replica with no slot to give (`--max-queue=0`) refuses
everything offered at 4x capacity, and its CPU time is divided by the refusals.
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
CLOSED_LOOP_CLIENTS = (2, 4, 8)  # the best of these is the capacity (8: the replica's admission slots)


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


def _served(model_dir: Path, work: Path, flags: list[str]) -> Any:
    return kserve_server(model_dir, "ranker", work / "overload-serve.log", extra_args=[*flags, "--threads=1"])


def _pinned_pid(base: str) -> int:
    (pid,) = listening_pids(int(base.rsplit(":", 1)[1]))
    _pin(pid, SERVER_CPU)
    return pid


def refusal_cpu_ms(model_dir: Path, work: Path, flags: list[str], body: Path, rate: float, seconds: float) -> float:
    """CPU milliseconds per refused request, with every request refused (no admission slot)."""
    with _served(model_dir, work, [*flags, "--max-queue=0"]) as base:
        pid = _pinned_pid(base)
        vegeta(base + PREDICT, body, rate=f"{rate:.0f}/s", seconds=1, cpu=LOADGEN_CPU)  # warm-up
        before = cpu_seconds(pid)
        refused = len(vegeta(base + PREDICT, body, rate=f"{rate:.0f}/s", seconds=seconds, cpu=LOADGEN_CPU).get(503, []))
        return (cpu_seconds(pid) - before) / max(refused, 1) * 1000


def measure_profile(model_dir: Path, work: Path, flags: list[str], seconds: float) -> dict[str, Any]:
    body = work / "overload-request.json"
    body.write_text(json.dumps({"instances": [make_request(1000)]}))
    with _served(model_dir, work, flags) as base:
        url = base + PREDICT
        pid = _pinned_pid(base)
        vegeta(url, body, rate="20/s", seconds=3, cpu=LOADGEN_CPU)  # warm-up
        unloaded = vegeta(url, body, rate="10/s", seconds=seconds / 2, cpu=LOADGEN_CPU).get(200)
        loops = []
        for clients in CLOSED_LOOP_CLIENTS:
            before = cpu_seconds(pid)
            closed = vegeta(url, body, rate="0", seconds=seconds, workers=clients, cpu=LOADGEN_CPU)
            answered = len(closed.get(200, []))
            turned_away = sum(len(v) for code, v in closed.items() if code != 200)
            loops.append((answered, clients, turned_away, (cpu_seconds(pid) - before) / max(answered, 1)))
        accepted_at_capacity, clients, closed_refused, cpu_per_request = max(loops)
        capacity = accepted_at_capacity / seconds
        rows = []
        for multiple in MULTIPLES:
            _pin(pid, SERVER_CPU)  # threads started since (the batcher's) land on the same core
            before = cpu_seconds(pid)
            result = vegeta(url, body, rate=f"{multiple * capacity:.0f}/s", seconds=seconds, cpu=LOADGEN_CPU)
            busy = (cpu_seconds(pid) - before) / seconds
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
                    "cpu_busy": busy,
                }
            )
            print(
                f"    {multiple}x ({multiple * capacity:.0f} req/s): goodput {rows[-1]['goodput_share']:.0%} "
                f"of capacity, {len(refused)} refused (p99 {rows[-1]['refusal_p99_ms']:.1f} ms), accepted p99 "
                f"{rows[-1]['accepted_p99_ms']:.1f} ms, {other} other answers, core {busy:.0%} busy",
                flush=True,
            )
    per_refusal = refusal_cpu_ms(model_dir, work, flags, body, 4 * capacity, seconds)
    print(f"    CPU per refusal {per_refusal:.3f} ms (per accepted request at capacity {cpu_per_request * 1000:.2f})")
    return {
        "capacity_rps": capacity,
        "cpu_per_request_ms": cpu_per_request * 1000,
        "cpu_per_refusal_ms": per_refusal,
        "closed_loop_clients": clients,
        "closed_loop_refused": closed_refused,
        "peak_goodput_rps": max(row["goodput_rps"] for row in rows),
        "unloaded_p99_ms": p99(unloaded),
        "rows": rows,
    }


def run(model_dir: Path, work: Path, seconds: float = 8.0) -> dict[str, Any]:
    results = {}
    for profile, flags in PROFILES.items():
        print(f"  overload, {profile} profile", flush=True)
        results[profile] = measure_profile(model_dir, work, flags, seconds)
    return results
