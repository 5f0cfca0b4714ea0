"""Reads the canary analysis's measurements from Prometheus's HTTP API (instant queries)."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request

from recmodel_operator.analysis import Measurements


class MetricsUnavailable(Exception):
    """Prometheus could not answer: no decision is taken on missing evidence."""


class PrometheusReader:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def value(self, promql: str) -> float | None:
        """The single value of an instant query; None when empty or NaN (no data)."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise MetricsUnavailable(f"Prometheus at {self.url}: {error}") from None
        if body.get("status") != "success":
            raise MetricsUnavailable(f"Prometheus at {self.url} refused {promql!r}: {body.get('error')}")
        result = body["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) or math.isinf(value) else value

    def measure(self, queries: dict[str, str]) -> Measurements:
        values = {name: self.value(promql) for name, promql in queries.items()}
        return Measurements(
            p95_ms=values["p95_ms"],
            error_rate=values["error_rate"],
            agreement=values["agreement"],
            requests=values["requests"] or 0.0,
            comparisons=values["comparisons"] or 0.0,
        )
