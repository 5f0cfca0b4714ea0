"""Pinned versions of the components, and where their builds are cached."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GOMOD_DIR = Path(__file__).resolve().parent / "gomod"


@dataclass(frozen=True)
class Component:
    """One binary: the wrapper module that builds it and the Go packages it comes from."""

    module_dir: str
    packages: tuple[str, ...]  # each builds the binary named after its last path element
    version: str
    version_ldflags: tuple[str, ...] = ()
    binary_names: tuple[str, ...] = ()
    build_tags: tuple[str, ...] = ()
    cgo_packages: tuple[str, ...] = ()  # Debian's -dev packages a cgo build links against

    def binaries(self) -> dict[str, str]:
        """Binary name -> Go package."""
        names = self.binary_names or tuple(p.rsplit("/", 1)[-1] for p in self.packages)
        return dict(zip(names, self.packages, strict=True))


KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
KSERVE_VERSION = "v0.20.0"
KSERVE_MODULE = "github.com/kserve/kserve"
VEGETA_VERSION = "v12.13.0"
PROMETHEUS_VERSION = "v0.316.0"
KEDA_VERSION = "v2.21.0"
KEDA_MODULE = "github.com/kedacore/keda/v2"
CRANE_VERSION = "v0.22.1"
CONTAINERD_VERSION = "v2.4.2"
CONTAINERD_MODULE = "github.com/containerd/containerd/v2"
RUNC_VERSION = "v1.5.3"  # Debian's runc 1.1 cannot run the runtime-spec 1.3 that containerd 2.4 writes


def _kubernetes_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return (
        f"-X {pkg}.gitVersion={version}",
        f"-X {pkg}.gitMajor={major}",
        f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitTreeState=clean",
        f"-X {pkg}.buildDate=2026-01-01T00:00:00Z",
    )


COMPONENTS: dict[str, Component] = {
    "kubernetes": Component(
        module_dir="kubernetes",
        packages=(
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "k8s.io/kubernetes/cmd/kubectl",
            "k8s.io/kubernetes/cmd/kubelet",  # the real nodes'
            "k8s.io/kubernetes/cmd/kube-proxy",
        ),
        version=KUBERNETES_VERSION,
        version_ldflags=_kubernetes_ldflags(KUBERNETES_VERSION),
    ),
    "etcd": Component(
        module_dir="etcd",
        packages=("go.etcd.io/etcd/server/v3",),
        binary_names=("etcd",),
        version=ETCD_VERSION,
    ),
    "kwok": Component(
        module_dir="kwok",
        packages=("sigs.k8s.io/kwok/cmd/kwok",),
        version=KWOK_VERSION,
    ),
    "helm": Component(
        module_dir="helm",
        packages=("helm.sh/helm/v3/cmd/helm",),
        version=HELM_VERSION,
        version_ldflags=(f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",),
    ),
}

COMPONENTS["kserve"] = Component(
    module_dir="kserve",
    packages=(f"{KSERVE_MODULE}/cmd/manager",),
    binary_names=(f"kserve-manager-{KSERVE_VERSION}",),
    version=KSERVE_VERSION,
)

COMPONENTS["vegeta"] = Component(
    module_dir="vegeta",
    packages=("github.com/tsenart/vegeta/v12",),
    binary_names=(f"vegeta-{VEGETA_VERSION}",),
    version=VEGETA_VERSION,
)

COMPONENTS["prometheus"] = Component(
    module_dir="prometheus",
    packages=("github.com/prometheus/prometheus/cmd/promtool", "github.com/prometheus/prometheus/cmd/prometheus"),
    binary_names=(f"promtool-{PROMETHEUS_VERSION}", f"prometheus-{PROMETHEUS_VERSION}"),
    version=PROMETHEUS_VERSION,
)

COMPONENTS["keda"] = Component(
    module_dir="keda",
    packages=(f"{KEDA_MODULE}/cmd/operator", f"{KEDA_MODULE}/cmd/adapter"),
    binary_names=(f"keda-operator-{KEDA_VERSION}", f"keda-adapter-{KEDA_VERSION}"),
    version=KEDA_VERSION,
    version_ldflags=(f"-X {KEDA_MODULE}/version.Version={KEDA_VERSION}",),
)

COMPONENTS["crane"] = Component(
    module_dir="crane",
    packages=("github.com/google/go-containerregistry/cmd/crane",),
    binary_names=(f"crane-{CRANE_VERSION}",),
    version=CRANE_VERSION,
)

COMPONENTS["containerd"] = Component(
    module_dir="containerd",
    packages=(f"{CONTAINERD_MODULE}/cmd/containerd", f"{CONTAINERD_MODULE}/cmd/containerd-shim-runc-v2"),
    binary_names=(f"containerd-{CONTAINERD_VERSION}", f"containerd-shim-runc-v2-{CONTAINERD_VERSION}"),
    version=CONTAINERD_VERSION,
    version_ldflags=(f"-X {CONTAINERD_MODULE}/version.Version={CONTAINERD_VERSION}",),
)

COMPONENTS["runc"] = Component(
    module_dir="runc",
    packages=("github.com/opencontainers/runc",),
    binary_names=(f"runc-{RUNC_VERSION}",),
    version=RUNC_VERSION,
    version_ldflags=(f"-X main.version={RUNC_VERSION.lstrip('v')}",),
    build_tags=("seccomp",),  # pods' RuntimeDefault seccomp profile, through libseccomp
    cgo_packages=("libseccomp-dev", "pkg-config"),
)


def _source_tag(path: Path) -> str:
    """A binary of ours is named by its source's hash, so an edit builds a new one."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


