"""A real node's rendered files (pure logic): containerd's config, the CNI network, the kubelet's
configuration and the addresses that decide where a request to a pod goes."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path

from devcluster.common.podnet import REAL_POD_NETWORK, real_node_cidr
from devcluster.common.routes import RANGES
from devcluster.nodes.real import config
from devcluster.nodes.real.config import RealNode
from devcluster.nodes.specs import (
    GPU_PRESENT_LABEL,
    REAL_NODE_LABEL,
    REAL_NODE_TAINT,
    REAL_NODES,
    real_node_labels,
    real_node_taints,
)

NODE = RealNode(
    name="real-node-1", index=1, root=Path("/c/nodes/real-node-1"), bin_dir=Path("/bin"), pod_cidr=real_node_cidr(1)
)


def test_containerd_runs_runc_on_cgroupfs_with_the_local_registry_and_sandbox_image() -> None:
    doc = tomllib.loads(
        config.containerd_config(NODE, "127.0.0.1:5001/pause:3.10.2", Path("/usr/sbin/runc"), NODE.run_dir)
    )
    assert doc["version"] == 3
    images = doc["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "127.0.0.1:5001/pause:3.10.2"
    assert images["registry"]["config_path"] == str(NODE.registry_hosts_dir)
    runtime = doc["plugins"]["io.containerd.cri.v1.runtime"]
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {
        "BinaryName": "/usr/sbin/runc",
        "Root": str(NODE.run_dir / "runc"),
        "SystemdCgroup": False,
    }
    assert runtime["cni"]["conf_dir"] == str(NODE.cni_conf_dir)
    # Sockets stay short (the kernel's limit is 108 bytes, and shims' sockets live under state).
    assert len(doc["grpc"]["address"]) < 60 and len(doc["state"]) < 60


def test_the_registry_is_plain_http_on_loopback() -> None:
    (text,) = config.registry_hosts("127.0.0.1:5001").values()
    hosts = tomllib.loads(text)
    assert hosts["server"] == "http://127.0.0.1:5001"
    assert hosts["host"]["http://127.0.0.1:5001"]["capabilities"] == ["pull", "resolve"]


def test_pods_get_no_default_route_and_no_masquerading() -> None:
    bridge, portmap = config.cni_config(NODE)["plugins"]
    assert bridge["type"] == "bridge" and portmap["type"] == "portmap"
    assert bridge["ipMasq"] is False
    routes = [ipaddress.IPv4Network(r["dst"]) for r in bridge["ipam"]["routes"]]
    assert ipaddress.IPv4Network("0.0.0.0/0") not in routes
    assert all(route in RANGES for route in routes)  # every range a pod can reach is blackholed beyond the node
    (subnet,) = bridge["ipam"]["ranges"][0]
    assert subnet == {"subnet": "10.246.1.0/24", "gateway": "10.246.1.1"}
    json.dumps(config.cni_config(NODE))


def test_the_kubelet_runs_on_cgroup_v1_and_is_reached_only_with_the_clusters_ca() -> None:
    kubelet = config.kubelet_config(NODE, Path("/pki/ca.crt"))
    assert kubelet["failCgroupV1"] is False and kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["containerRuntimeEndpoint"] == f"unix://{NODE.containerd_socket}"
    assert kubelet["authentication"]["anonymous"] == {"enabled": False}
    assert kubelet["authentication"]["x509"]["clientCAFile"] == "/pki/ca.crt"
    assert kubelet["address"] == NODE.node_ip == "10.246.1.1"
    assert kubelet["clusterDNS"] == [config.DNS_SERVICE_IP]
    argv = config.kubelet_argv(NODE, {"b": "2", "a": "1"}, ["k=v:NoSchedule"])
    assert "--node-labels=a=1,b=2" in argv and "--register-with-taints=k=v:NoSchedule" in argv
    assert f"--node-ip={NODE.node_ip}" in argv


def test_the_real_pod_range_is_blackholed_beyond_its_bridges() -> None:
    assert REAL_POD_NETWORK in RANGES


def test_each_kubelet_has_its_own_device_plugin_folder_and_pod_logs() -> None:
    """The kubelet serves device plugins at a fixed path whatever its root; each node's kubelet
    sees its own folder there (a bind in its own mount namespace), and keeps its own pod logs,
    so two kubelets on one machine never clear each other's sockets or logs."""
    argv = config.kubelet_argv(NODE, labels={"a": "b"}, taints=[])
    assert argv[:3] == ["unshare", "--mount", "--propagation=unchanged"]
    script = argv[argv.index("-c") + 1]
    assert f"mount --bind {NODE.device_plugin_dir} {config.KUBELET_DEVICE_PLUGIN_PATH}" in script
    kubelet = argv[argv.index("-c") + 3 :]  # after the script and $0
    assert kubelet[0] == str(NODE.bin_dir / "kubelet") and f"--root-dir={NODE.kubelet_root}" in kubelet
    assert config.kubelet_config(NODE, Path("/ca.crt"))["podLogsDir"] == str(NODE.pod_logs_dir)
    other = RealNode("real-gpu-1", 2, Path("/c/nodes/real-gpu-1"), Path("/bin"), real_node_cidr(2))
    assert other.device_plugin_dir != NODE.device_plugin_dir and other.pod_logs_dir != NODE.pod_logs_dir


