"""Serving benchmark: the same model and requests through every path, side by side.

Variants (each a real server process over HTTP on loopback, except `in-process`):
  naive             one candidate at a time through the model (bench/naive_server.py)
  torchserve        TorchServe with our handler, TorchServe's default settings (the floor)
  kserve-fp32       our KServe model server, fp32 eager, no batching, no cache
  kserve-best       our KServe model server with batching, the fastest precision that passes
                    the quality gate, and the user cache
  in-process        the ranking core called with bytes, no HTTP (concurrency 1)

Peers, each serving the same core with kserve-best's core settings, configured as its own
docs recommend for throughput (bench/peers/):
  torchserve-tuned  one worker per core with one torch thread each, batchSize 32, maxBatchDelay 5 ms
  ray-serve         one replica per core (num_cpus 1), @serve.batch(32, 5 ms)
  pytriton          Triton through PyTriton: one model instance per core, dynamic batching
                    (32, 5 ms), binary tensor data as Triton's clients send it
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench.loadgen import run_load
from devcluster.common.ports import free_ports
from devcluster.harness.servers import kserve_replicas, kserve_server, listening_pids, torchserve_server, wait_http
from recmodel_handlers.ranking.core import RankingCore, tune_for_serving
from recmodel_handlers.serving.torchserve_store import build_model_store
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.tools.samples import make_request

PEERS = ("torchserve-tuned", "ray-serve", "pytriton")
# One replica per core, one torch thread each, sharing a port (devcluster.harness.servers.kserve_replicas).
OURS_REPLICATED = "kserve-best-replicas"


@dataclass(frozen=True)
class Server:
    """How to reach a running variant: its predict path and wire format ("v1" JSON or Triton's
    "v2-binary")."""

    path: str
    context: AbstractContextManager[str]
    wire: str = "v1"


def request_body(wire: str, candidates: int) -> tuple[bytes, dict[str, str]]:
    """The benchmark's ranking request (top 50 of `candidates`) as `wire`, with its headers."""
    doc = make_request(candidates, top_k=50)
    if wire == "v1":
        return orjson.dumps({"instances": [doc]}), {"content-type": "application/json"}
    import numpy as np
    from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

    tensor = InferInput("request", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[orjson.dumps(doc)]], dtype=np.object_))
    body, json_size = InferenceServerClient.generate_request_body(
        [tensor], outputs=[InferRequestedOutput("result", binary_data=True)]
    )
    headers = {"content-type": "application/octet-stream", "Inference-Header-Content-Length": str(json_size)}
    return body, headers


def ranked_ids(wire: str, body: bytes, headers: dict[str, str]) -> list[str]:
    """The ids a variant's answer ranks, in order."""
    if wire == "v1":
        answer = orjson.loads(body)
        doc = answer["predictions"][0] if isinstance(answer, dict) else answer[0]
        return [item["id"] for item in doc["items"]]
    from tritonclient.http import InferResult

    length = headers.get("inference-header-content-length")
    result = InferResult.from_response_body(body, header_length=int(length) if length else None)
    return [item["id"] for item in orjson.loads(result.as_numpy("result")[0][0])["items"]]


def expected_ranking(model_dir: Path, precision: str, candidates: int = 1000) -> list[str]:
    """The benchmark request's top 50 as the core ranks it in-process."""
    core = RankingCore.from_dir(model_dir, CoreSettings(precision=precision, max_candidates=max(candidates, 1000)))
    return [item["id"] for item in core.rank([make_request(candidates, top_k=50)])[0]["items"]]


def same_ranking(url: str, server: Server, expected: list[str], candidates: int = 1000) -> bool:
    """One request before a variant is measured: does it rank the top 10 as the core does?"""
    body, headers = request_body(server.wire, candidates)
    request = urllib.request.Request(url + server.path, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        answer, answer_headers = response.read(), {k.lower(): v for k, v in response.headers.items()}
    return ranked_ids(server.wire, answer, answer_headers)[:10] == expected[:10]


def _process_tree(pids: list[int]) -> list[psutil.Process]:
    out = []
    for pid in pids:
        with suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            out += [root, *root.children(recursive=True)]
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for process in _process_tree(pids):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_mb(pids: list[int]) -> float:
    total = 0
    for process in _process_tree(pids):
        with suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


def server_pids(url: str) -> list[int]:
    """The outermost process of each server listening at `url` (several replicas may share
    it): TorchServe's frontend is Java with Python workers as its children, Ray's HTTP proxy
    and replicas are the driver's grandchildren, tritonserver is PyTriton's child. CPU and
    memory are counted over these processes and all their descendants."""
    outermost = set()
    for pid in listening_pids(int(url.rsplit(":", 1)[1])):
        top = psutil.Process(pid)
        for ancestor in top.parents():
            with suppress(psutil.Error):
                command = " ".join(ancestor.cmdline())
                if "torchserve" in command or "bench.peers." in command:
                    top = ancestor
        outermost.add(top.pid)
    return sorted(outermost)


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
    from recmodel_handlers.ranking.quality import K, gains_of, mean_ndcg, score_documents

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
        core.rank_body(body)
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
    errors: int = 0  # answers other than 200 (not in the latencies)


def measure(url: str, server: Server, candidates: int, concurrency: int, seconds: float, max_requests: int) -> Sample:
    body, headers = request_body(server.wire, candidates)
    pids = server_pids(url)
    cpu_before = cpu_seconds(pids)
    result = run_load(url + server.path, body, concurrency, max_requests, seconds, headers=headers)
    return Sample(result.latencies_ms, result.seconds, cpu_seconds(pids) - cpu_before, rss_mb(pids), result.errors)


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
        "errors": sum(s.errors for s in samples),
    }


