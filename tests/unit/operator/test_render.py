"""Pure rendering: the mapping rules of the RecModel API, checked as plain dicts."""

from __future__ import annotations

from typing import Any

from recmodel_operator.render.context import Owner, RenderContext
from recmodel_operator.render.desired import render_children
from recmodel_operator.spec import RecModelSpec

OWNER = Owner(name="home-feed-ranker", namespace="shop", uid="1234-uid", generation=3)


def children(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    context = RenderContext(owner=OWNER, spec=RecModelSpec.model_validate(spec))
    return {f"{c['kind']}/{c['metadata']['name']}": c for c in render_children(context, "http://prom:9090")}


GPU_SPEC = {
    "model": {"storageUri": "s3://models/home-feed-ranker/v7"},
    "resources": {"cpu": "2", "memory": "4Gi", "gpu": {"count": 1, "product": "NVIDIA-A100-SXM4-80GB"}},
    "placement": {
        "nodeSelector": {"pool": "ranking"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
    },
    "autoscaling": {"minReplicas": 2, "maxReplicas": 8, "metric": "cpu", "target": 70},
}


def test_kserve_backend_renders_an_inference_service_the_kserve_way() -> None:
    isvc = children(GPU_SPEC)["InferenceService/home-feed-ranker"]
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["modelFormat"] == {"name": "recmodel"}
    assert predictor["model"]["runtime"] == "recmodel"
    assert predictor["model"]["storageUri"] == "s3://models/home-feed-ranker/v7"
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["nodeSelector"] == {"pool": "ranking", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in predictor["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in predictor["tolerations"]
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleMetric"], predictor["scaleTarget"]) == (
        2,
        8,
        "cpu",
        70,
    )
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_every_child_is_owned_and_labelled() -> None:
    for spec in (GPU_SPEC, {**GPU_SPEC, "backend": "standalone", "ingress": {"enabled": True}}):
        for child in children(spec).values():
            meta = child["metadata"]
            assert meta["ownerReferences"][0]["uid"] == "1234-uid"
            assert meta["ownerReferences"][0]["controller"] is True
            assert meta["labels"]["app.kubernetes.io/instance"] == "home-feed-ranker"
            assert meta["labels"]["app.kubernetes.io/managed-by"] == "recmodel-operator"
            assert meta["labels"]["app.kubernetes.io/name"] == "recmodel"


def test_torchserve_runtime_uses_kserve_torchserve_with_settings_in_env() -> None:
    spec = {**GPU_SPEC, "runtime": "torchserve", "optimization": {"precision": "int8"}}
    model = children(spec)["InferenceService/home-feed-ranker"]["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "pytorch"}
    assert model["runtime"] == "kserve-torchserve"
    assert {"name": "RECMODEL_PRECISION", "value": "int8"} in model["env"]


def test_retrieval_settings_reach_the_server_on_both_runtimes_and_backends() -> None:
    spec = {**GPU_SPEC, "retrieval": {"enabled": False, "candidates": 300}}
    args = children(spec)["InferenceService/home-feed-ranker"]["spec"]["predictor"]["model"]["args"]
    assert "--retrieval=false" in args and "--retrieval-candidates=300" in args
    torchserve = children({**spec, "runtime": "torchserve"})["InferenceService/home-feed-ranker"]
    assert {"name": "RECMODEL_RETRIEVAL_CANDIDATES", "value": "300"} in torchserve["spec"]["predictor"]["model"]["env"]
    standalone = children({**spec, "backend": "standalone"})["Deployment/home-feed-ranker-predictor"]
    assert "--retrieval-candidates=300" in standalone["spec"]["template"]["spec"]["containers"][0]["args"]


def test_transformer_mode_adds_a_cpu_only_transformer() -> None:
    isvc = children({**GPU_SPEC, "preprocessing": {"mode": "transformer"}})["InferenceService/home-feed-ranker"]
    transformer = isvc["spec"]["transformer"]
    container = transformer["containers"][0]
    assert "--role=transformer" in container["args"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "nvidia.com/gpu.product" not in transformer.get("nodeSelector", {})
    assert "--role=predictor" in isvc["spec"]["predictor"]["model"]["args"]


def test_latency_autoscaling_renders_a_keda_scaled_object_on_p95() -> None:
    rendered = children(
        {**GPU_SPEC, "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "metric": "latency", "target": 30}}
    )
    scaled = rendered["ScaledObject/home-feed-ranker-predictor"]
    trigger = scaled["spec"]["triggers"][0]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "home-feed-ranker-predictor"
    assert "histogram_quantile(0.95" in trigger["metadata"]["query"]
    assert trigger["metadata"]["threshold"] == "30"
    isvc = rendered["InferenceService/home-feed-ranker"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    assert "scaleMetric" not in isvc["spec"]["predictor"]


def test_scale_down_window_reaches_the_hpa_through_keda_or_directly() -> None:
    window = {"scaleDown": {"stabilizationWindowSeconds": 20}}
    latency = {
        "minReplicas": 1,
        "maxReplicas": 4,
        "metric": "latency",
        "target": 30,
        "scaleDownStabilizationSeconds": 20,
    }
    scaled = children({**GPU_SPEC, "autoscaling": latency})["ScaledObject/home-feed-ranker-predictor"]
    assert scaled["spec"]["advanced"] == {"horizontalPodAutoscalerConfig": {"behavior": window}}
    cpu = {**GPU_SPEC["autoscaling"], "scaleDownStabilizationSeconds": 20}  # type: ignore[dict-item]
    hpa = children({**GPU_SPEC, "backend": "standalone", "autoscaling": cpu})
    assert hpa["HorizontalPodAutoscaler/home-feed-ranker-predictor"]["spec"]["behavior"] == window
    # Unset, Kubernetes' defaults stand: nothing is written.
    assert (
        "advanced"
        not in children({**GPU_SPEC, "autoscaling": {**latency, "scaleDownStabilizationSeconds": None}})[
            "ScaledObject/home-feed-ranker-predictor"
        ]["spec"]
    )


def test_canary_sets_kserve_canary_traffic() -> None:
    spec = {**GPU_SPEC, "canary": {"storageUri": "s3://models/home-feed-ranker/v8", "trafficPercent": 10}}
    predictor = children(spec)["InferenceService/home-feed-ranker"]["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["storageUri"] == "s3://models/home-feed-ranker/v8"


def test_standalone_renders_deployment_service_hpa_and_ingress() -> None:
    spec = {**GPU_SPEC, "backend": "standalone", "ingress": {"enabled": True, "className": "nginx"}}
    rendered = children(spec)
    assert set(rendered) == {
        "Deployment/home-feed-ranker-predictor",
        "Service/home-feed-ranker",
        "Ingress/home-feed-ranker",
        "HorizontalPodAutoscaler/home-feed-ranker-predictor",
    }
    pod = rendered["Deployment/home-feed-ranker-predictor"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["recmodel", "serve"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert pod["initContainers"][0]["args"] == ["fetch", "--uri=s3://models/home-feed-ranker/v7", "--out=/mnt/models"]
    assert "replicas" not in rendered["Deployment/home-feed-ranker-predictor"]["spec"]  # the HPA owns it
    hpa = rendered["HorizontalPodAutoscaler/home-feed-ranker-predictor"]["spec"]
    assert hpa["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert rendered["Ingress/home-feed-ranker"]["spec"]["rules"][0]["host"] == "home-feed-ranker.shop.example.com"


def test_standalone_canary_shares_the_service() -> None:
    spec = {
        "model": {"storageUri": "s3://m/v7"},
        "backend": "standalone",
        "autoscaling": {"minReplicas": 3, "maxReplicas": 3},
        "canary": {"storageUri": "s3://m/v8", "trafficPercent": 25},
    }
    rendered = children(spec)
    canary = rendered["Deployment/home-feed-ranker-predictor-canary"]
    service = rendered["Service/home-feed-ranker"]
    assert canary["spec"]["replicas"] == 1
    assert rendered["Deployment/home-feed-ranker-predictor"]["spec"]["replicas"] == 3
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in service["spec"]["selector"].items())


def test_a_shadow_canary_is_left_out_of_the_live_service() -> None:
    spec = {
        "model": {"storageUri": "s3://m/v7"},
        "backend": "standalone",
        "canary": {"storageUri": "s3://m/v8", "shadow": True, "mirrorPercent": 50},
    }
    context = RenderContext(owner=OWNER, spec=RecModelSpec.model_validate(spec), mirror=True)
    rendered = {f"{c['kind']}/{c['metadata']['name']}": c for c in render_children(context, "http://prom:9090")}
    selector = rendered["Service/home-feed-ranker"]["spec"]["selector"]
    canary_labels = rendered["Deployment/home-feed-ranker-predictor-canary"]["spec"]["template"]["metadata"]["labels"]
    stable_labels = rendered["Deployment/home-feed-ranker-predictor"]["spec"]["template"]["metadata"]["labels"]
    assert all(stable_labels[k] == v for k, v in selector.items())
    assert not all(canary_labels.get(k) == v for k, v in selector.items())  # copies only, through its own Service
    mirror = rendered["Service/home-feed-ranker-canary"]["spec"]["selector"]
    assert all(canary_labels[k] == v for k, v in mirror.items())


def test_pvc_storage_mounts_the_claim_instead_of_fetching() -> None:
    spec = {"model": {"storageUri": "pvc://models/ranker/v7"}, "backend": "standalone"}
    pod = children(spec)["Deployment/home-feed-ranker-predictor"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "models"
    assert "--model-dir=/mnt/models/ranker/v7" in pod["containers"][0]["args"]


def test_cpu_model_has_no_gpu_defaults() -> None:
    pod = children({"model": {"storageUri": "s3://m"}, "backend": "standalone"})[
        "Deployment/home-feed-ranker-predictor"
    ]
    spec = pod["spec"]["template"]["spec"]
    assert "nodeSelector" not in spec and "tolerations" not in spec
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]
