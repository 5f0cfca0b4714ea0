"""The operator against a real API server, scheduler and controllers, with the real KServe,
KEDA and Prometheus-operator CRDs validating every child it writes.

KServe's controller runs in the cluster (Standard mode, webhooks on): InferenceServices are
Ready when KServe says so. The operator runs as the chart's ServiceAccount, with the chart's RBAC.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from devcluster.harness.fixtures import Tools
from devcluster.harness.testing import (
    OperatorProcess,
    apply,
    condition,
    get_json,
    operator_api_requests,
    recmodel,
    sample,
    wait_for,
    wait_phase,
)

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize(
    ("file", "children"),
    [
        ("01-cpu-kserve.yaml", ["inferenceservice/search-ranker-cpu"]),
        ("02-gpu-a100.yaml", ["inferenceservice/home-feed-ranker"]),
        ("03-torchserve.yaml", ["inferenceservice/search-ranker-torchserve"]),
        (
            "04-standalone-hpa.yaml",
            [
                "deployment/category-ranker-predictor",
                "service/category-ranker",
                "hpa/category-ranker-predictor",
                "ingress/category-ranker",
            ],
        ),
        (
            "05-latency-autoscaling.yaml",
            ["inferenceservice/similar-items-ranker", "scaledobject/similar-items-ranker-predictor"],
        ),
        ("09-retrieval.yaml", ["inferenceservice/home-feed-retrieval"]),
    ],
)
def test_every_sample_produces_children_the_real_api_accepts(
    operator: OperatorProcess, namespace: str, file: str, children: list[str]
) -> None:
    tools = operator.tools
    obj = sample(file)
    apply(tools, namespace, obj)
    for child in children:
        found = wait_for(lambda c=child: get_json(tools, c, "-n", namespace), what=child)
        assert found["metadata"]["ownerReferences"][0]["name"] == obj["metadata"]["name"]
    rm = wait_for(
        lambda: (r := recmodel(tools, namespace, obj["metadata"]["name"])) and condition(r, "Reconciled") and r
    )
    assert condition(rm, "Reconciled")["status"] == "True"  # type: ignore[index]
    gpu = obj["spec"].get("resources", {}).get("gpu")
    if gpu and children[0].startswith("inferenceservice"):
        predictor = get_json(tools, children[0], "-n", namespace)["spec"]["predictor"]
        assert predictor["nodeSelector"]["nvidia.com/gpu.product"] == gpu["product"]
        assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == str(gpu["count"])
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in predictor["tolerations"]


def test_standalone_pods_land_on_gpu_nodes_and_become_ready(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = sample("04-standalone-hpa.yaml")
    obj["metadata"]["name"] = "gpu-standalone"
    obj["spec"]["resources"]["gpu"] = {"count": 2, "product": "NVIDIA-A100-SXM4-80GB"}
    obj["spec"]["autoscaling"] = {"minReplicas": 3, "maxReplicas": 3, "metric": "cpu", "target": 70}
    apply(tools, namespace, obj)
    ready = wait_phase(tools, namespace, "gpu-standalone", "Ready")
    assert ready["status"]["replicas"] == {"desired": 3, "ready": 3}
    assert condition(ready, "Ready")["reason"] == "Available"  # type: ignore[index]
    assert ready["status"]["url"] == "http://category-ranker.shop.example.com"
    pods = get_json(tools, "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=gpu-standalone")["items"]
    assert len(pods) == 3
    assert {p["spec"]["nodeName"] for p in pods} <= {"gpu-a100-1", "gpu-a100-2"}


def test_kserve_backend_is_ready_once_the_inference_service_is(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = sample("01-cpu-kserve.yaml")
    apply(tools, namespace, obj)
    ready = wait_phase(tools, namespace, "search-ranker-cpu", "Ready", timeout=90)  # KServe's own Ready
    assert ready["status"]["url"] == f"http://search-ranker-cpu-{namespace}.example.com"  # KServe's domain template
    events = get_json(tools, "events", "-n", namespace, "--field-selector", "involvedObject.name=search-ranker-cpu")[
        "items"
    ]
    assert any(e["reason"] == "Ready" for e in events)


def test_spec_edits_reach_children_and_deleted_children_come_back(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = sample("04-standalone-hpa.yaml")
    apply(tools, namespace, obj)
    wait_for(lambda: get_json(tools, "hpa/category-ranker-predictor", "-n", namespace))
    edited = copy.deepcopy(obj)
    edited["spec"]["autoscaling"]["maxReplicas"] = 9
    edited["spec"]["optimization"] = {"precision": "bf16"}
    apply(tools, namespace, edited)
    wait_for(
        lambda: get_json(tools, "hpa/category-ranker-predictor", "-n", namespace)["spec"]["maxReplicas"] == 9,
        what="HPA max 9",
    )
    wait_for(
        lambda: (
            "--precision=bf16"
            in get_json(tools, "deployment/category-ranker-predictor", "-n", namespace)["spec"]["template"]["spec"][
                "containers"
            ][0]["args"]
        ),
        what="deployment args updated",
    )
    tools.kubectl_run("delete", "service", "category-ranker", "-n", namespace)
    restored = wait_for(lambda: get_json(tools, "service/category-ranker", "-n", namespace), what="service restored")
    assert restored["metadata"]["ownerReferences"][0]["name"] == "category-ranker"
    # Manual drift is put back too.
    tools.kubectl_run(
        "patch", "hpa", "category-ranker-predictor", "-n", namespace, "--type=merge", "-p", '{"spec":{"maxReplicas":2}}'
    )
    wait_for(
        lambda: get_json(tools, "hpa/category-ranker-predictor", "-n", namespace)["spec"]["maxReplicas"] == 9,
        what="drift undone",
    )
    # Turning the ingress off prunes it.
    edited["spec"]["ingress"] = {"enabled": False}
    apply(tools, namespace, edited)
    wait_for(lambda: get_json(tools, "ingress/category-ranker", "-n", namespace) is None, what="ingress pruned")


def test_deleting_the_recmodel_removes_all_children(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = sample("04-standalone-hpa.yaml")
    apply(tools, namespace, obj)
    wait_phase(tools, namespace, "category-ranker", "Ready")
    tools.kubectl_run("delete", "recmodel", "category-ranker", "-n", namespace, "--wait=true", "--timeout=60s")
    for child in (
        "deployment/category-ranker-predictor",
        "service/category-ranker",
        "hpa/category-ranker-predictor",
        "ingress/category-ranker",
    ):
        wait_for(lambda c=child: get_json(tools, c, "-n", namespace) is None, what=f"{child} collected")
    wait_for(lambda: not get_json(tools, "pods", "-n", namespace)["items"], what="pods gone")


def test_gpu_no_node_has_is_not_schedulable(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = sample("02-gpu-a100.yaml")
    obj["spec"]["resources"]["gpu"]["product"] = "NVIDIA-H100-80GB-HBM3"
    apply(tools, namespace, obj)
    pending = wait_phase(tools, namespace, "home-feed-ranker", "Pending")
    schedulable = condition(pending, "Schedulable")
    assert schedulable is not None and schedulable["status"] == "False"
    # Before KServe's pod exists the operator says which node it lacks; once the pod exists, the
    # scheduler's own words replace that.
    if schedulable["reason"] == "NoMatchingNodes":
        assert "NVIDIA-H100-80GB-HBM3" in schedulable["message"]
    else:
        assert schedulable["reason"] == "Unschedulable"
        assert "didn't match Pod's node affinity/selector" in schedulable["message"], schedulable["message"]


def test_standalone_unschedulable_pods_report_the_scheduler_reason(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = sample("04-standalone-hpa.yaml")
    obj["spec"]["resources"]["gpu"] = {"count": 9, "product": "NVIDIA-A100-SXM4-80GB"}
    obj["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1}
    apply(tools, namespace, obj)
    pending = wait_phase(tools, namespace, "category-ranker", "Pending")
    schedulable = condition(pending, "Schedulable")
    assert schedulable is not None and schedulable["status"] == "False"
    assert schedulable["reason"] in ("Unschedulable", "NoMatchingNodes")
    unschedulable = wait_for(
        lambda: (
            (c := condition(recmodel(tools, namespace, "category-ranker"), "Schedulable"))
            and c["reason"] == "Unschedulable"
            and c
        ),
        what="scheduler's reason",
    )
    assert "Insufficient nvidia.com/gpu" in unschedulable["message"]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"autoscaling": {"minReplicas": -1}}, "minReplicas"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas must not exceed maxReplicas"),
        ({"optimization": {"precision": "int4"}}, "precision"),
        ({"model": {}}, "storageUri"),
        ({"canary": {"storageUri": "s3://m/v8", "trafficPercent": 150}}, "trafficPercent"),
        ({"runtime": "torchserve", "preprocessing": {"mode": "transformer"}}, "transformer needs runtime kserve"),
        ({"runtime": "torchserve", "autoscaling": {"metric": "latency"}}, "runtime torchserve does not export"),
        ({"autoscaling": {"metric": "cpu", "scaleDownStabilizationSeconds": 30}}, "KServe's own autoscaler"),
        (
            {"backend": "standalone", "canary": {"storageUri": "s3://m/v8", "analysis": {"steps": [50, 10]}}},
            "steps must increase",
        ),
        ({"canary": {"storageUri": "s3://m/v8", "shadow": True}}, "need backend standalone"),
        ({"retrieval": {"candidates": 2000}}, "retrieval.candidates must not exceed ranking.maxCandidates"),
        (
            {"ranking": {"maxCandidates": 300}, "retrieval": {"candidates": 400}},
            "retrieval.candidates must not exceed ranking.maxCandidates",
        ),
    ],
)
def test_invalid_specs_are_refused_by_the_api_server(
    crds: Tools, namespace: str, patch: dict[str, Any], message: str
) -> None:
    obj = sample("01-cpu-kserve.yaml")
    obj["spec"] = {**obj["spec"], **patch}
    result = apply(crds, namespace, obj, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_errors_the_schema_cannot_catch_create_nothing(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = sample("04-standalone-hpa.yaml")
    obj["metadata"]["name"] = "bad-affinity"
    obj["spec"]["placement"] = {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": "all"}}}
    }
    apply(tools, namespace, obj)
    failed = wait_phase(tools, namespace, "bad-affinity", "Failed")
    ready = condition(failed, "Ready")
    assert ready is not None and ready["status"] == "False" and ready["reason"] == "ChildRejected"
    assert "Deployment/bad-affinity-predictor" in ready["message"]
    for kind in ("deployments", "services", "hpa", "ingresses"):
        assert get_json(tools, kind, "-n", namespace)["items"] == [], kind
    long_name = sample("04-standalone-hpa.yaml")
    long_name["metadata"]["name"] = "a-ranking-model-with-a-name-far-too-long-for-children"
    apply(tools, namespace, long_name)
    too_long = wait_phase(tools, namespace, long_name["metadata"]["name"], "Failed")
    assert condition(too_long, "Ready")["reason"] == "NameTooLong"  # type: ignore[index]
    # Fixing the spec recovers: the operator is still alive and converges.
    obj["spec"]["placement"] = {}
    apply(tools, namespace, obj)
    wait_phase(tools, namespace, "bad-affinity", "Ready")
    assert operator.healthy()


def test_restarted_operator_converges_without_duplicates(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = sample("04-standalone-hpa.yaml")
    apply(tools, namespace, obj)
    wait_phase(tools, namespace, "category-ranker", "Ready")
    operator.stop()
    edited = copy.deepcopy(obj)
    edited["spec"]["autoscaling"]["maxReplicas"] = 7
    apply(tools, namespace, edited)
    operator.start()
    wait_for(
        lambda: get_json(tools, "hpa/category-ranker-predictor", "-n", namespace)["spec"]["maxReplicas"] == 7,
        what="caught up",
    )
    wait_phase(tools, namespace, "category-ranker", "Ready")
    assert len(get_json(tools, "deployments", "-n", namespace)["items"]) == 1
    assert len(get_json(tools, "hpa", "-n", namespace)["items"]) == 1
    before = _spec_versions(tools, namespace)
    operator.stop()
    operator.start()
    time.sleep(2)
    writes_before = operator_api_requests(tools)["writes"]
    time.sleep(5)
    # Counted by the API server (the operator's own FlowSchema), not by the operator.
    assert operator_api_requests(tools)["writes"] == writes_before, "the operator wrote while nothing changed"
    assert _spec_versions(tools, namespace) == before  # no child was rewritten by the operator


def _spec_versions(tools: Tools, namespace: str) -> dict[str, str]:
    """When the operator last wrote each child (its own entry in managedFields)."""
    items = get_json(tools, "deployments,services,hpa,ingress", "-n", namespace, "--show-managed-fields")["items"]
    return {
        f"{d['kind']}/{d['metadata']['name']}": next(
            m["time"]
            for m in d["metadata"]["managedFields"]
            if m["manager"] == "recmodel-operator" and m["operation"] == "Apply"
        )
        for d in items
    }
