"""Starts and stops the local control plane as processes on 127.0.0.1.

State (pids, ports) lives in `.devcluster/state.json`, so `up` is idempotent and `down`
stops exactly the processes it started, by pid.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from devcluster.addons import coredns, keda, kserve
from devcluster.addons import prometheus as prometheus_module
from devcluster.addons.ingress import routes as ingress_routes
from devcluster.build.go import build_all, kwok_stages_file, nginx_binary
from devcluster.build.versions import CONTAINERD_VERSION, COREDNS, FAKE_GPU_PLUGIN, KSERVE_VERSION, REPO_ROOT
from devcluster.build.versions import bin_dir as versions_bin_dir
from devcluster.common import pki as pki_module
from devcluster.common import processes
from devcluster.common.kubeconfig import write_kubeconfig
from devcluster.common.podnet import real_node_cidr
from devcluster.common.ports import free_ports, is_listening
from devcluster.common.processes import Layout, Ports
from devcluster.common.routes import ensure_blackhole_routes, ensure_guard
from devcluster.images import catalog, pause, registry
from devcluster.nodes.real import config as real_config
from devcluster.nodes.real import node as real_node
from devcluster.nodes.specs import (
    GPU_RESOURCE,
    KWOK_RECOVERY_STAGES,
    NODES,
    REAL_NODES,
    RealNodeSpec,
    real_node_labels,
    real_node_taints,
    render_node,
)

KSERVE_MANAGER = f"kserve-manager-{KSERVE_VERSION}"
PROMETHEUS = prometheus_module.BINARY
INGRESS = "ingress-nginx"
CONTAINERD = f"containerd-{CONTAINERD_VERSION}"
KUBELET = "kubelet"


def node_process(program: str, node: str) -> str:
    """A real node's process in the state file: `program@node` (each node runs its own)."""
    return f"{program}@{node}"


REAL_NODE_PROCESSES = tuple(
    node_process(program, spec.name)
    for spec in REAL_NODES
    for program in (CONTAINERD, KUBELET, *([FAKE_GPU_PLUGIN] if spec.gpus else []))
)
PYTHON_MODULES = {INGRESS: "devcluster.addons.ingress"}  # ours, run by this Python
CORE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KUBE_PROXY = "kube-proxy"  # one for the machine: the real nodes share its network namespace
ADDONS = (
    KSERVE_MANAGER,
    keda.OPERATOR,
    keda.ADAPTER,
    PROMETHEUS,
    INGRESS,
    *REAL_NODE_PROCESSES,
    KUBE_PROXY,
    COREDNS,
)
START_ORDER = (*CORE, *ADDONS)


@dataclass(frozen=True)
class ClusterInfo:
    kubeconfig: Path
    server: str
    bin_dir: Path
    prometheus_url: str | None = None  # the cluster's Prometheus (absent on a bare cluster)
    prometheus_targets: Path | None = None  # where to register processes for it to scrape
    ingress_url: str | None = None  # the ingress controller (nginx), routing by Host to the real nodes' pods


def real_nodes(layout: Layout, bin_dir: Path) -> list[real_config.RealNode]:
    return [
        real_config.RealNode(
            name=spec.name,
            index=spec.index,
            root=layout.root / "nodes" / spec.name,
            bin_dir=bin_dir,
            pod_cidr=real_node_cidr(spec.index),
        )
        for spec in REAL_NODES
    ]


def default_layout() -> Layout:
    return Layout(Path(os.environ.get("DEVCLUSTER_DIR", REPO_ROOT / ".devcluster")))


def _log(message: str) -> None:
    print(f"[devcluster] {message}", file=sys.stderr, flush=True)


