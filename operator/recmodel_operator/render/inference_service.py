"""backend kserve: one serving.kserve.io/v1beta1 InferenceService, written as KServe users write them."""

from __future__ import annotations

from typing import Any

from recmodel_operator.render import pod
from recmodel_operator.render.context import MODEL_DIR, MODEL_SERVER_PORT, RenderContext
from recmodel_operator.serving_contract import SERVE_COMMAND, serve_args, tuning_args, tuning_env
from recmodel_operator.spec import RecModelSpec

Obj = dict[str, Any]

RECMODEL_RUNTIME = "recmodel"  # the ClusterServingRuntime the chart ships
TORCHSERVE_RUNTIME = "kserve-torchserve"  # KServe's own
HPA_METRICS = ("cpu", "memory")
KNATIVE_METRICS = ("concurrency", "rps")


DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
STANDARD, KNATIVE = "Standard", "Knative"  # KServe 0.20's names (formerly RawDeployment, Serverless)


def predictor_deployment_name(name: str) -> str:
    """The Deployment KServe creates for the predictor in Standard mode."""
    return f"{name}-predictor"


def knative_features(spec: RecModelSpec) -> list[str]:
    """What in the spec only KServe's Knative mode can do (empty: Standard mode serves it)."""
    needs = []
    scales = spec.autoscaling.min_replicas != spec.autoscaling.max_replicas
    if scales and spec.autoscaling.metric in KNATIVE_METRICS:
        needs.append(f"autoscaling.metric {spec.autoscaling.metric}")
    if spec.canary is not None:
        needs.append("canary")
    return needs


def deployment_mode(spec: RecModelSpec) -> str:
    """Standard (raw Deployments; cpu/memory/latency scaling) unless a Knative feature is asked for."""
    return KNATIVE if knative_features(spec) else STANDARD


def _annotations(spec: RecModelSpec) -> dict[str, str]:
    annotations = {DEPLOYMENT_MODE_ANNOTATION: deployment_mode(spec)}
    if deployment_mode(spec) == STANDARD:
        # latency is scaled by our own KEDA ScaledObject; KServe must not add an HPA of its own.
        annotations["serving.kserve.io/autoscalerClass"] = (
            "hpa" if spec.autoscaling.metric in HPA_METRICS else "external"
        )
    return annotations


def _scaling(spec: RecModelSpec) -> Obj:
    scaling: Obj = {"minReplicas": spec.autoscaling.min_replicas, "maxReplicas": spec.autoscaling.max_replicas}
    if spec.autoscaling.metric != "latency":
        scaling["scaleMetric"] = spec.autoscaling.metric
        scaling["scaleTarget"] = spec.autoscaling.target
    return scaling


def _model(context: RenderContext) -> Obj:
    spec = context.spec
    storage_uri = spec.canary.storage_uri if spec.canary else spec.model.storage_uri
    model: Obj = {"storageUri": storage_uri, "resources": pod.resources(spec)}
    if spec.runtime == "torchserve":
        model |= {"modelFormat": {"name": "pytorch"}, "runtime": TORCHSERVE_RUNTIME, "protocolVersion": "v1"}
        model["env"] = [*tuning_env(spec), *pod.threads_env(spec)]
    else:
        model |= {"modelFormat": {"name": "recmodel"}, "runtime": RECMODEL_RUNTIME, "protocolVersion": "v2"}
        role = "predictor" if spec.preprocessing.mode == "transformer" else "all"
        model["args"] = [f"--role={role}", *tuning_args(spec)]
        model["env"] = pod.threads_env(spec)
        if spec.image:
            model["image"] = spec.image
    return model


def _transformer(context: RenderContext) -> Obj:
    """Feature building on CPU pods; KServe adds --predictor_host and --model_name."""
    spec = context.spec
    args = serve_args(spec, name=context.owner.name, model_dir=MODEL_DIR, port=MODEL_SERVER_PORT, role="transformer")
    return {
        "minReplicas": spec.autoscaling.min_replicas,
        "maxReplicas": spec.autoscaling.max_replicas,
        "scaleMetric": "cpu",
        "scaleTarget": 70,
        **pod.placement(spec, with_gpu=False),
        **pod.termination(spec),
        "securityContext": pod.pod_security_context(),
        "containers": [
            {
                "name": "kserve-container",
                "image": context.image,
                "command": list(SERVE_COMMAND),
                "args": args,
                # STORAGE_URI makes KServe's storage initializer fetch the feature statistics too.
                "env": [{"name": "STORAGE_URI", "value": spec.model.storage_uri}, *pod.threads_env(spec)],
                "ports": [{"containerPort": MODEL_SERVER_PORT, "protocol": "TCP"}],
                "resources": pod.resources(spec, with_gpu=False),
                "securityContext": pod.container_security_context(),
                **pod.http_probes(),
            }
        ],
    }


def render_inference_service(context: RenderContext) -> Obj:
    spec = context.spec
    predictor: Obj = {
        **_scaling(spec),
        **pod.placement(spec),
        **pod.termination(spec),
        "securityContext": pod.pod_security_context(),
        "model": _model(context),
    }
    if spec.canary is not None:
        # KServe canary: the latest revision (the canary model) takes trafficPercent,
        # the previously rolled-out revision keeps the rest.
        predictor["canaryTrafficPercent"] = spec.canary.traffic_percent
    body: Obj = {"predictor": predictor}
    if spec.preprocessing.mode == "transformer":
        body["transformer"] = _transformer(context)
    metadata = context.metadata(context.owner.name, "inference-service")
    metadata["annotations"] = _annotations(spec)
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": metadata, "spec": body}
