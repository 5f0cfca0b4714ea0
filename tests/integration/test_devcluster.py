"""The local control plane is real Kubernetes: versions, nodes, scheduling, controllers, helm."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.addons.prometheus import Prometheus, Target, registered_targets
from devcluster.build.versions import KUBERNETES_VERSION
from devcluster.common.processes import Layout
from devcluster.controlplane import cluster as control_plane
from devcluster.harness.fixtures import Tools
from devcluster.harness.testing import wait_for
from devcluster.nodes.real import node as real_node

pytestmark = pytest.mark.cluster


def _get(tools: Tools, *args: str) -> Any:
    return json.loads(tools.kubectl_run("get", *args, "-o", "json").stdout)


def _pod(name: str, namespace: str, gpus: int = 0, product: str | None = None, tolerate: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "registry.invalid/ranker:1",
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {},
            }
        ]
    }
    if product:
        spec["nodeSelector"] = {"nvidia.com/gpu.product": product}
    if tolerate:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_kubectl_reports_the_stamped_server_version(cluster: Tools) -> None:
    version = json.loads(cluster.kubectl_run("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == KUBERNETES_VERSION
    assert version["clientVersion"]["gitVersion"] == KUBERNETES_VERSION


def test_nodes_are_ready_with_gpu_capacity(cluster: Tools) -> None:
    nodes = {n["metadata"]["name"]: n for n in _get(cluster, "nodes")["items"]}
    ready = {
        name
        for name, n in nodes.items()
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    }
    assert {"cpu-node-1", "cpu-node-2", "gpu-a100-1", "gpu-a100-2", "gpu-t4-1"} <= ready
    a100 = nodes["gpu-a100-1"]
    assert a100["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert a100["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert a100["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in a100["spec"]["taints"]
    assert nodes["gpu-t4-1"]["status"]["allocatable"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in nodes["cpu-node-1"]["status"]["allocatable"]


def test_gpu_pod_lands_on_a100_and_runs(cluster: Tools, namespace: str) -> None:
    cluster.kubectl_run(
        "apply", "-f", "-", stdin=json.dumps(_pod("gpu", namespace, gpus=1, product="NVIDIA-A100-SXM4-80GB"))
    )
    pod = wait_for(
        lambda: (p := _get(cluster, "pod", "gpu", "-n", namespace))["status"].get("phase") == "Running" and p
    )
    assert pod["spec"]["nodeName"] in ("gpu-a100-1", "gpu-a100-2")


def test_too_many_gpus_stay_pending_unschedulable(cluster: Tools, namespace: str) -> None:
    cluster.kubectl_run("apply", "-f", "-", stdin=json.dumps(_pod("huge", namespace, gpus=9)))

    def unschedulable() -> dict[str, Any] | None:
        pod = _get(cluster, "pod", "huge", "-n", namespace)
        for condition in pod["status"].get("conditions", []):
            if condition["type"] == "PodScheduled" and condition["reason"] == "Unschedulable":
                return condition
        return None

    condition = wait_for(unschedulable)
    assert "Insufficient nvidia.com/gpu" in condition["message"]
    assert _get(cluster, "pod", "huge", "-n", namespace)["status"]["phase"] == "Pending"


def test_pods_without_toleration_avoid_gpu_nodes(cluster: Tools, namespace: str) -> None:
    for i in range(6):
        cluster.kubectl_run("apply", "-f", "-", stdin=json.dumps(_pod(f"cpu-{i}", namespace, tolerate=False)))
    pods = wait_for(
        lambda: (
            (items := _get(cluster, "pods", "-n", namespace)["items"])
            and all(p["spec"].get("nodeName") for p in items)
            and len(items) == 6
            and items
        )
    )
    assert {p["spec"]["nodeName"] for p in pods} <= {"cpu-node-1", "cpu-node-2"}


def test_deployment_creates_pods_and_owner_deletion_collects_children(cluster: Tools, namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }
    cluster.kubectl_run("apply", "-f", "-", stdin=json.dumps(deployment))
    wait_for(lambda: _get(cluster, "deployment", "web", "-n", namespace)["status"].get("readyReplicas") == 3)
    assert len(_get(cluster, "replicasets", "-n", namespace)["items"]) == 1
    cluster.kubectl_run("delete", "deployment", "web", "-n", namespace, "--cascade=background")
    wait_for(
        lambda: (
            not _get(cluster, "replicasets", "-n", namespace)["items"]
            and not _get(cluster, "pods", "-n", namespace)["items"]
        )
    )


def test_helm_install_and_uninstall_a_chart(cluster: Tools, namespace: str, tmp_path: Path) -> None:
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    cluster.helm_run("install", "tiny", str(chart), "-n", namespace, "--wait")
    assert _get(cluster, "configmap", "tiny-cm", "-n", namespace)["data"]["greeting"] == "hello"
    cluster.helm_run("uninstall", "tiny", "-n", namespace, "--wait")
    assert "NotFound" in cluster.kubectl_run("get", "configmap", "tiny-cm", "-n", namespace, check=False).stderr


def test_keda_serves_external_metrics_through_the_aggregation_layer(cluster: Tools) -> None:
    """The APIService is Available by the API server's own check, and a request to the group is
    proxied to KEDA's metrics server (with the front-proxy client certificate)."""
    api_service = _get(cluster, "apiservice", "v1beta1.external.metrics.k8s.io")
    available = next(c for c in api_service["status"]["conditions"] if c["type"] == "Available")
    assert available["status"] == "True", available
    resources = json.loads(cluster.kubectl_run("get", "--raw", "/apis/external.metrics.k8s.io/v1beta1").stdout)
    assert [r["name"] for r in resources["resources"]] == ["externalmetrics"]