# Our fake GPUs' device plugin (gomod/kubernetes/fakegpu), built in the Kubernetes wrapper
# module against the kubelet's own device-plugin API.
FAKE_GPU_PLUGIN = f"fakegpu-{_source_tag(GOMOD_DIR / 'kubernetes' / 'fakegpu' / 'main.go')}"
COMPONENTS["fakegpu"] = Component(
    module_dir="kubernetes",
    packages=("recmodel.dev/devcluster/kubernetes/fakegpu",),
    binary_names=(FAKE_GPU_PLUGIN,),
    version=KUBERNETES_VERSION,
)

COREDNS_VERSION = "v1.15.0"
# CoreDNS with the plugins the cluster's DNS needs (gomod/coredns/main.go picks them).
COREDNS = f"coredns-{COREDNS_VERSION}-{_source_tag(GOMOD_DIR / 'coredns' / 'main.go')}"
COMPONENTS["coredns"] = Component(
    module_dir="coredns",
    packages=("recmodel.dev/devcluster/coredns",),
    binary_names=(COREDNS,),
    version=COREDNS_VERSION,
)

BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "kube-proxy",
    "etcd",
    "kwok",
    "helm",
    f"kserve-manager-{KSERVE_VERSION}",
    f"vegeta-{VEGETA_VERSION}",
    f"promtool-{PROMETHEUS_VERSION}",
    f"prometheus-{PROMETHEUS_VERSION}",
    f"keda-operator-{KEDA_VERSION}",
    f"keda-adapter-{KEDA_VERSION}",
    f"crane-{CRANE_VERSION}",
    f"containerd-{CONTAINERD_VERSION}",
    f"containerd-shim-runc-v2-{CONTAINERD_VERSION}",
    f"runc-{RUNC_VERSION}",
    FAKE_GPU_PLUGIN,
    COREDNS,
)


def cache_root() -> Path:
    """Everything built here lives outside the repository, under one folder (`RECMODEL_CACHE`)."""
    return Path(os.environ.get("RECMODEL_CACHE", Path.home() / ".cache" / "recmodel"))


def cache_dir() -> Path:
    """Binaries live outside the repository, one folder per set of versions."""
    base = cache_root()
    tag = f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}-kwok-{KWOK_VERSION}-helm-{HELM_VERSION}"
    return base / tag


def bin_dir() -> Path:
    """Binaries are named by version inside (kserve-manager is built into the same folder)."""
    return cache_dir() / "bin"