def _read_state(layout: Layout) -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads(layout.state.read_text())
        return state
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _pid_alive(pid: int, name: str) -> bool:
    """Alive and still the program we started (pids are reused)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if name in PYTHON_MODULES:
        return PYTHON_MODULES[name] in argv
    program = name.split("@", 1)[0]
    # A kubelet starts as `unshare ... sh -c ...` and becomes the kubelet (`exec`).
    return Path(argv[0]).name == program or (program == KUBELET and argv[:2] == ["unshare", "--mount"])


def _admin_ssl_context(layout: Layout) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(layout.pki.ca_cert))
    context.load_cert_chain(str(layout.pki.admin_cert), str(layout.pki.admin_key))
    return context


def _insecure_ssl_context() -> ssl.SSLContext:
    # kube-controller-manager and kube-scheduler serve /healthz with self-signed certificates.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _wait(what: str, check: Callable[[], bool], timeout: float, log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    tail = ""
    if log_file and log_file.exists():
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"{what} did not become healthy within {timeout:.0f}s\n{tail}")


def is_running(layout: Layout | None = None) -> bool:
    layout = layout or default_layout()
    state = _read_state(layout)
    if not state:
        return False
    pids = state.get("pids", {})
    assert isinstance(pids, dict)
    if not all(_pid_alive(int(pid), name) for name, pid in pids.items()):
        return False
    server = str(state.get("server", ""))
    return _http_ok(f"{server}/readyz", _admin_ssl_context(layout))


def info(layout: Layout | None = None) -> ClusterInfo:
    layout = layout or default_layout()
    state = _read_state(layout) or {}
    prometheus_url = state.get("prometheus")
    ingress_url = state.get("ingress")
    return ClusterInfo(
        kubeconfig=layout.kubeconfig,
        server=str(state.get("server", "")),
        bin_dir=layout.bin,
        prometheus_url=str(prometheus_url) if prometheus_url else None,
        prometheus_targets=layout.prometheus_targets if prometheus_url else None,
        ingress_url=str(ingress_url) if ingress_url else None,
    )


def _start(name: str, argv: list[str], layout: Layout, env: dict[str, str] | None = None) -> int:
    log = open(layout.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=layout.root,
        env={**os.environ, **(env or {})},
    )
    log.close()
    return process.pid


def _kubectl(layout: Layout, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(layout.bin / "kubectl"), f"--kubeconfig={layout.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _apply(layout: Layout, objects: list[dict[str, Any]]) -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": objects}
    _kubectl(layout, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(listing))


def _ca_bundle(layout: Layout) -> str:
    return base64.b64encode(layout.pki.ca_cert.read_bytes()).decode()


def _add_nodes(layout: Layout) -> None:
    _apply(layout, [render_node(n) for n in NODES])
    _wait("nodes", lambda: _nodes_ready(layout), timeout=60, log_file=layout.logs / "kwok.log")


def _kubectl_ok(layout: Layout, *args: str) -> bool:
    try:
        _kubectl(layout, *args)
    except RuntimeError:
        return False
    return True


def _crds_established(layout: Layout) -> bool:
    return _kubectl_ok(layout, "wait", "--for=condition=Established", "--timeout=30s", "crd", "--all")


def _prepare_kserve(layout: Layout) -> None:
    """What KServe's manager expects before it starts: its CRDs, namespace and ConfigMap, and
    the webhook server's certificate (the devcluster CA signed it for 127.0.0.1)."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kserve.NAMESPACE}}
    _apply(layout, [*kserve.crds(), namespace])
    _wait("KServe CRDs", lambda: _crds_established(layout), timeout=90)
    storage_initializer = catalog.image("storage-initializer").reference(registry.address())
    _apply(
        layout,
        [
            kserve.config_map(ingress_routes.CLASS_NAME, storage_initializer),
            kserve.ca_bundle_config_map(layout.pki.ca_cert.read_text()),
        ],
    )
    kserve.write_serving_certs(layout.kserve_tmp, layout.pki.server_cert, layout.pki.server_key)


def _prepare_keda(layout: Layout) -> None:
    _apply(layout, [*keda.crds(), keda.namespace()])
    _wait("KEDA CRDs", lambda: _crds_established(layout), timeout=90)


