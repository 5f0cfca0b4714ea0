"""backend: kserve against KServe's real controller manager and webhooks (v0.20.0, Standard
mode, built from the Go module proxy by devcluster). Nothing here writes an InferenceService's
status: KServe does, from the Deployments it creates and the pods KWOK runs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devcluster.harness.fixtures import Tools
from devcluster.harness.testing import (
    GPU_TOLERATION,
    OperatorProcess,
    apply,
    condition,
    get_json,
    inference_service_ready,
    install_recmodel_runtime,
    sample,
    wait_for,
    wait_phase,
)

pytestmark = pytest.mark.cluster


def _kserve_deployment(tools: Tools, namespace: str, name: str) -> dict[str, Any]:
    """The Deployment KServe made for the predictor, found by KServe's own label."""
    items = get_json(
        tools, "deployments", "-n", namespace, "-l", f"serving.kserve.io/inferenceservice={name},component=predictor"
    )["items"]
    assert len(items) == 1, [i["metadata"]["name"] for i in items]
    return dict(items[0])


def test_a_cpu_model_is_ready_when_kserve_says_so(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    apply(tools, namespace, sample("01-cpu-kserve.yaml"))
    isvc = inference_service_ready(tools, namespace, "search-ranker-cpu")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert isvc["status"]["deploymentMode"] == "Standard"
    ready = wait_phase(tools, namespace, "search-ranker-cpu", "Ready")
    assert ready["status"]["url"] == isvc["status"]["url"]
    deployment = _kserve_deployment(tools, namespace, "search-ranker-cpu")
    assert ready["status"]["replicas"]["ready"] == deployment["status"]["readyReplicas"] == 1
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/recmodel/recmodel-server:0.1.0"  # our ClusterServingRuntime
    assert container["args"][:2] == ["recmodel", "serve"] and "--role=all" in container["args"]
    pods = get_json(tools, "pods", "-n", namespace, "-l", "serving.kserve.io/inferenceservice=search-ranker-cpu")
    init = [c["name"] for p in pods["items"] for c in p["spec"].get("initContainers", [])]
    assert "storage-initializer" in init, "KServe's pod webhook injects the storage initializer for s3://"


def test_gpu_placement_reaches_the_deployment_kserve_creates(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = sample("02-gpu-a100.yaml")
    obj["spec"]["resources"]["gpu"]["count"] = 2
    obj["spec"]["placement"] = {"nodeSelector": {"kubernetes.io/os": "linux"}}
    apply(tools, namespace, obj)
    inference_service_ready(tools, namespace, "home-feed-ranker")
    pod_spec = _kserve_deployment(tools, namespace, "home-feed-ranker")["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod_spec["nodeSelector"] == {"kubernetes.io/os": "linux", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert GPU_TOLERATION in pod_spec["tolerations"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    wait_phase(tools, namespace, "home-feed-ranker", "Ready")
    wait_for(  # minReplicas 2: KServe's HPA scales the Deployment it made up to 2
        lambda: (
            (get_json(tools, "recmodel", "home-feed-ranker", "-n", namespace)["status"]["replicas"])
            == {"desired": 2, "ready": 2}
        ),
        what="2 of 2 replicas ready",
    )
    pods = get_json(tools, "pods", "-n", namespace, "-l", "serving.kserve.io/inferenceservice=home-feed-ranker")
    assert len(pods["items"]) == 2
    assert {p["spec"]["nodeName"] for p in pods["items"]} <= {"gpu-a100-1", "gpu-a100-2"}


def test_torchserve_runs_on_kserves_own_runtime(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    apply(tools, namespace, sample("03-torchserve.yaml"))
    isvc = inference_service_ready(tools, namespace, "search-ranker-torchserve")
    assert isvc["status"]["clusterServingRuntimeName"] == "kserve-torchserve"
    container = _kserve_deployment(tools, namespace, "search-ranker-torchserve")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["image"].startswith("pytorch/torchserve-kfs")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env["RECMODEL_PRECISION"] == "int8"
    wait_phase(tools, namespace, "search-ranker-torchserve", "Ready")


def test_transformer_mode_gets_a_cpu_transformer_in_front_of_the_predictor(
    operator: OperatorProcess, namespace: str
) -> None:
    tools = operator.tools
    obj = sample("02-gpu-a100.yaml")
    obj["metadata"]["name"] = "split-ranker"
    obj["spec"]["preprocessing"] = {"mode": "transformer"}
    apply(tools, namespace, obj)
    inference_service_ready(tools, namespace, "split-ranker")
    transformer = get_json(
        tools,
        "deployments",
        "-n",
        namespace,
        "-l",
        "serving.kserve.io/inferenceservice=split-ranker,component=transformer",
    )["items"]
    assert len(transformer) == 1
    spec = transformer[0]["spec"]["template"]["spec"]
    assert "--role=transformer" in spec["containers"][0]["args"]
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"].get("limits", {})
    predictor = _kserve_deployment(tools, namespace, "split-ranker")["spec"]["template"]["spec"]["containers"][0]
    assert "--role=predictor" in predictor["args"]
    wait_phase(tools, namespace, "split-ranker", "Ready")


def _serving_cpu_model(tools: Tools, namespace: str) -> tuple[dict[str, Any], int]:
    """The CPU sample, Ready, and the generation of its InferenceService."""
    obj = sample("01-cpu-kserve.yaml")
    apply(tools, namespace, obj)
    wait_phase(tools, namespace, "search-ranker-cpu", "Ready", timeout=90)
    return obj, int(get_json(tools, "inferenceservice", "search-ranker-cpu", "-n", namespace)["metadata"]["generation"])


def test_a_canary_needs_knative_and_the_running_version_keeps_serving(
    operator: OperatorProcess, namespace: str
) -> None:
    tools = operator.tools
    obj, generation = _serving_cpu_model(tools, namespace)
    with_canary = copy.deepcopy(obj)
    with_canary["spec"]["canary"] = {"storageUri": "s3://models/search-ranker/v4", "trafficPercent": 10}
    apply(tools, namespace, with_canary)
    degraded = wait_phase(tools, namespace, "search-ranker-cpu", "Degraded")
    reconciled = condition(degraded, "Reconciled")
    assert reconciled is not None and reconciled["reason"] == "KnativeNotInstalled"
    assert "canary" in reconciled["message"] and "Knative Serving is not installed" in reconciled["message"]
    assert condition(degraded, "Ready")["status"] == "True"  # type: ignore[index]
    isvc = get_json(tools, "inferenceservice", "search-ranker-cpu", "-n", namespace)
    assert isvc["metadata"]["generation"] == generation, "nothing was half-applied"
    apply(tools, namespace, obj)  # the canary removed again
    wait_phase(tools, namespace, "search-ranker-cpu", "Ready")
    # A new RecModel that needs Knative creates nothing at all.
    apply(tools, namespace, sample("06-canary.yaml"))
    failed = wait_phase(tools, namespace, "checkout-recs", "Failed")
    assert condition(failed, "Ready")["reason"] == "KnativeNotInstalled"  # type: ignore[index]
    assert get_json(tools, "inferenceservice", "checkout-recs", "-n", namespace) is None
    assert "url" not in failed["status"]


def test_an_edit_kserves_webhook_refuses_is_reported_and_nothing_changes(
    operator: OperatorProcess, namespace: str
) -> None:
    tools = operator.tools
    obj, before = _serving_cpu_model(tools, namespace)
    edited = copy.deepcopy(obj)
    edited["spec"]["autoscaling"]["target"] = 150  # our CRD allows it; KServe's HPA validation does not
    apply(tools, namespace, edited)
    degraded = wait_phase(tools, namespace, "search-ranker-cpu", "Degraded")
    reconciled = condition(degraded, "Reconciled")
    assert reconciled is not None and reconciled["reason"] == "ChildRejected"
    assert "inferenceservice.kserve-webhook-server.validator" in reconciled["message"]
    assert "[1-100]" in reconciled["message"]
    assert get_json(tools, "inferenceservice", "search-ranker-cpu", "-n", namespace)["metadata"]["generation"] == before
    apply(tools, namespace, obj)
    wait_for(
        lambda: (
            (condition(get_json(tools, "recmodel", "search-ranker-cpu", "-n", namespace), "Reconciled") or {}).get(
                "status"
            )
            == "True"
        ),
        what="recovered",
    )


def test_a_missing_serving_runtime_is_named_from_kserves_status_and_recovers(
    operator: OperatorProcess, namespace: str
) -> None:
    tools = operator.tools
    tools.kubectl_run("delete", "clusterservingruntime", "recmodel", "--wait=true")
    try:
        apply(tools, namespace, sample("01-cpu-kserve.yaml"))

        def ready_message() -> str:
            found = condition(get_json(tools, "recmodel", "search-ranker-cpu", "-n", namespace), "Ready") or {}
            return str(found.get("message", ""))

        wait_for(lambda: "RuntimeNotRecognized" in ready_message(), timeout=30, what="KServe's failure in status")
        message = ready_message()
        assert "KServe reports RuntimeNotRecognized" in message and "(recmodel)" in message, message
        rm = get_json(tools, "recmodel", "search-ranker-cpu", "-n", namespace)
        assert rm["status"]["phase"] == "Progressing"
    finally:
        install_recmodel_runtime(tools)
    wait_phase(tools, namespace, "search-ranker-cpu", "Ready", timeout=240)
