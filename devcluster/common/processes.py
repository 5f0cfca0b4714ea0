"""The command lines of the control-plane processes (pure: paths and ports in, argv out)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devcluster.common.pki import FRONT_PROXY_CLIENT, Pki
from devcluster.common.podnet import SERVICE_NETWORK


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    kserve_metrics: int
    kserve_probe: int
    kserve_webhook: int
    keda_metrics: int
    keda_probe: int
    keda_grpc: int
    keda_adapter: int
    keda_adapter_metrics: int
    prometheus: int
    ingress: int
    kube_proxy_healthz: int
    kube_proxy_metrics: int
    coredns_health: int
    coredns_ready: int


@dataclass(frozen=True)
class Layout:
    """Where a running cluster keeps its files (`.devcluster/` in the repository)."""

    root: Path

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def kserve_tmp(self) -> Path:
        return self.root / "kserve"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    @property
    def prometheus_targets(self) -> Path:
        """Where whoever starts a process beside the cluster registers its /metrics."""
        return self.prometheus / "targets"

    @property
    def ingress(self) -> Path:
        """The ingress controller's nginx: its rendered configuration, logs and temporary files."""
        return self.root / "ingress"

    @property
    def pki(self) -> Pki:
        return Pki(self.root / "pki")


def etcd(bin_dir: Path, layout: Layout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(bin_dir / "etcd"),
        "--name=devcluster",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=devcluster={peer}",
        "--unsafe-no-fsync=true",  # a throwaway test store: durability buys nothing here
        "--log-level=warn",
    ]


def kube_apiserver(bin_dir: Path, layout: Layout, ports: Ports, advertise_address: str) -> list[str]:
    """Clients here dial 127.0.0.1; pods reach it through the `kubernetes` Service, whose
    endpoint is `advertise_address` (a real node's bridge: an EndpointSlice may not hold a
    loopback address), so it listens on every address, behind `routes.guard`'s input rule."""
    pki = layout.pki
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=0.0.0.0",
        f"--advertise-address={advertise_address}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={pki.server_cert}",
        f"--tls-private-key-file={pki.server_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-cluster-ip-range={SERVICE_NETWORK}",
        # Node: the real nodes' kubelets (system:node:<name>) may touch only their own objects.
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        # The API server reaches a real node's kubelet (logs, exec) as the admin, checking the
        # kubelet's serving certificate against the cluster's CA.
        f"--kubelet-client-certificate={pki.admin_cert}",
        f"--kubelet-client-key={pki.admin_key}",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        "--kubelet-preferred-address-types=InternalIP",
        # The aggregation layer (KEDA's external.metrics.k8s.io): who the API server is when it
        # proxies, and the headers that carry the user to the extension API server.
        f"--requestheader-client-ca-file={pki.front_proxy_ca}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.front_proxy_client_cert}",
        f"--proxy-client-key-file={pki.front_proxy_client_key}",
        "--allow-privileged=true",
        "--watch-cache=true",
        "--v=1",
    ]


def _component_auth(layout: Layout) -> list[str]:
    return [
        f"--kubeconfig={layout.kubeconfig}",
        f"--authentication-kubeconfig={layout.kubeconfig}",
        f"--authorization-kubeconfig={layout.kubeconfig}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
    ]


def kube_controller_manager(bin_dir: Path, layout: Layout, ports: Ports) -> list[str]:
    pki = layout.pki
    return [
        str(bin_dir / "kube-controller-manager"),
        *_component_auth(layout),
        f"--secure-port={ports.controller_manager}",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        "--controllers=*",
        "--use-service-account-credentials=false",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
        "--concurrent-gc-syncs=20",
        "--horizontal-pod-autoscaler-sync-period=5s",
        # Client rate limits as a busy production cluster sets them (the defaults, 20/s, would make
        # the controller-manager the bottleneck of a 1,000-RecModel apply, not the operator).
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--v=1",
    ]


def kube_scheduler(bin_dir: Path, layout: Layout, ports: Ports) -> list[str]:
    return [
        str(bin_dir / "kube-scheduler"),
        *_component_auth(layout),
        f"--secure-port={ports.scheduler}",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--v=1",
    ]


def kwok(bin_dir: Path, stages_files: list[Path], layout: Layout, ports: Ports) -> list[str]:
    return [
        str(bin_dir / "kwok"),
        f"--kubeconfig={layout.kubeconfig}",
        *(f"--config={path}" for path in stages_files),
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--cidr=10.244.0.0/16",
        "--node-ip=127.0.0.1",
        f"--server-address=127.0.0.1:{ports.kwok}",
    ]


def ingress_controller(layout: Layout, python: Path, nginx: Path, ports: Ports) -> list[str]:
    return [
        str(python),
        "-m",
        "devcluster.addons.ingress",
        f"--kubeconfig={layout.kubeconfig}",
        f"--nginx={nginx}",
        f"--run-dir={layout.ingress}",
        f"--port={ports.ingress}",
    ]