def _register_metrics_api(layout: Layout, ports: Ports) -> None:
    """After KEDA's metrics API server is up: the aggregation layer routes to it."""
    _apply(layout, [keda.metrics_service(ports.keda_adapter), keda.api_service(ports.keda_adapter, _ca_bundle(layout))])
    last: list[str] = []

    def available() -> bool:
        try:
            status = json.loads(_kubectl(layout, "get", "apiservice", keda.API_SERVICE, "-o", "json")).get("status", {})
        except RuntimeError as error:
            last[:] = [str(error)]
            return False
        found: dict[str, Any] = next((c for c in status.get("conditions", []) if c["type"] == "Available"), {})
        last[:] = [f"{found.get('reason')}: {found.get('message')}"]
        return found.get("status") == "True"

    try:
        _wait("external.metrics.k8s.io", available, timeout=60)
    except RuntimeError as error:
        raise RuntimeError(f"{error}; APIService {keda.API_SERVICE}: {last}") from None


def _prepare_prometheus(layout: Layout) -> None:
    shutil.rmtree(layout.prometheus, ignore_errors=True)
    layout.prometheus_targets.mkdir(parents=True)
    prometheus_module.write_config(
        layout.prometheus, prometheus_module.config(targets_dir=layout.prometheus_targets, kubeconfig=layout.kubeconfig)
    )


def _prepare_ingress(layout: Layout) -> None:
    shutil.rmtree(layout.ingress, ignore_errors=True)
    _apply(layout, [ingress_routes.ingress_class()])


def _prepare_real_node(layout: Layout, node: real_config.RealNode, server: str) -> None:
    """The local registry (the node pulls from it), the sandbox image in it, the node's files."""
    to = registry.ensure_running()
    real_node.prepare(node, layout.pki, server, to, pause.ensure(to))


@dataclass(frozen=True)
class NodeProcesses:
    """One real node's processes by name: argv, environment, health check, what comes first."""

    argv: dict[str, list[str]]
    env: dict[str, dict[str, str]]
    health: dict[str, Callable[[], bool]]
    before_start: dict[str, Callable[[], None]]


def _real_node_processes(layout: Layout, spec: RealNodeSpec, node: real_config.RealNode, server: str) -> NodeProcesses:
    """containerd, the kubelet, and on a GPU node the device plugin."""
    containerd, kubelet = node_process(CONTAINERD, node.name), node_process(KUBELET, node.name)
    argv = {
        containerd: real_config.containerd_argv(node, node.bin_dir / CONTAINERD),
        kubelet: real_config.kubelet_argv(node, labels=real_node_labels(spec), taints=real_node_taints(spec)),
    }
    health: dict[str, Callable[[], bool]] = {
        containerd: node.containerd_socket.exists,
        kubelet: lambda: _node_ready(layout, node.name),
    }
    if spec.gpus:
        plugin = node_process(FAKE_GPU_PLUGIN, node.name)
        argv[plugin] = real_config.device_plugin_argv(node, node.bin_dir / FAKE_GPU_PLUGIN, spec.gpus, spec.gpu_product)
        health[plugin] = lambda: _allocatable(layout, node.name, GPU_RESOURCE) == str(spec.gpus)
    return NodeProcesses(
        argv=argv,
        env={containerd: real_node.environment(node)},
        health=health,
        before_start={containerd: lambda: _prepare_real_node(layout, node, server)},
    )


def _allocatable(layout: Layout, node: str, resource: str) -> str | None:
    try:
        found = json.loads(_kubectl(layout, "get", "node", node, "-o", "json"))["status"].get("allocatable", {})
    except RuntimeError:
        return None
    value = found.get(resource)
    return str(value) if value is not None else None


