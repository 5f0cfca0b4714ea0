"""A real node's rendered files (pure logic): containerd's config, the CNI network, the kubelet's
configuration and the addresses that decide where a request to a pod goes."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path

from devcluster.common.podnet import REAL_POD_NETWORK, dial_address, real_node_cidr
from devcluster.common.routes import RANGES
from devcluster.nodes.real import config
from devcluster.nodes.real.config import RealNode

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


def test_requests_go_to_a_real_pod_itself_and_to_a_process_pods_twin() -> None:
    assert dial_address("10.246.1.7") == "10.246.1.7"
    assert dial_address("10.245.1.7") == "127.245.1.7"
    assert dial_address("10.244.0.9") is None  # KWOK's: nothing listens
    assert dial_address("not-an-ip") is None
    assert REAL_POD_NETWORK in RANGES
