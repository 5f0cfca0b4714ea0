"""Pod-level rules shared by every backend: GPU placement, resources, security, probes."""

from __future__ import annotations

import math
from typing import Any

from recmodel_operator.render.context import MODEL_SERVER_PORT
from recmodel_operator.spec import RecModelSpec

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
RUN_AS_USER = 1000

Obj = dict[str, Any]


def resources(spec: RecModelSpec, *, with_gpu: bool = True) -> Obj:
    compute = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    limits = dict(compute)
    if with_gpu and spec.resources.gpu.count > 0:
        limits[GPU_RESOURCE] = str(spec.resources.gpu.count)
    return {"requests": dict(compute), "limits": limits}


def placement(spec: RecModelSpec, *, with_gpu: bool = True) -> Obj:
    """nodeSelector/tolerations/affinity: the user's own, plus the GPU defaults."""
    node_selector = dict(spec.placement.node_selector)
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.placement.tolerations]
    gpu = spec.resources.gpu
    if with_gpu and gpu.count > 0:
        if gpu.product:
            node_selector[GPU_PRODUCT_LABEL] = gpu.product
        if GPU_TOLERATION not in tolerations:
            tolerations.append(dict(GPU_TOLERATION))
    out: Obj = {}
    if node_selector:
        out["nodeSelector"] = node_selector
    if tolerations:
        out["tolerations"] = tolerations
    if spec.placement.affinity:
        out["affinity"] = spec.placement.affinity
    return out


def threads_env(spec: RecModelSpec) -> list[dict[str, str]]:
    """Torch would otherwise start one thread per node core, not per core the pod may use."""
    return [{"name": "OMP_NUM_THREADS", "value": str(max(1, math.ceil(spec.resources.cpu_cores)))}]


def container_security_context() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def termination(spec: RecModelSpec) -> Obj:
    """Room for the server's drain after SIGTERM and its longest request."""
    return {"terminationGracePeriodSeconds": spec.server.termination_grace_seconds}


def pod_security_context() -> Obj:
    return {"runAsNonRoot": True, "fsGroup": RUN_AS_USER, "seccompProfile": {"type": "RuntimeDefault"}}


def http_probes(port: int = MODEL_SERVER_PORT) -> Obj:
    return {
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": port},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": port},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "startupProbe": {
            "httpGet": {"path": "/v2/health/live", "port": port},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
    }


def prometheus_annotations(port: int = MODEL_SERVER_PORT) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}