def core_args(best_precision: str) -> list[str]:
    """kserve-best's core settings, which every peer serves with too."""
    return [
        f"--precision={best_precision}",
        "--max-batch-size=32",
        "--max-latency-ms=5",
        "--cache-entries=100000",
        "--max-candidates=5000",
        "--max-quality-drop=0.01",
    ]


# A closed-loop benchmark keeps 8 or 32 requests waiting on purpose: it measures throughput,
# not load shedding (the default 5 ms queue budget would refuse some; tests/serving/test_load.py).
THROUGHPUT_ARGS = ["--max-queue=64", "--max-queue-ms=10000"]


def _torchserve_store(model_dir: Path, store: Path, *, batch: int, delay_ms: int, bundle: bool) -> Path:
    if not store.exists():
        workers = os.cpu_count() or 1
        build_model_store(
            model_dir, store, max_batch_size=batch, max_latency_ms=delay_ms, workers=workers, bundle_model=bundle
        )
    return store


def servers(model_dir: Path, work: Path, best_precision: str, *, naive: bool = True) -> dict[str, Server]:
    """Variant name -> how to start it (Ray Serve and PyTriton only after `make peers`)."""
    from bench.peers import launch

    name = "ranker"
    # Large packages stay outside TorchServe's archive (its workers would each unpack a copy).
    bundle = sum(f.stat().st_size for f in model_dir.iterdir()) < 2**30
    ts_env = {"RECMODEL_MAX_CANDIDATES": "5000", **({} if bundle else {"RECMODEL_MODEL_DIR": str(model_dir)})}
    best = [*core_args(best_precision), *THROUGHPUT_ARGS]
    peer_core = core_args(best_precision)
    variants: dict[str, Server] = {}
    if naive:
        variants["naive"] = Server("/v1/models/ranker:predict", naive_server(model_dir, work / "naive.log"))
    # TorchServe's defaults: no batching (batchSize 1), one worker per core.
    default_store = _torchserve_store(model_dir, work / "torchserve-default", batch=1, delay_ms=100, bundle=bundle)
    variants["torchserve"] = Server(
        f"/predictions/{name}", torchserve_server(default_store, work / "torchserve-logs", env=ts_env)
    )
    fp32_args = [
        "--precision=fp32",
        "--max-batch-size=1",
        "--cache-entries=0",
        "--max-candidates=5000",
        *THROUGHPUT_ARGS,
    ]
    variants["kserve-fp32"] = Server(
        "/v1/models/ranker:predict", kserve_server(model_dir, name, work / "kserve-fp32.log", extra_args=fp32_args)
    )
    variants["kserve-best"] = Server(
        "/v1/models/ranker:predict", kserve_server(model_dir, name, work / "kserve-best.log", extra_args=best)
    )
    variants[OURS_REPLICATED] = Server(
        "/v1/models/ranker:predict", kserve_replicas(model_dir, name, work, os.cpu_count() or 1, extra_args=best)
    )
    tuned_store = _torchserve_store(model_dir, work / "torchserve-tuned", batch=32, delay_ms=5, bundle=bundle)
    tuned_env = {**ts_env, "OMP_NUM_THREADS": "1", **_env_of(peer_core)}
    variants["torchserve-tuned"] = Server(
        f"/predictions/{name}", torchserve_server(tuned_store, work / "torchserve-tuned-logs", env=tuned_env)
    )
    if launch.available():
        variants["ray-serve"] = Server(
            "/v1/models/ranker:predict", launch.ray_serve(model_dir, work / "ray-serve.log", peer_core)
        )
        variants["pytriton"] = Server(
            "/v2/models/ranker/infer", launch.pytriton(model_dir, work / "pytriton.log", peer_core), wire="v2-binary"
        )
    return variants


def _env_of(args: list[str]) -> dict[str, str]:
    """`--max-batch-size=32` -> RECMODEL_MAX_BATCH_SIZE=32: how TorchServe's handler gets them."""
    env = {}
    for arg in args:
        key, value = arg.removeprefix("--").split("=", 1)
        env["RECMODEL_" + key.replace("-", "_").upper()] = value
    return env