def test_prometheus_scrapes_the_processes_registered_with_it(cluster: Tools) -> None:
    assert cluster.prometheus_url is not None and cluster.prometheus_targets is not None
    prometheus = Prometheus(cluster.prometheus_url)
    # Prometheus's own /metrics stands in for a process: registered under a pod's labels, scraped.
    address = cluster.prometheus_url.removeprefix("http://")
    labels = {"namespace": "devcluster-check", "pod": "self-0"}
    with registered_targets(cluster.prometheus_targets, "self-check", [Target(address, labels)]):
        found = wait_for(
            lambda: prometheus.value('up{namespace="devcluster-check",pod="self-0"}'),
            timeout=30,
            what="the registered target scraped",
        )
    assert found == 1.0


def test_no_packet_to_the_pod_or_service_ranges_can_leave_the_machine(cluster: Tools) -> None:
    """While the cluster is up the kernel drops every pod and Service range (blackhole routes),
    and the route it would take for an address in one is that blackhole, never the default
    route; a real node's own pod range goes to its bridge on this machine, nowhere else."""
    import subprocess

    from devcluster.common.podnet import real_node_cidr
    from devcluster.common.routes import RANGES
    from devcluster.nodes.real.config import RealNode
    from devcluster.nodes.specs import REAL_NODES

    table = subprocess.run(["ip", "route", "show", "type", "blackhole"], check=True, capture_output=True, text=True)
    for network in RANGES:
        assert f"blackhole {network}" in table.stdout, table.stdout
        address = str(network.network_address + 250 * 256 + 7)  # in no real node's /24
        route = subprocess.run(["ip", "route", "get", address], check=False, capture_output=True, text=True)
        # No route is found: the kernel refuses (a blackhole answers EINVAL here), never "via" the default.
        assert route.returncode != 0 and " via " not in route.stdout, (address, route.stdout, route.stderr)
    for spec in REAL_NODES:
        cidr = real_node_cidr(spec.index)
        bridge = RealNode(spec.name, spec.index, Path("/"), Path("/"), cidr).bridge
        route = subprocess.run(
            ["ip", "route", "get", str(cidr.network_address + 7)], check=True, capture_output=True, text=True
        )
        assert f"dev {bridge} " in route.stdout and " via " not in route.stdout, route.stdout
    # The real nodes' pods reach each other and Services through this machine's forwarding;
    # whatever it forwards may only leave by a node's bridge, and only loopback and the bridges
    # reach the API server.
    from devcluster.common.routes import GUARD_TABLE

    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    guard = subprocess.run(["nft", "list", "table", "inet", GUARD_TABLE], check=True, capture_output=True, text=True)
    api_port = urllib.parse.urlsplit(
        yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    ).port
    assert 'oifname != "rmcni*"' in guard.stdout and "tcp dport @api_servers" in guard.stdout, guard.stdout
    ports = subprocess.run(
        ["nft", "-j", "list", "set", "inet", GUARD_TABLE, "api_servers"], check=True, capture_output=True, text=True
    )
    elements = [
        e for item in json.loads(ports.stdout)["nftables"] if "set" in item for e in item["set"].get("elem", [])
    ]
    assert api_port in elements, elements


def test_a_second_cluster_is_refused_the_real_nodes_while_this_one_runs(cluster: Tools, tmp_path: Path) -> None:
    """Their sockets, bridges and kubelet ports are the machine's: a second test run elsewhere
    gets a clear refusal at once, and this cluster's real node is untouched."""
    ours = control_plane.default_layout().root
    assert real_node.owner() == ours
    with pytest.raises(RuntimeError, match=f"belong to the running cluster at {ours}"):
        control_plane.up(Layout(tmp_path / "second"))
    assert real_node.owner() == ours
    assert not (tmp_path / "second" / "state.json").exists()
    node = _get(cluster, "node", "real-node-1")
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
