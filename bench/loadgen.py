"""A bounded load generator for loopback: N threads with keep-alive connections send the same
pre-encoded request until a request count or a time limit is reached, then stop."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlparse


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": self.percentile(0.50),
            "p95_ms": self.percentile(0.95),
            "p99_ms": self.percentile(0.99),
            "mean_ms": statistics.fmean(self.latencies_ms) if self.latencies_ms else float("nan"),
            "rps": self.rps,
        }


def run_load(
    url: str,
    body: bytes,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    warmup: int = 3,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """POSTs `body` to `url` (loopback only) from `concurrency` threads."""
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise ValueError("load tests target loopback only")
    host, port, path = parsed.hostname, parsed.port or 80, parsed.path
    headers = headers or {"content-type": "application/json"}
    lock = threading.Lock()
    latencies: list[float] = []
    counters = {"sent": 0, "errors": 0}
    warmed_up = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=300)
        for _ in range(warmup):
            connection.request("POST", path, body=body, headers=headers)
            connection.getresponse().read()
        warmed_up.wait()
        while True:
            with lock:
                # Every run measures at least one request per thread, however slow.
                if counters["sent"] >= max(max_requests, 1) or (
                    counters["sent"] >= concurrency and time.monotonic() > deadline[0]
                ):
                    break
                counters["sent"] += 1
            started = time.perf_counter()
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if response.status == 200:
                    latencies.append(elapsed)
                else:
                    counters["errors"] += 1
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    warmed_up.wait()
    started = time.monotonic()
    deadline[0] = started + max_seconds
    for thread in threads:
        thread.join()
    return LoadResult(concurrency, len(latencies), counters["errors"], time.monotonic() - started, latencies)
