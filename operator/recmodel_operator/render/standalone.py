"""backend standalone: Deployment(s) + Service (+ Ingress), for clusters without KServe."""

from __future__ import annotations

import math
from typing import Any

from recmodel_operator.render import pod
from recmodel_operator.render.context import MODEL_DIR, MODEL_SERVER_PORT, RenderContext
from recmodel_operator.serving_contract import SERVE_COMMAND, serve_args, tuning_env

Obj = dict[str, Any]

COMPONENT = "predictor"
TRACK_LABEL = "recmodel.dev/track"
TORCHSERVE_METRICS_PORT = 8082


def deployment_name(name: str, track: str = "stable") -> str:
    return f"{name}-predictor" if track == "stable" else f"{name}-predictor-canary"


def _model_volume(storage_uri: str) -> tuple[Obj, str, list[Obj]]:
    """The volume holding the model, the model dir inside the container, and init containers.

    pvc:// mounts the claim directly; every other scheme is fetched by `recmodel fetch`
    (KServe's storage code) into an emptyDir, as KServe's storage initializer would.
    """
    if storage_uri.startswith("pvc://"):
        claim, _, sub_path = storage_uri.removeprefix("pvc://").partition("/")
        volume = {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        return volume, f"{MODEL_DIR}/{sub_path}".rstrip("/"), []
    volume = {"name": "model", "emptyDir": {}}
    return volume, MODEL_DIR, [{"args": ["fetch", f"--uri={storage_uri}", f"--out={MODEL_DIR}"]}]


def _server_container(context: RenderContext, model_dir: str, track: str) -> Obj:
    spec = context.spec
    if spec.runtime == "torchserve":
        command = ["torchserve"]
        args = [
            "--start",
            "--foreground",
            "--disable-token-auth",
            f"--model-store={model_dir}/model-store",
            f"--ts-config={model_dir}/config/config.properties",
        ]
        env = tuning_env(spec)
        ports = [MODEL_SERVER_PORT, TORCHSERVE_METRICS_PORT]
        probes: Obj = {"readinessProbe": {"httpGet": {"path": "/ping", "port": MODEL_SERVER_PORT}, "periodSeconds": 5}}
    else:
        command = list(SERVE_COMMAND)
        args = serve_args(spec, name=context.owner.name, model_dir=model_dir, port=MODEL_SERVER_PORT)
        if track == "stable" and context.mirror:
            assert spec.canary is not None
            args += [f"--shadow-url={mirror_url(context)}", f"--shadow-percent={spec.canary.mirror_percent}"]
        env = []
        ports = [MODEL_SERVER_PORT]
        probes = pod.http_probes()
    return {
        "name": "model-server",
        "image": context.image,
        "command": command,
        "args": args,
        "env": [*env, *pod.threads_env(spec)],
        "ports": [{"name": f"http-{p}", "containerPort": p, "protocol": "TCP"} for p in ports],
        "resources": pod.resources(spec),
        "securityContext": pod.container_security_context(),
        "volumeMounts": [
            {"name": "model", "mountPath": MODEL_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        **probes,
    }


def render_pod_template(context: RenderContext, storage_uri: str, track: str) -> Obj:
    volume, model_dir, fetchers = _model_volume(storage_uri)
    init_containers = [
        {
            "name": "fetch-model",
            "image": context.image,
            "command": ["recmodel"],
            "args": fetcher["args"],
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "securityContext": {**pod.container_security_context()},
            "volumeMounts": [{"name": "model", "mountPath": MODEL_DIR}],
        }
        for fetcher in fetchers
    ]
    port = TORCHSERVE_METRICS_PORT if context.spec.runtime == "torchserve" else MODEL_SERVER_PORT
    pod_spec: Obj = {
        **pod.placement(context.spec),
        **pod.termination(context.spec),
        "securityContext": pod.pod_security_context(),
        "automountServiceAccountToken": False,
        "containers": [_server_container(context, model_dir, track)],
        "volumes": [volume, {"name": "tmp", "emptyDir": {}}],
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    return {
        "metadata": {
            "labels": {**context.labels(COMPONENT), TRACK_LABEL: track},
            "annotations": pod.prometheus_annotations(port),
        },
        "spec": pod_spec,
    }


def canary_replicas(context: RenderContext) -> int:
    """Replicas that give the canary about its weight of the Service's endpoints (the Service
    splits by endpoints, so small weights round up to one replica); a shadow canary gets its
    share of the mirrored copies, a canary at 0% none."""
    spec = context.spec
    assert spec.canary is not None
    stable = max(spec.autoscaling.min_replicas, 1)
    weight = spec.canary.traffic_percent if context.canary_weight is None else context.canary_weight
    if spec.canary.shadow and context.mirror:
        return max(1, math.ceil(stable * spec.canary.mirror_percent / 100))
    if weight <= 0:
        return 0
    if weight >= 100:
        return stable
    return max(1, math.ceil(stable * weight / (100 - weight)))


def canary_service_name(name: str) -> str:
    return f"{name}-canary"


def mirror_url(context: RenderContext) -> str:
    """Where the stable pods send their copies: the canary pods' own Service."""
    return f"http://{canary_service_name(context.owner.name)}.{context.owner.namespace}.svc:{MODEL_SERVER_PORT}"


def render_canary_service(context: RenderContext) -> Obj:
    """Only the canary's pods, for the stable pods' mirrored copies."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": context.metadata(canary_service_name(context.owner.name), COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": {**context.selector(COMPONENT), TRACK_LABEL: "canary"},
            "ports": [{"name": "http", "port": MODEL_SERVER_PORT, "targetPort": MODEL_SERVER_PORT, "protocol": "TCP"}],
        },
    }


def render_deployment(context: RenderContext, track: str = "stable") -> Obj:
    spec = context.spec
    if track == "stable":
        storage_uri, replicas = spec.model.storage_uri, spec.autoscaling.min_replicas
    else:
        assert spec.canary is not None
        storage_uri, replicas = spec.canary.storage_uri, canary_replicas(context)
    selector = {**context.selector(COMPONENT), TRACK_LABEL: track}
    deployment: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": context.metadata(deployment_name(context.owner.name, track), COMPONENT),
        "spec": {
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": render_pod_template(context, storage_uri, track),
        },
    }
    if track != "stable" or spec.autoscaling.min_replicas == spec.autoscaling.max_replicas:
        # Otherwise the autoscaler owns .spec.replicas; writing it would fight the HPA.
        deployment["spec"]["replicas"] = replicas
    return deployment


def render_service(context: RenderContext) -> Obj:
    """Live traffic: both tracks' pods (the split is by endpoints), but only the stable ones
    while a canary is in shadow mode (it gets mirrored copies, never a live request)."""
    selector = context.selector(COMPONENT)
    canary = context.spec.canary
    if canary is not None and canary.shadow:
        selector[TRACK_LABEL] = "stable"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": context.metadata(context.owner.name, COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": MODEL_SERVER_PORT, "protocol": "TCP"}],
        },
    }


def ingress_host(context: RenderContext) -> str:
    return context.spec.ingress.host or f"{context.owner.name}.{context.owner.namespace}.{context.ingress_domain}"


def render_ingress(context: RenderContext) -> Obj:
    rule = {
        "host": ingress_host(context),
        "http": {
            "paths": [
                {
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": context.owner.name, "port": {"name": "http"}}},
                }
            ]
        },
    }
    spec: Obj = {"rules": [rule]}
    if context.spec.ingress.class_name:
        spec["ingressClassName"] = context.spec.ingress.class_name
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": context.metadata(context.owner.name, COMPONENT),
        "spec": spec,
    }
