"""A small client for `recmodel predict` and the demo: V1 or V2, optional Host header."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

_client: httpx.Client | None = None


def _shared_client(timeout: float) -> httpx.Client:
    """One pooled client: a new httpx client per call builds an SSL context (~50 ms) and a new connection."""
    global _client
    if _client is None:
        _client = httpx.Client(timeout=timeout)
    return _client


def as_instances(request: dict[str, Any]) -> dict[str, Any]:
    return request if "instances" in request else {"instances": [request]}


def predict(
    url: str, name: str, request: dict[str, Any], host: str | None = None, protocol: str = "v1", timeout: float = 30.0
) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if host:
        headers["host"] = host
    body = as_instances(request)
    client = _shared_client(timeout)
    started = time.perf_counter()
    if protocol == "v1":
        response = client.post(
            f"{url.rstrip('/')}/v1/models/{name}:predict", content=orjson.dumps(body), headers=headers
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
    else:
        v2 = {"inputs": [{"name": "request", "datatype": "BYTES", "shape": [1], "data": [orjson.dumps(body).decode()]}]}
        response = client.post(f"{url.rstrip('/')}/v2/models/{name}/infer", content=orjson.dumps(v2), headers=headers)
        response.raise_for_status()
        result = {"predictions": [orjson.loads(d) for d in response.json()["outputs"][0]["data"]]}
    result["latency_ms"] = (time.perf_counter() - started) * 1000
    return result


def explain(
    url: str, name: str, request: dict[str, Any], host: str | None = None, timeout: float = 60.0
) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if host:
        headers["host"] = host
    response = _shared_client(timeout).post(
        f"{url.rstrip('/')}/v1/models/{name}:explain", content=orjson.dumps(as_instances(request)), headers=headers
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result
