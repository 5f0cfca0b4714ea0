"""The PromQL the operator renders for KEDA, run by a real Prometheus against a real model
server: every query finds the series the server exports (runtime kserve)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.addons.prometheus import Prometheus, Target, running_prometheus
from devcluster.build.versions import VEGETA_VERSION, bin_dir
from devcluster.harness.servers import kserve_server
from recmodel_handlers.tools.samples import make_request
from recmodel_operator.render.autoscaling import prometheus_query
from recmodel_operator.render.context import Owner, RenderContext
from recmodel_operator.spec import RecModelSpec


def context(metric: str) -> RenderContext:
    spec = RecModelSpec.model_validate(
        {"model": {"storageUri": "s3://m/v7"}, "backend": "standalone", "autoscaling": {"metric": metric}}
    )
    return RenderContext(owner=Owner("ranker", "shop", "uid"), spec=spec)


@pytest.fixture(scope="module")
def prometheus(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    work = tmp_path_factory.mktemp("prometheus")
    with kserve_server(trained_model, "ranker", work / "serve.log") as url:
        labels = {"namespace": "shop", "pod": "ranker-predictor-0"}  # what pod discovery would add
        with running_prometheus([Target(url.removeprefix("http://"), labels)], work) as server:
            body = work / "request.json"
            body.write_text(json.dumps({"instances": [make_request(1000)]}))
            target = f"POST {url}/v1/models/ranker:predict\nContent-Type: application/json\n@{body}\n"
            subprocess.run(
                [str(bin_dir() / f"vegeta-{VEGETA_VERSION}"), "attack", "-rate=20/s", "-duration=10s"],
                input=target.encode(),
                capture_output=True,
                check=True,
            )
            time.sleep(3)  # two more scrapes
            yield server


def test_latency_query_reads_the_servers_histogram(prometheus: Prometheus) -> None:
    query, metric_type = prometheus_query(context("latency"))
    p95_ms = prometheus.value(query)
    assert metric_type == "Value"
    assert p95_ms is not None and 1 < p95_ms < 250, (query, p95_ms)


def test_rps_query_counts_the_requests(prometheus: Prometheus) -> None:
    query, _ = prometheus_query(context("rps"))
    rps = prometheus.value(query)
    # rate() divides by its whole 1m range: 200 requests sent in 10 s read as about 200/60
    assert rps is not None and 1 < rps < 10, (query, rps)


def test_concurrency_query_finds_the_gauge(prometheus: Prometheus) -> None:
    query, _ = prometheus_query(context("concurrency"))
    assert prometheus.query(query), query  # the series exists (idle now: 0)


def test_a_query_on_series_nobody_exports_is_empty(prometheus: Prometheus) -> None:
    assert prometheus.query('sum(rate(ts_inference_requests_total{namespace="shop"}[1m]))') == []
