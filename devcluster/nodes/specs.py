"""The cluster's nodes: fake ones KWOK keeps alive (CPU nodes, and GPU nodes labelled and
tainted the way the NVIDIA GPU operator does it) for scale, and real ones, a kubelet with
containerd on this machine (`devcluster.nodes.real`), whose pods are real containers. Real
nodes are tainted: only pods that ask for them (a RecModel's `placement`) land there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# KWOK stages of our own: how a kubelet recovers after losing the API server (see the file).
KWOK_RECOVERY_STAGES = Path(__file__).parent / "kwok-recovery-stages.yaml"

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
    annotations = {"node.alpha.kubernetes.io/ttl": "0", KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"taints": taints},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
        },
    }


# Real nodes: a kubelet with containerd on this machine (`devcluster.nodes.real`). Tainted: only
# pods that ask for a real node land there.
REAL_NODE_LABEL = "devcluster.recmodel.dev/real-node"
REAL_NODE_TAINT = f"{REAL_NODE_LABEL}=true:NoSchedule"


@dataclass(frozen=True)
class RealNodeSpec:
    name: str
    index: int  # its pods' range: 10.246.<index>.0/24 (`podnet.real_node_cidr`)
    gpus: int = 0  # fake devices its device plugin advertises as nvidia.com/gpu
    gpu_product: str = ""


REAL_NODES: tuple[RealNodeSpec, ...] = (
    RealNodeSpec("real-node-1", index=1),
    RealNodeSpec("real-gpu-1", index=2, gpus=2, gpu_product="NVIDIA-L4"),
)


def real_node_labels(spec: RealNodeSpec) -> dict[str, str]:
    """What the kubelet registers the node with; a GPU node also gets the labels NVIDIA's GPU
    operator (its feature discovery) sets, with the values a real L4 node carries."""
    labels = {REAL_NODE_LABEL: "true", "type": "real"}
    if spec.gpus:
        labels |= {
            GPU_PRESENT_LABEL: "true",
            GPU_PRODUCT_LABEL: spec.gpu_product,
            "nvidia.com/gpu.count": str(spec.gpus),
            "nvidia.com/gpu.memory": "23034",
            "nvidia.com/gpu.family": "ada-lovelace",
        }
    return labels


def real_node_taints(spec: RealNodeSpec) -> list[str]:
    """The real-node taint, and on a GPU node the GPU taint the KWOK GPU nodes carry too."""
    return [REAL_NODE_TAINT, *([f"{GPU_RESOURCE}=present:NoSchedule"] if spec.gpus else [])]


REAL_PLACEMENT: dict[str, Any] = {
    "nodeSelector": {REAL_NODE_LABEL: "true"},
    "tolerations": [{"key": REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
}
