"""What a real node runs, rendered (pure: paths, names and addresses in; files and argv out)."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devcluster.common.podnet import REAL_POD_NETWORK, SERVICE_NETWORK
from devcluster.common.routes import BRIDGE_PREFIX

CLUSTER_DOMAIN = "cluster.local"
DNS_SERVICE_IP = str(SERVICE_NETWORK.network_address + 10)  # 10.96.0.10, as kubeadm sets it
# Sockets need short paths (108 bytes, and containerd puts its shims' sockets under its state).
RUN_ROOT = Path("/run/recmodel-devcluster")


@dataclass(frozen=True)
class RealNode:
    """One real node: where it keeps its files and which addresses it owns."""

    name: str
    index: int  # the node's pod range is 10.246.<index>.0/24 (`podnet.real_node_cidr`)
    root: Path  # the node's folder in the cluster's layout
    bin_dir: Path  # the versioned binaries
    pod_cidr: ipaddress.IPv4Network

    @property
    def cgroup_root(self) -> str:
        return f"/devcluster-{self.name}"

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.index}"

    @property
    def node_ip(self) -> str:
        """The bridge's own address: the pods' gateway, and where the kubelet serves."""
        return str(self.pod_cidr.network_address + 1)

    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / self.name

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni"

    @property
    def registry_hosts_dir(self) -> Path:
        return self.root / "registry-hosts"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_root(self) -> Path:
        """The kubelet's --root-dir (pods' volumes are mounted under it)."""
        return self.kubelet_dir / "root"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def device_plugin_dir(self) -> Path:
        """Seen by this node's kubelet as /var/lib/kubelet/device-plugins (`kubelet_argv`)."""
        return self.root / "device-plugins"

    @property
    def pod_logs_dir(self) -> Path:
        """Its own, not /var/log/pods: a kubelet removes the log folders of pods it does not know."""
        return self.root / "pod-logs"

    @property
    def shim_dir(self) -> Path:
        """PATH entry where containerd finds `containerd-shim-runc-v2` (a link to the build)."""
        return self.root / "bin"