def _client_kubeconfig(layout: Layout, folder: Path, user: str, server: str) -> Path:
    """A client certificate for `user` from the cluster's CA, and a kubeconfig with it in `folder`."""
    cert, key = pki_module.issue_client(layout.pki, user, None, folder / "client")
    kubeconfig = folder / "kubeconfig"
    write_kubeconfig(kubeconfig, server, layout.pki, user=(user, cert, key))
    return kubeconfig


def _prepare_kube_proxy(layout: Layout, node: real_config.RealNode, server: str, ports: Ports) -> None:
    """kube-proxy's identity (`system:kube-proxy`, which Kubernetes' default RBAC binds to
    `system:node-proxier`), its kubeconfig and its configuration."""
    folder = layout.root / "kube-proxy"
    kubeconfig = _client_kubeconfig(layout, folder, "system:kube-proxy", server)
    document = real_config.kube_proxy_config(node, kubeconfig, ports.kube_proxy_healthz, ports.kube_proxy_metrics)
    (folder / "config.yaml").write_text(real_config.to_yaml(document))


def _prepare_coredns(layout: Layout, node: real_config.RealNode, server: str, ports: Ports) -> None:
    """CoreDNS's identity, kubeconfig and Corefile, and the `kube-dns` Service in front of it."""
    folder = layout.root / "coredns"
    kubeconfig = _client_kubeconfig(layout, folder, coredns.USER, server)
    text = coredns.corefile(node.node_ip, kubeconfig, ports.coredns_health, ports.coredns_ready)
    (folder / "Corefile").write_text(text)
    _apply(layout, coredns.objects(real_config.DNS_SERVICE_IP, node.node_ip))


def _node_ready(layout: Layout, name: str) -> bool:
    return _kubectl_ok(layout, "wait", "--for=condition=Ready", "--timeout=1s", f"node/{name}")


def _nodes_ready(layout: Layout) -> bool:
    try:
        nodes = json.loads(_kubectl(layout, "get", "nodes", "-o", "json"))["items"]
    except RuntimeError:
        return False
    ready = [
        n
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
    ]
    return len(ready) >= len(NODES)


def _default_service_account(layout: Layout) -> bool:
    return _kubectl_ok(layout, "get", "serviceaccount", "default", "-n", "default")


def _refuse_while_another_has_the_real_nodes(layout: Layout) -> None:
    """Refuses to start while another running cluster has the real nodes (a second test run in
    another checkout, say): it would take over their sockets and ports halfway and both runs'
    pods would fail slowly. A stopped or crashed owner's claim is taken over."""
    holder = real_node.owner()
    if holder is not None and holder != layout.root and is_running(Layout(holder)):
        raise RuntimeError(
            f"the real nodes on this machine belong to the running cluster at {holder}; only one "
            f"cluster at a time can have them. Stop that one first: DEVCLUSTER_DIR={holder} python -m devcluster down"
        )


