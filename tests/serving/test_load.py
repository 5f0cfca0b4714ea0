"""A replica under load, as real processes: open-loop overload from vegeta (Go, so the load
generator is not the bottleneck) and a stream of fresh ids. (A rolling update under load, through
the ingress controller to pods on the real node: tests/integration/test_request_path.py.)
Numbers are printed (`pytest -s`); the assertions are the behaviour."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.overload import LATENCY_PROFILE, p99, vegeta
from devcluster.harness.servers import kserve_server, listening_pids
from recmodel_handlers.tools.samples import make_request

# Slow, and it needs vegeta, which `make cluster-build` builds: a `cluster` test too.
pytestmark = [pytest.mark.slow, pytest.mark.cluster]

BIN = Path(sys.executable).parent
PREDICT = "/v1/models/ranker:predict"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def server_pid(port: int) -> int:
    (pid,) = listening_pids(port)
    return pid


@pytest.fixture(scope="module")
def body(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("load") / "request.json"
    path.write_text(json.dumps({"instances": [make_request(1000)]}))
    return path


@pytest.fixture(scope="module")
def served(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with kserve_server(trained_model, "ranker", tmp_path_factory.mktemp("overload") / "serve.log") as url:
        yield url


def test_overload_is_refused_at_once_and_accepted_latency_stays_bounded(served: str, body: Path) -> None:
    url = served + PREDICT
    vegeta(url, body, rate="20/s", seconds=3)  # warm-up
    unloaded = vegeta(url, body, rate="20/s", seconds=5)[200]
    capacity = vegeta(url, body, rate="0", seconds=5)
    sustainable = len(capacity[200]) / 5
    pid = server_pid(int(served.rsplit(":", 1)[1]))
    rss_before = rss_mb(pid)
    double = vegeta(url, body, rate=f"{2 * sustainable:.0f}/s", seconds=8)
    quadruple = vegeta(url, body, rate=f"{4 * sustainable:.0f}/s", seconds=8)
    rss_after = rss_mb(pid)
    print(
        f"\nunloaded p99 {p99(unloaded):.1f} ms; sustainable {sustainable:.0f} req/s (closed loop, 2 clients)"
        f"\n2x: accepted {len(double[200])} p99 {p99(double[200]):.1f} ms, refused {len(double.get(503, []))}"
        f"\n4x: accepted {len(quadruple[200])} p99 {p99(quadruple[200]):.1f} ms, refused {len(quadruple[503])}"
        f" (503 p50 {np.percentile(quadruple[503], 50):.1f} ms); RSS {rss_before:.0f} -> {rss_after:.0f} MB"
    )
    assert set(quadruple) <= {200, 503}, "every request is answered: ranked or refused"
    assert len(quadruple[503]) > len(quadruple[200]), "4x the capacity: most are refused"
    assert np.percentile(quadruple[503], 50) < np.percentile(quadruple[200], 50), "refusals come at once"
    # refusing 3x its capacity costs the replica some CPU (on 2 cores shared with vegeta: 25-45%)
    assert len(quadruple[200]) >= 0.5 * len(capacity[200]) * 8 / 5, "the replica keeps ranking near capacity"
    # With the defaults (batches of up to 32, shedding only under a standing queue so bursts at
    # moderate load are absorbed) this measures 3.5-7x here, where vegeta shares the 2 cores; the
    # latency profile below meets 3x. Without shedding the same load measured ~240 ms at p99:
    # this bound fails if shedding stops working.
    assert p99(quadruple[200]) < 8 * p99(unloaded), "accepted requests are answered nearly as fast as unloaded"
    assert rss_after < rss_before + 100
    refused = httpx.post(url, content=body.read_bytes(), headers={"x-request-timeout-ms": "0.001"})
    assert refused.status_code == 504 and "deadline" in refused.json()["error"]


def test_busy_answers_carry_retry_after(served: str, body: Path) -> None:
    statuses: list[httpx.Response] = []

    def hammer() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(30):
                statuses.append(client.post(served + PREDICT, content=body.read_bytes()))

    threads = [threading.Thread(target=hammer) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busy = [r for r in statuses if r.status_code == 503]
    assert busy, "40 clients against a queue of 8: some are refused"
    assert all(r.headers["retry-after"].isdigit() and "busy" in r.json()["error"] for r in busy)
    assert {r.status_code for r in statuses} <= {200, 503}


def test_memory_stays_flat_under_fresh_ids(served: str) -> None:
    pid = server_pid(int(served.rsplit(":", 1)[1]))

    def burst(start: int, count: int) -> None:
        with httpx.Client(timeout=60) as client:
            for i in range(start, start + count):
                request = make_request(500, seed=i)
                request["user"]["id"] = f"fresh-user-{i}"
                for j, candidate in enumerate(request["candidates"]):
                    candidate["id"] = f"fresh-{i}-{j}"
                assert client.post(served + PREDICT, json={"instances": [request]}).status_code == 200

    burst(0, 1500)  # warm-up: the memos fill and start over
    warm = rss_mb(pid)
    burst(1500, 4500)
    after = rss_mb(pid)
    print(f"\nRSS after 1,500 requests of fresh ids {warm:.0f} MB, after 6,000 {after:.0f} MB")
    assert after < warm + 60


# appended to tests/serving/test_load.py if it holds


def test_a_latency_profile_keeps_accepted_p99_within_3x_at_4x_load(
    trained_model: Path, body: Path, tmp_path: Path
) -> None:
    """Issue 11's bound, met by a replica configured for latency (`batching.maxBatchSize: 4`,
    `batching.maxLatencyMs: 0`, `server.maxQueueMs: 2`, all RecModel fields): fewer 1,000-candidate
    requests share a forward pass and a newcomer may wait 2 ms, so what it accepts stays near its
    unloaded p99. (The defaults favour throughput: the test above.)"""
    with kserve_server(trained_model, "ranker", tmp_path / "serve.log", extra_args=LATENCY_PROFILE) as served:
        url = served + PREDICT
        vegeta(url, body, rate="20/s", seconds=3)  # warm-up
        unloaded = vegeta(url, body, rate="20/s", seconds=5)[200]
        sustainable = len(vegeta(url, body, rate="0", seconds=5)[200]) / 5
        quadruple = vegeta(url, body, rate=f"{4 * sustainable:.0f}/s", seconds=8)
    ratio = p99(quadruple[200]) / p99(unloaded)
    print(
        f"\nlatency profile: unloaded p99 {p99(unloaded):.1f} ms; sustainable {sustainable:.0f} req/s; 4x: accepted"
        f" {len(quadruple[200])} p99 {p99(quadruple[200]):.1f} ms ({ratio:.2f}x), refused {len(quadruple.get(503, []))}"
    )
    assert set(quadruple) <= {200, 503}
    assert ratio < 3, "accepted requests are answered within 3x the unloaded p99"