def containerd_config(node: RealNode, sandbox_image: str, runc: Path, run_dir: Path) -> str:
    """containerd 2.x's config (version 3): CRI with runc on cgroupfs, CNI from Debian's plugins,
    registries from `registry_hosts_dir`, the sandbox image from the local registry."""
    return f"""version = 3
root = "{node.root / "containerd"}"
state = "{node.run_dir / "state"}"

[grpc]
  address = "{node.containerd_socket}"

[ttrpc]
  address = "{node.run_dir / "containerd.ttrpc.sock"}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{sandbox_image}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{node.registry_hosts_dir}"

[plugins."io.containerd.cri.v1.runtime"]
  enable_unprivileged_ports = false
  netns_mounts_under_state_dir = true
  # The kubelet asks -998 for sandboxes; these machines do not let containerd go below its own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{node.cni_conf_dir}"
    use_internal_loopback = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{run_dir / "runc"}"
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def registry_hosts(registry: str) -> dict[str, str]:
    """certs.d-style hosts.toml per registry host: the local registry speaks plain HTTP."""
    return {
        registry: f'server = "http://{registry}"\n\n[host."http://{registry}"]\n  capabilities = ["pull", "resolve"]\n'
    }


def cni_config(node: RealNode) -> dict[str, Any]:
    """The bridge plugin on the node's bridge, host-local addresses from its pod range. Pods get
    routes to the pod and Service ranges only, and no masquerading: a pod has no way off this
    machine."""
    return {
        "cniVersion": "1.0.0",
        "name": "devcluster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(node.pod_cidr), "gateway": node.node_ip}]],
                    "routes": [{"dst": str(REAL_POD_NETWORK)}, {"dst": str(SERVICE_NETWORK)}],
                    "dataDir": str(node.root / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(node: RealNode, ca_file: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # These machines mount cgroup v1; the kubelet refuses it unless told (KEP-5573).
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        # Each node's pods under a cgroup of its own, so nodes on one machine never share one.
        "cgroupRoot": node.cgroup_root,
        "cgroupsPerQOS": True,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "address": node.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 0,
        "tlsCertFile": str(node.pki_dir / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(node.pki_dir / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_file)},
        },
        # Only holders of a certificate from the cluster's CA reach the kubelet at all (the API
        # server, for logs and exec); what they may do is the API server's RBAC decision.
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [DNS_SERVICE_IP],
        "resolvConf": str(node.root / "resolv.conf"),
        "podLogsDir": str(node.pod_logs_dir),
        "failSwapOn": False,
        "staticPodPath": "",
        "serializeImagePulls": False,
        "maxPods": 50,
        "podPidsLimit": 4096,
        "registerNode": True,
        "nodeStatusUpdateFrequency": "10s",
        "syncFrequency": "10s",
        # A shared test machine: never evict for its disk or memory, never garbage-collect the
        # images the tests just pulled.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "localStorageCapacityIsolation": True,
        "shutdownGracePeriod": "0s",
        "logging": {"verbosity": 1},
    }


# The kubelet serves device plugins at this fixed path whatever its --root-dir
# (pkg/kubelet/cm/devicemanager: pluginapi.KubeletSocket) and clears the folder when it starts.
KUBELET_DEVICE_PLUGIN_PATH = "/var/lib/kubelet/device-plugins"


def kubelet_argv(node: RealNode, labels: dict[str, str], taints: list[str]) -> list[str]:
    """The kubelet in a mount namespace of its own where the node's `device_plugin_dir` is
    `KUBELET_DEVICE_PLUGIN_PATH`, so two kubelets on one machine never share that folder (its
    socket, its checkpoint). The bind's parent mount is private, so it stays in that namespace;
    the volumes the kubelet mounts reach containerd through the root folder `node.prepare`
    made shared."""
    kubelet = [
        str(node.bin_dir / "kubelet"),
        f"--config={node.kubelet_dir / 'config.yaml'}",
        f"--kubeconfig={node.kubeconfig}",
        f"--root-dir={node.kubelet_root}",
        f"--cert-dir={node.pki_dir}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.node_ip}",
        f"--node-labels={','.join(f'{k}={v}' for k, v in sorted(labels.items()))}",
        *([f"--register-with-taints={','.join(taints)}"] if taints else []),
        "--v=1",
    ]
    bind = f"mount --bind {node.device_plugin_dir} {KUBELET_DEVICE_PLUGIN_PATH}"
    return [
        "unshare",
        "--mount",
        "--propagation=unchanged",
        "--",
        "sh",
        "-c",
        f'{bind} && exec "$@"',
        "kubelet",
        *kubelet,
    ]


def device_plugin_argv(node: RealNode, plugin: Path, gpus: int, product: str) -> list[str]:
    return [
        str(plugin),
        f"--device-plugin-dir={node.device_plugin_dir}",
        f"--count={gpus}",
        f"--product={product}",
    ]


def containerd_argv(node: RealNode, containerd: Path) -> list[str]:
    return [str(containerd), f"--config={node.root / 'containerd.toml'}", "--log-level=warn"]


def resolv_conf() -> str:
    """What the kubelet gives pods with `dnsPolicy: Default` (none of them here) and what it
    builds ClusterFirst's search path on: nothing beyond the cluster's own DNS."""
    return f"nameserver {DNS_SERVICE_IP}\noptions ndots:5\n"


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False)


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


def kube_proxy_config(node: RealNode, kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    """kube-proxy in nftables mode, one for the machine (every real node shares its network
    namespace, so a second one would rewrite the same table): Services' ClusterIPs reach their
    endpoints from the pods on every bridge. NodePorts only on the node's bridge address, the
    kernel's conntrack settings left as they are."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node.name,
        "clusterCIDR": str(REAL_POD_NETWORK),
        "detectLocalMode": "ClusterCIDR",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{node.node_ip}/32"],
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "nftables": {"syncPeriod": "30s", "minSyncPeriod": "0s"},
        "logging": {"verbosity": 1},
    }


def kube_proxy_argv(kube_proxy: Path, config_file: Path) -> list[str]:
    return [str(kube_proxy), f"--config={config_file}"]