def up(layout: Layout | None = None, *, with_addons: bool = True) -> ClusterInfo:
    """Starts the cluster unless it is already running; returns how to reach it. Its add-ons are
    KServe's controller, KEDA (operator and metrics API server) and Prometheus; without them it
    is a plain Kubernetes cluster (as the standalone backend expects)."""
    layout = layout or default_layout()
    ensure_blackhole_routes()  # before anything could send to the pod or Service ranges
    if is_running(layout):
        _log(f"already running at {info(layout).server}")
        return info(layout)
    if with_addons:
        _refuse_while_another_has_the_real_nodes(layout)
    down(layout, quiet=True)
    if with_addons:
        real_node.claim(layout.root)
    started = time.monotonic()
    bin_dir = build_all()

    layout.root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(layout.etcd_data, ignore_errors=True)
    shutil.rmtree(layout.logs, ignore_errors=True)
    layout.logs.mkdir(parents=True)
    layout.bin.mkdir(exist_ok=True)
    for tool in ("kubectl", "helm"):
        link = layout.bin / tool
        link.unlink(missing_ok=True)
        link.symlink_to(bin_dir / tool)

    cluster_pki = pki_module.create(layout.pki.directory, addon_dns_names=(keda.SERVICE_DNS_NAME,))
    ports = Ports(*free_ports(len(fields(Ports))))
    ensure_guard(ports.apiserver)  # before the API server listens on every address
    server = f"https://127.0.0.1:{ports.apiserver}"
    write_kubeconfig(layout.kubeconfig, server, cluster_pki)
    nodes = real_nodes(layout, bin_dir)

    argvs = {
        "etcd": processes.etcd(bin_dir, layout, ports),
        "kube-apiserver": processes.kube_apiserver(bin_dir, layout, ports, nodes[0].node_ip),
        "kube-controller-manager": processes.kube_controller_manager(bin_dir, layout, ports),
        "kube-scheduler": processes.kube_scheduler(bin_dir, layout, ports),
        "kwok": processes.kwok(bin_dir, [kwok_stages_file(), KWOK_RECOVERY_STAGES], layout, ports),
        KSERVE_MANAGER: kserve.manager_argv(
            bin_dir / KSERVE_MANAGER, ports.kserve_metrics, ports.kserve_probe, ports.kserve_webhook
        ),
        keda.OPERATOR: keda.operator_argv(
            bin_dir / keda.OPERATOR, cluster_pki.addon_dir, ports.keda_metrics, ports.keda_probe, ports.keda_grpc
        ),
        keda.ADAPTER: keda.adapter_argv(
            bin_dir / keda.ADAPTER,
            cluster_pki.addon_dir,
            layout.kubeconfig,
            ports.keda_adapter,
            ports.keda_grpc,
            ports.keda_adapter_metrics,
        ),
        PROMETHEUS: prometheus_module.argv(layout.prometheus, ports.prometheus),
        INGRESS: processes.ingress_controller(layout, Path(sys.executable), nginx_binary(), ports),
        KUBE_PROXY: real_config.kube_proxy_argv(bin_dir / KUBE_PROXY, layout.root / "kube-proxy" / "config.yaml"),
        COREDNS: coredns.argv(bin_dir / COREDNS, layout.root / "coredns" / "Corefile"),
    }
    envs = {
        KSERVE_MANAGER: {
            "KUBECONFIG": str(layout.kubeconfig),
            "POD_NAMESPACE": kserve.NAMESPACE,
            "TMPDIR": str(layout.kserve_tmp),
        },
        keda.OPERATOR: keda.environment(layout.kubeconfig),
        keda.ADAPTER: keda.environment(layout.kubeconfig),
        INGRESS: {"PYTHONPATH": str(REPO_ROOT)},
    }
    prometheus_url = f"http://127.0.0.1:{ports.prometheus}"
    pids: dict[str, int] = {}

    def save_state() -> None:
        state: dict[str, object] = {"server": server, "ports": asdict(ports), "pids": pids}
        if with_addons:
            state["prometheus"] = prometheus_url
            state["ingress"] = f"http://127.0.0.1:{ports.ingress}"
        layout.state.write_text(json.dumps(state, indent=2))

    admin = _admin_ssl_context(layout)
    health: dict[str, Callable[[], bool]] = {
        "etcd": lambda: _http_ok(f"http://127.0.0.1:{ports.etcd_client}/health"),
        "kube-apiserver": lambda: _http_ok(f"{server}/readyz", admin),
        "kube-controller-manager": lambda: _http_ok(
            f"https://127.0.0.1:{ports.controller_manager}/healthz", _insecure_ssl_context()
        ),
        "kube-scheduler": lambda: _http_ok(f"https://127.0.0.1:{ports.scheduler}/healthz", _insecure_ssl_context()),
        "kwok": lambda: is_listening(ports.kwok),
        KSERVE_MANAGER: lambda: _http_ok(f"http://127.0.0.1:{ports.kserve_probe}/readyz"),
        keda.OPERATOR: lambda: _http_ok(f"http://127.0.0.1:{ports.keda_probe}/readyz"),
        keda.ADAPTER: lambda: _http_ok(f"https://127.0.0.1:{ports.keda_adapter}/readyz", _insecure_ssl_context()),
        PROMETHEUS: lambda: _http_ok(f"{prometheus_url}/-/ready"),
        INGRESS: lambda: _http_ok(f"http://127.0.0.1:{ports.ingress}/healthz"),
        KUBE_PROXY: lambda: _http_ok(f"http://127.0.0.1:{ports.kube_proxy_healthz}/healthz"),
        COREDNS: lambda: _http_ok(f"http://127.0.0.1:{ports.coredns_ready}/ready"),
    }
    before_start: dict[str, Callable[[], None]] = {
        KSERVE_MANAGER: lambda: _prepare_kserve(layout),
        keda.OPERATOR: lambda: _prepare_keda(layout),
        PROMETHEUS: lambda: _prepare_prometheus(layout),
        INGRESS: lambda: _prepare_ingress(layout),
        KUBE_PROXY: lambda: _prepare_kube_proxy(layout, nodes[0], server, ports),
        COREDNS: lambda: _prepare_coredns(layout, nodes[0], server, ports),
    }
    after_start: dict[str, Callable[[], None]] = {
        "kwok": lambda: _add_nodes(layout),
        keda.ADAPTER: lambda: _register_metrics_api(layout, ports),
    }
    for spec, node in zip(REAL_NODES, nodes, strict=True):
        processes_of_node = _real_node_processes(layout, spec, node, server)
        argvs |= processes_of_node.argv
        envs |= processes_of_node.env
        health |= processes_of_node.health
        before_start |= processes_of_node.before_start
    try:
        for name in START_ORDER if with_addons else CORE:
            if name in before_start:
                before_start[name]()
            pids[name] = _start(name, argvs[name], layout, envs.get(name))
            save_state()
            _wait(name, health[name], timeout=90, log_file=layout.logs / f"{name}.log")
            _log(f"{name} is up (pid {pids[name]})")
            if name in after_start:
                after_start[name]()
        if with_addons:
            _apply(layout, kserve.webhook_configurations(ports.kserve_webhook, _ca_bundle(layout)))
            _apply(layout, [kserve.torchserve_runtime()])  # through KServe's own validating webhook
        _wait("default service account", lambda: _default_service_account(layout), timeout=60)
    except BaseException:
        down(layout, quiet=True)
        raise
    _log(f"ready at {server} in {time.monotonic() - started:.1f}s; KUBECONFIG={layout.kubeconfig}")
    return info(layout)


