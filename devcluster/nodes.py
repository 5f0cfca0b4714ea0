"""The fake nodes KWOK keeps alive: CPU nodes, and GPU nodes labelled and tainted the way the
NVIDIA GPU operator does it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpu: str
    memory: str
    gpus: int = 0
    gpu_product: str = ""


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("cpu-node-1", cpu="64", memory="256Gi"),  # room for the 1,000-replica operator benchmark
    NodeSpec("cpu-node-2", cpu="64", memory="256Gi"),
    NodeSpec("gpu-a100-1", cpu="96", memory="1000Gi", gpus=8, gpu_product="NVIDIA-A100-SXM4-80GB"),
    NodeSpec("gpu-a100-2", cpu="96", memory="1000Gi", gpus=8, gpu_product="NVIDIA-A100-SXM4-80GB"),
    NodeSpec("gpu-t4-1", cpu="16", memory="64Gi", gpus=1, gpu_product="NVIDIA-T4"),
)


def render_node(spec: NodeSpec) -> dict[str, Any]:
    labels = {
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": spec.name,
        "type": "kwok",
    }
    capacity = {"cpu": spec.cpu, "memory": spec.memory, "pods": "600"}  # the operator benchmark runs 1,000 pods
    taints: list[dict[str, str]] = []
    if spec.gpus:
        labels[GPU_PRODUCT_LABEL] = spec.gpu_product
        labels[GPU_PRESENT_LABEL] = "true"
        capacity[GPU_RESOURCE] = str(spec.gpus)
        taints.append({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": taints},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
        },
    }
