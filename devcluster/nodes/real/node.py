"""A real node's life on this machine: its bridge and files before containerd and the kubelet
start, and after they stop, what they leave behind (containers, mounts, network namespaces,
the bridge)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from devcluster.build import debian
from devcluster.build.versions import CONTAINERD_VERSION, RUNC_VERSION
from devcluster.common import pki as pki_module
from devcluster.common import routes
from devcluster.common.kubeconfig import write_kubeconfig
from devcluster.common.pki import Pki
from devcluster.nodes.real import config
from devcluster.nodes.real.config import RealNode

CNI_PLUGINS = Path("/usr/lib/cni")  # Debian's containernetworking-plugins


DEBIAN_PACKAGES = ("containernetworking-plugins", "nftables", "iproute2")

# Which cluster's layout holds the real nodes: their bridges, sockets, cgroups and kubelet
# ports are the machine's, so a second cluster with real nodes would take them over halfway.
OWNER_FILE = config.RUN_ROOT / "owner"


def owner() -> Path | None:
    """The layout root of the cluster that last started the real nodes on this machine."""
    try:
        return Path(OWNER_FILE.read_text().strip())
    except FileNotFoundError:
        return None


def claim(layout_root: Path) -> None:
    OWNER_FILE.parent.mkdir(parents=True, exist_ok=True)
    OWNER_FILE.write_text(f"{layout_root}\n")


def release(layout_root: Path) -> None:
    if owner() == layout_root:
        OWNER_FILE.unlink(missing_ok=True)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _ensure_bridge(node: RealNode) -> None:
    """The node's bridge with the pods' gateway address; its /24 route is more specific than
    the pod range's blackhole, so only this node's pods are reachable, and only from here."""
    if _ip("link", "show", node.bridge, check=False).returncode != 0:
        _ip("link", "add", node.bridge, "type", "bridge")
    _ip("addr", "replace", f"{node.node_ip}/{node.pod_cidr.prefixlen}", "dev", node.bridge)
    _ip("link", "set", node.bridge, "up")


CGROUP_V1 = Path("/sys/fs/cgroup")


def _cgroup_folders(node: RealNode) -> list[Path]:
    """The node's cgroup root in every mounted v1 hierarchy (the kubelet needs it to exist)."""
    hierarchies = [h for h in CGROUP_V1.iterdir() if h.is_dir() and not h.is_symlink() and h.name != "unified"]
    return [h / node.cgroup_root.lstrip("/") for h in hierarchies]


def _is_mount_point(path: Path) -> bool:
    return str(path) in _mounts_under(path)


def _bind_to_itself(path: Path, propagation: str) -> None:
    """`path` as a mount point of its own with the given propagation (idempotent)."""
    path.mkdir(parents=True, exist_ok=True)
    if not _is_mount_point(path):
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", f"--make-{propagation}", str(path)], check=True)


def _prepare_mounts(node: RealNode) -> None:
    """What the kubelet's own mount namespace needs (`config.kubelet_argv`): its root folder
    shared, so the volumes it mounts there are seen by containerd out here; the fixed
    device-plugin folder private, so the node's bind over it stays in that namespace."""
    _bind_to_itself(node.kubelet_root, "shared")
    _bind_to_itself(Path(config.KUBELET_DEVICE_PLUGIN_PATH), "private")


def prepare(node: RealNode, pki: Pki, server: str, registry: str, sandbox_image: str) -> None:
    debian.install(DEBIAN_PACKAGES)
    cleanup(node)
    folders = (node.root, node.run_dir, node.cni_conf_dir, node.kubelet_dir, node.shim_dir, node.device_plugin_dir)
    for folder in (*folders, node.pod_logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    _prepare_mounts(node)
    shim = node.shim_dir / "containerd-shim-runc-v2"
    shim.unlink(missing_ok=True)
    shim.symlink_to(node.bin_dir / f"containerd-shim-runc-v2-{CONTAINERD_VERSION}")
    _ensure_bridge(node)
    routes.enable_forwarding()
    for folder in _cgroup_folders(node):
        folder.mkdir(exist_ok=True)
        if folder.parent.name == "cpuset":  # a v1 cpuset takes no task until it has cpus and mems
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (folder / knob).write_text((folder.parent / knob).read_text())
    pki_module.issue_node(pki, node.name, node.node_ip, node.pki_dir)
    write_kubeconfig(
        node.kubeconfig,
        server,
        pki,
        user=(f"system:node:{node.name}", node.pki_dir / "kubelet-client.crt", node.pki_dir / "kubelet-client.key"),
    )
    (node.root / "containerd.toml").write_text(
        config.containerd_config(node, sandbox_image, node.bin_dir / f"runc-{RUNC_VERSION}", node.run_dir)
    )
    for host, text in config.registry_hosts(registry).items():
        (node.registry_hosts_dir / host).mkdir(parents=True, exist_ok=True)
        (node.registry_hosts_dir / host / "hosts.toml").write_text(text)
    (node.cni_conf_dir / "10-devcluster.conflist").write_text(config.to_json(config.cni_config(node)))
    (node.kubelet_dir / "config.yaml").write_text(config.to_yaml(config.kubelet_config(node, pki.ca_cert)))
    (node.root / "resolv.conf").write_text(config.resolv_conf())


def environment(node: RealNode) -> dict[str, str]:
    """containerd finds its shim on PATH; the shim finds runc by the absolute path it is given."""
    return {"PATH": f"{node.shim_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def _runc(node: RealNode, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(node.bin_dir / f"runc-{RUNC_VERSION}"), f"--root={node.run_dir / 'runc' / 'k8s.io'}", *args],
        check=False,
        capture_output=True,
        text=True,
    )


def _mounts_under(*roots: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].encode().decode("unicode_escape")
        if any(target == str(r) or target.startswith(f"{r}/") for r in roots):
            found.append(target)
    return sorted(found, key=lambda t: t.count("/"), reverse=True)


def cleanup(node: RealNode) -> None:
    """After containerd and the kubelet stopped (or crashed): their containers, shims, mounts,
    network namespaces and bridge go. Idempotent. Only for a layout that started the node: a
    bare cluster (its own layout, no real node) must not touch the sockets and bridge, which
    live at fixed places on this machine."""
    if not node.root.exists():
        return
    if node.run_dir.exists() and (node.bin_dir / f"runc-{RUNC_VERSION}").exists():
        for container in _runc(node, "list", "--quiet").stdout.split():
            _runc(node, "kill", "--all", container, "KILL")
            _runc(node, "delete", "--force", container)
        subprocess.run(["pkill", "-KILL", "-f", f"containerd-shim-runc-v2.*{node.containerd_socket}"], check=False)
    for target in _mounts_under(node.root, node.run_dir):
        subprocess.run(["umount", "--lazy", target], check=False, capture_output=True)
    if _ip("link", "show", node.bridge, check=False).returncode == 0:
        _ip("link", "delete", node.bridge, check=False)
    shutil.rmtree(node.run_dir, ignore_errors=True)
