"""Serving benchmark: the same model and requests through every path, side by side.

Variants (each a real server process over HTTP on loopback, except `in-process`):
  naive             one candidate at a time through the model (bench/naive_server.py)
  torchserve        TorchServe with our handler, TorchServe's default settings
  kserve-fp32       our KServe model server, fp32 eager, no batching, no cache
  kserve-best       our KServe model server with batching, the fastest precision that passes
                    the quality gate, and the user cache
  in-process        the ranking core called with bytes, no HTTP (concurrency 1)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench.loadgen import run_load
from devcluster.ports import free_ports
from devcluster.servers import kserve_server, torchserve_server, wait_http
from recmodel_handlers.core import RankingCore, tune_for_serving
from recmodel_handlers.samples import make_request
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.torchserve_package import build_model_store


@dataclass
class Variant:
    name: str
    description: str
    start: Any  # () -> context manager yielding (predict URL, pid)
    sizes: tuple[int, ...] = (100, 1000, 5000)
    extra: dict[str, Any] = field(default_factory=dict)


def _process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in _process_tree(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_mb(pid: int) -> float:
    total = 0
    for process in _process_tree(pid):
        with suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


def _listening_pid(port: int) -> int:
    for connection in psutil.net_connections(kind="tcp"):
        if (
            connection.laddr
            and connection.laddr.port == port
            and connection.status == psutil.CONN_LISTEN
            and connection.pid
        ):
            return int(connection.pid)
    raise RuntimeError(f"nothing listens on {port}")


def _server_pid(url: str) -> int:
    pid = _listening_pid(int(url.rsplit(":", 1)[1]))
    # TorchServe's frontend is Java; its Python workers are its children: measure from the
    # outermost process we started (the listening one's parent when it is `torchserve`).
    parent = psutil.Process(pid).parent()
    if parent is not None and "torchserve" in " ".join(parent.cmdline()):
        return int(parent.pid)
    return pid


@contextmanager
def naive_server(model_dir: Path, log: Path) -> Iterator[str]:
    (port,) = free_ports(1)
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.naive_server", f"--model-dir={model_dir}", f"--port={port}"],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/", process=process, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def choose_best_precision(
    model_dir: Path, max_quality_drop: float, candidates: int = 1000, rounds: int = 40
) -> tuple[str, dict[str, Any]]:
    """Times each precision's scoring in-process, round-robin so background noise hits all
    alike, and keeps the fastest that passes the quality gate."""
    request = make_request(candidates)
    cores = {
        precision: RankingCore.from_dir(
            model_dir, CoreSettings(precision=precision, max_quality_drop=max_quality_drop, cache_entries=0)
        )
        for precision in ("fp32", "bf16", "fp16", "int8")
    }
    encoded = {precision: core.encode(request) for precision, core in cores.items()}
    samples: dict[str, list[float]] = {precision: [] for precision in cores}
    for _ in range(rounds):
        for precision, core in cores.items():
            started = time.perf_counter()
            core.score([encoded[precision]])
            samples[precision].append((time.perf_counter() - started) * 1000)
    report: dict[str, Any] = {}
    for precision, core in cores.items():
        gate = core.gate
        report[precision] = {
            "score_ms": statistics.median(samples[precision][5:]),
            "ndcg@10": gate.ndcg if gate else _fp32_ndcg(core),
            "ndcg_drop": gate.drop if gate else 0.0,
            "passed_gate": gate.passed if gate else True,
        }
    passing = [p for p, r in report.items() if r["passed_gate"]]
    return min(passing, key=lambda p: report[p]["score_ms"]), report


def _fp32_ndcg(core: RankingCore) -> float:
    from recmodel_handlers.quality import mean_ndcg
    from recmodel_handlers.train import K, gains_of, score_documents

    docs = core.package.validation
    return float(mean_ndcg(score_documents(core.model, core.encoder, docs), [gains_of(d) for d in docs], K))


def in_process(model_dir: Path, candidates: int, seconds: float, max_requests: int) -> dict[str, Any]:
    core = RankingCore.from_dir(model_dir, CoreSettings(cache_entries=0, max_candidates=max(1000, candidates)))
    tune_for_serving()
    body = orjson.dumps({"instances": [make_request(candidates)]})
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    cpu_before = time.process_time()
    while len(latencies) < max_requests and time.monotonic() < deadline:
        started = time.perf_counter()
        core.rank_json(body)
        latencies.append((time.perf_counter() - started) * 1000)
    cpu = time.process_time() - cpu_before
    latencies.sort()
    return {
        "concurrency": 1,
        "requests": len(latencies),
        "p50_ms": latencies[len(latencies) // 2],
        "p95_ms": latencies[int(0.95 * len(latencies))],
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "rps": len(latencies) / sum(latencies) * 1000,
        "candidates_per_s": len(latencies) / sum(latencies) * 1000 * candidates,
        "cpu_ms_per_request": cpu / len(latencies) * 1000,
        "rss_mb": psutil.Process().memory_info().rss / 2**20,
    }


@dataclass
class Sample:
    """One measured run of one variant; runs of the same cell are merged by `merge`."""

    latencies_ms: list[float]
    seconds: float
    cpu_seconds: float
    rss_mb: float


def measure(url: str, path: str, candidates: int, concurrency: int, seconds: float, max_requests: int) -> Sample:
    body = orjson.dumps({"instances": [make_request(candidates, top_k=50)]})
    pid = _server_pid(url)
    cpu_before = cpu_seconds(pid)
    result = run_load(url + path, body, concurrency, max_requests, seconds)
    return Sample(result.latencies_ms, result.seconds, cpu_seconds(pid) - cpu_before, rss_mb(pid))


def merge(samples: list[Sample], concurrency: int, candidates: int) -> dict[str, Any]:
    latencies = sorted(x for s in samples for x in s.latencies_ms)
    requests = len(latencies)

    def pct(q: float) -> float:
        return latencies[min(requests - 1, int(q * requests))] if latencies else float("nan")

    rps = requests / sum(s.seconds for s in samples) if samples else 0.0
    return {
        "concurrency": concurrency,
        "requests": requests,
        "rounds": len(samples),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "rps": rps,
        "candidates_per_s": rps * candidates,
        "cpu_ms_per_request": sum(s.cpu_seconds for s in samples) / max(requests, 1) * 1000,
        "rss_mb": max(s.rss_mb for s in samples),
    }


def servers(model_dir: Path, work: Path, best_precision: str) -> dict[str, tuple[str, AbstractContextManager[str]]]:
    """Variant name -> (request path, server context)."""
    store = work / "torchserve-default"
    if not store.exists():
        # TorchServe's defaults: no batching (batchSize 1), one worker per core.
        build_model_store(model_dir, store, max_batch_size=1, max_latency_ms=100, workers=os.cpu_count() or 1)
    name = "ranker"
    fp32_args = ["--precision=fp32", "--max-batch-size=1", "--cache-entries=0", "--max-candidates=5000"]
    best_args = [
        f"--precision={best_precision}",
        "--max-batch-size=32",
        "--max-latency-ms=5",
        "--cache-entries=100000",
        "--max-candidates=5000",
        "--max-quality-drop=0.01",
    ]
    return {
        "naive": ("/v1/models/ranker:predict", naive_server(model_dir, work / "naive.log")),
        "torchserve": (
            f"/predictions/{name}",
            torchserve_server(store, work / "torchserve-logs", env={"RECMODEL_MAX_CANDIDATES": "5000"}),
        ),
        "kserve-fp32": (
            "/v1/models/ranker:predict",
            kserve_server(model_dir, name, work / "kserve-fp32.log", extra_args=fp32_args),
        ),
        "kserve-best": (
            "/v1/models/ranker:predict",
            kserve_server(model_dir, name, work / "kserve-best.log", extra_args=best_args),
        ),
    }
