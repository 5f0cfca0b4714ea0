"""The request path for real: RecModels placed on the real nodes, whose pods the kubelet runs as
containers of the built `recmodel-server` image, reached through the ingress controller (nginx
driven by the Ingresses, Services and EndpointSlices in the API). Nothing here starts a server
or routes a request itself: the test applies RecModels and sends requests to the ingress's
address. (KServe's route and GPU placement on real nodes: test_real_node.py.)"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from devcluster.addons.prometheus import Prometheus
from devcluster.harness.fixtures import Tools
from devcluster.harness.servers import scraped
from devcluster.harness.testing import (
    PULL_TIMEOUT,
    OperatorProcess,
    apply,
    get_json,
    in_background,
    model_claim,
    on_real_nodes,
    pod_url,
    ready_pods,
    small_standalone,
    wait_for,
    wait_phase,
)
from recmodel_handlers.tools.samples import make_request

BODY = orjson.dumps({"instances": [make_request(1000)]})


def host(namespace: str) -> str:
    return f"ranker.{namespace}.shop.example"


@pytest.fixture
def models(operator: OperatorProcess, namespace: str, trained_model: Path, tmp_path: Path) -> Iterator[str]:
    """Two versions of the package (v1, v2) on a claim the pods mount; yields its name."""
    for version in ("v1", "v2"):
        shutil.copytree(trained_model, tmp_path / "models" / version)
    with model_claim(operator.tools, namespace, tmp_path / "models") as claim:
        yield claim


def ranker(server_image: str, uri: str, namespace: str, *, replicas: int = 2, **spec: Any) -> dict[str, Any]:
    """Two replicas (fixed) of a standalone ranker on the real nodes, at host(namespace)."""
    obj = small_standalone("ranker")
    obj["spec"].update(spec)
    obj["spec"]["resources"] = {"cpu": "500m", "memory": "2Gi"}
    obj["spec"]["autoscaling"] = {"minReplicas": replicas, "maxReplicas": replicas, "metric": "cpu", "target": 70}
    return on_real_nodes(obj, server_image, uri, host(namespace))


def rank_through_ingress(
    tools: Tools, host: str, path: str = "/v1/models/{name}:predict", name: str = ""
) -> httpx.Response:
    assert tools.ingress_url is not None
    return httpx.post(
        tools.ingress_url + path.format(name=name or host.split(".", maxsplit=1)[0]),
        content=BODY,
        headers={"host": host, "content-type": "application/json"},
        timeout=30,
    )


def test_ingress_spreads_requests_over_both_replicas(
    operator: OperatorProcess, namespace: str, models: str, server_image: str
) -> None:
    tools = operator.tools
    apply(tools, namespace, ranker(server_image, f"pvc://{models}/v1", namespace))
    selector = "app.kubernetes.io/instance=ranker"
    pods = wait_for(
        lambda: len(ready := ready_pods(tools, namespace, selector)) == 2 and ready,
        timeout=PULL_TIMEOUT,
        what="2 pods Ready by their readiness probes",
    )
    wait_phase(tools, namespace, "ranker", "Ready", timeout=60)
    for pod in pods:
        print(f"{pod['metadata']['name']} on {pod['spec']['nodeName']}: pod IP {pod['status']['podIP']}")
        assert pod["spec"]["nodeName"] == "real-node-1"
    before = {p["metadata"]["name"]: scraped(pod_url(p), "recmodel_requests_total", code="200") for p in pods}
    wait_for(lambda: rank_through_ingress(tools, host(namespace)).status_code == 200, timeout=30, what="the route")
    answers = [rank_through_ingress(tools, host(namespace)) for _ in range(40)]
    assert [a.status_code for a in answers] == [200] * 40
    assert all(len(a.json()["predictions"][0]["items"]) > 0 for a in answers)
    served = {
        p["metadata"]["name"]: scraped(pod_url(p), "recmodel_requests_total", code="200")
        - before[p["metadata"]["name"]]
        for p in pods
    }
    print(f"requests served per pod (their own /metrics): {served}")
    assert sum(served.values()) >= 40
    assert all(count >= 10 for count in served.values()), served
    # The cluster's Prometheus found the pods through the API server and scrapes them.
    assert tools.prometheus_url is not None
    wanted = {pod_url(p).removeprefix("http://") for p in pods}
    wait_for(
        lambda: (
            wanted
            <= {
                t["labels"]["instance"]
                for t in Prometheus(tools.prometheus_url).healthy_targets()
                if t["labels"].get("job") == "pods" and t["labels"].get("namespace") == namespace
            }
        ),
        timeout=30,
        what="Prometheus scraping both pods",
    )


class SteadyLoad:
    """`clients` closed-loop clients ranking through the ingress until stopped; every answer's
    status (0: no answer at all) is counted."""

    def __init__(self, tools: Tools, host: str, clients: int = 2) -> None:
        self.tools, self.host, self.clients = tools, host, clients
        self.codes: Counter[int] = Counter()
        self.errors: list[str] = []
        self.stop = threading.Event()

    def _client(self) -> None:
        while not self.stop.is_set():
            try:
                code = rank_through_ingress(self.tools, self.host).status_code
            except httpx.HTTPError as error:
                code = 0
                self.errors.append(repr(error))
            self.codes[code] += 1
            if code != 200:
                self.errors.append(f"HTTP {code}")

    @contextmanager
    def running(self) -> Iterator[SteadyLoad]:
        with in_background(self.stop, *[self._client] * self.clients):
            yield self


def test_rolling_update_through_the_ingress_loses_nothing(
    operator: OperatorProcess, namespace: str, models: str, server_image: str
) -> None:
    """A new model version under steady load: the Deployment surges a new pod, the kubelet
    starts it and its readiness probe passes, the ingress adds it; the old pod leaves the
    EndpointSlice, gets SIGTERM and drains. No request fails."""
    tools = operator.tools
    v1, v2 = f"pvc://{models}/v1", f"pvc://{models}/v2"
    # A queue budget of 50 ms, not the default 5: each new pod's startup takes one of this
    # machine's two cores from the replicas serving, and a request shed meanwhile (503 busy,
    # tests/serving/test_load.py's subject) is not a rollout's loss.
    server = {"maxQueueMs": 50}
    apply(tools, namespace, ranker(server_image, v1, namespace, server=server))
    selector = "app.kubernetes.io/instance=ranker"
    first = wait_for(
        lambda: len(ready := ready_pods(tools, namespace, selector)) == 2 and ready,
        timeout=PULL_TIMEOUT,
        what="2 pods Ready",
    )
    old = {p["metadata"]["name"] for p in first}
    wait_for(lambda: rank_through_ingress(tools, host(namespace)).status_code == 200, timeout=30, what="the route")
    with SteadyLoad(tools, host(namespace)).running() as load:
        time.sleep(3)
        before = sum(load.codes.values())
        apply(tools, namespace, ranker(server_image, v2, namespace, server=server))

        def rolled() -> list[dict[str, Any]] | None:
            pods = get_json(tools, "pods", "-n", namespace, "-l", selector)["items"]
            ready = ready_pods(tools, namespace, selector)
            fresh = [p for p in ready if p["metadata"]["name"] not in old]
            return fresh if len(fresh) == 2 and len(pods) == 2 else None

        new = wait_for(rolled, timeout=180, what="the rollout: 2 new pods Ready, the old ones gone")
        during = sum(load.codes.values()) - before
        time.sleep(3)
    served_by_new = {p["metadata"]["name"]: scraped(pod_url(p), "recmodel_requests_total", code="200") for p in new}
    print(
        f"\nanswers during the rollout and after: {dict(load.codes)} ({during} while it rolled); "
        f"served by the new pods: {served_by_new}"
    )
    assert load.errors == [], load.errors[:10]
    assert during >= 20, "the load ran through the rollout"
    assert all(count > 0 for count in served_by_new.values()), "traffic moved to the new pods"