def test_a_gpu_node_registers_nvidias_labels_and_the_gpu_taint() -> None:
    cpu, gpu = REAL_NODES
    assert real_node_labels(cpu) == {REAL_NODE_LABEL: "true", "type": "real"}
    assert real_node_taints(cpu) == [REAL_NODE_TAINT]
    labels = real_node_labels(gpu)
    assert labels[GPU_PRESENT_LABEL] == "true" and labels["nvidia.com/gpu.count"] == str(gpu.gpus)
    assert real_node_taints(gpu) == [REAL_NODE_TAINT, "nvidia.com/gpu=present:NoSchedule"]
    plugin = config.device_plugin_argv(NODE, Path("/bin/fakegpu"), 2, "NVIDIA-L4")
    assert f"--device-plugin-dir={NODE.device_plugin_dir}" in plugin and "--count=2" in plugin


def test_services_and_dns_stay_on_this_machine() -> None:
    """kube-proxy in nftables mode with NodePorts on the bridge only; CoreDNS bound to the
    node's bridge, with no forwarder (no resolver off this machine), behind kube-dns; and the
    guard lets forwarded packets leave by the nodes' bridges only, and lets only loopback and the
    bridges reach the API server (which listens on every address for the pods' sake)."""
    from devcluster.addons import coredns
    from devcluster.common.routes import guard

    proxy = config.kube_proxy_config(NODE, Path("/kp/kubeconfig"), 1, 2)
    assert proxy["mode"] == "nftables" and proxy["nodePortAddresses"] == [f"{NODE.node_ip}/32"]
    assert proxy["clusterCIDR"] == str(REAL_POD_NETWORK) and proxy["healthzBindAddress"] == "127.0.0.1:1"
    corefile = coredns.corefile(NODE.node_ip, Path("/dns/kubeconfig"), 3, 4)
    assert f"bind {NODE.node_ip}" in corefile and "forward" not in corefile and "kubernetes cluster.local" in corefile
    service, endpoints = coredns.objects(config.DNS_SERVICE_IP, NODE.node_ip)[-2:]
    assert service["spec"]["clusterIP"] == config.DNS_SERVICE_IP and "selector" not in service["spec"]
    assert endpoints["endpoints"][0]["addresses"] == [NODE.node_ip]
    assert (
        endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] != "endpointslice-controller.k8s.io"
    )
    script = guard()
    assert 'oifname != "rmcni*" counter drop' in script  # forwarded: out by a bridge only
    assert 'tcp dport @api_servers iifname != "lo" iifname != "rmcni*" counter drop' in script  # API servers