def stall(name: str, seconds: float, layout: Layout | None = None) -> None:
    """Freezes one of the cluster's processes (SIGSTOP) for `seconds`, then lets it go on: an API
    server that stops answering without closing a connection, for fault tests."""
    layout = layout or default_layout()
    pids = (_read_state(layout) or {}).get("pids", {})
    assert isinstance(pids, dict) and name in pids, f"{name} is not one of this cluster's processes"
    os.killpg(int(pids[name]), signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.killpg(int(pids[name]), signal.SIGCONT)


def down(layout: Layout | None = None, quiet: bool = False) -> None:
    """Stops every process `up` started, newest first, and forgets the state."""
    layout = layout or default_layout()
    state = _read_state(layout)
    pids = state.get("pids", {}) if state else {}
    assert isinstance(pids, dict)
    for name in reversed(START_ORDER):
        pid = pids.get(name)
        if pid is None or not _pid_alive(int(pid), name):
            continue
        try:
            os.killpg(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 10
        while _pid_alive(int(pid), name) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(int(pid), name):
            os.killpg(int(pid), signal.SIGKILL)
        if not quiet:
            _log(f"stopped {name} (pid {pid})")
    for node in real_nodes(layout, versions_bin_dir()):
        real_node.cleanup(node)  # the containers and mounts containerd and the kubelet leave
    real_node.release(layout.root)
    layout.state.unlink(missing_ok=True)
