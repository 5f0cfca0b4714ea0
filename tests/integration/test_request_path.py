"""The request path for real: RecModels placed on the process nodes, whose pods the node agent
runs as model-server processes, reached through the ingress controller (nginx driven by the
Ingresses, Services and EndpointSlices in the API). Nothing here starts a server or routes a
request itself: the test applies RecModels and sends requests to the ingress's address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson

from devcluster.fixtures import Tools
from devcluster.nodes import PROCESS_PLACEMENT
from devcluster.podnet import loopback_twin
from devcluster.servers import scraped
from devcluster.testing import OperatorProcess, apply, get_json, publish_model, small_standalone, wait_for, wait_phase
from recmodel_handlers.samples import make_request

BODY = orjson.dumps({"instances": [make_request(1000)]})


def on_process_nodes(name: str, uri: str, *, replicas: int = 2, **spec: Any) -> dict[str, Any]:
    obj = small_standalone(name)
    obj["spec"].update(
        {
            "model": {"storageUri": uri},
            "placement": PROCESS_PLACEMENT,
            "resources": {"cpu": "500m", "memory": "1Gi"},
            "autoscaling": {"minReplicas": replicas, "maxReplicas": replicas, "metric": "cpu", "target": 70},
            "ingress": {"enabled": True, "host": f"{name}.shop.example"},
            **spec,
        }
    )
    return obj


def ready_pods(tools: Tools, namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = get_json(tools, "pods", "-n", namespace, "-l", selector)["items"]
    return [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
    ]


def pod_url(pod: dict[str, Any]) -> str:
    return f"http://{loopback_twin(pod['status']['podIP'])}:8080"


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
    operator: OperatorProcess, namespace: str, trained_model: Path
) -> None:
    tools = operator.tools
    uri = publish_model(tools, f"s3://models/{namespace}/ranker/v1", trained_model)
    apply(tools, namespace, on_process_nodes("ranker", uri))
    selector = "app.kubernetes.io/instance=ranker"
    pods = wait_for(
        lambda: len(ready := ready_pods(tools, namespace, selector)) == 2 and ready,
        timeout=120,
        what="2 pods Ready by their readiness probes",
    )
    wait_phase(tools, namespace, "ranker", "Ready", timeout=60)
    for pod in pods:
        print(f"{pod['metadata']['name']} on {pod['spec']['nodeName']}: pod IP {pod['status']['podIP']}")
        assert pod["spec"]["nodeName"] == "process-node-1"
    before = {p["metadata"]["name"]: scraped(pod_url(p), "recmodel_requests_total", code="200") for p in pods}
    host = "ranker.shop.example"
    wait_for(lambda: rank_through_ingress(tools, host).status_code == 200, timeout=30, what="the route")
    answers = [rank_through_ingress(tools, host) for _ in range(40)]
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
