"""pytest helpers: a running control plane for the session, and throwaway namespaces."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devcluster.common.processes import Layout
from devcluster.controlplane import cluster


@dataclass(frozen=True)
class Tools:
    kubeconfig: Path
    kubectl: Path
    helm: Path
    prometheus_url: str | None = None
    prometheus_targets: Path | None = None
    ingress_url: str | None = None  # the ingress controller: send requests here with the Ingress's Host

    @classmethod
    def of(cls, info: cluster.ClusterInfo) -> Tools:
        return cls(
            kubeconfig=info.kubeconfig,
            kubectl=info.bin_dir / "kubectl",
            helm=info.bin_dir / "helm",
            prometheus_url=info.prometheus_url,
            prometheus_targets=info.prometheus_targets,
            ingress_url=info.ingress_url,
        )

    def kubectl_run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args], stdin, check, timeout=120)

    def helm_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([str(self.helm), f"--kubeconfig={self.kubeconfig}", *args], None, check, timeout=300)


def _run(argv: list[str], stdin: str | None, check: bool, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:1] + argv[2:])} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@contextmanager
def running_cluster() -> Iterator[Tools]:
    """Uses a cluster that is already up (and leaves it up), or starts one and stops it after."""
    started_here = not cluster.is_running()
    info = cluster.up()
    try:
        yield Tools.of(info)
    finally:
        if started_here:
            cluster.down()


@contextmanager
def bare_cluster(root: Path) -> Iterator[Tools]:
    """A second, throwaway cluster without add-ons (KServe, KEDA, Prometheus): what the
    standalone backend is for."""
    layout = Layout(root)
    info = cluster.up(layout, with_addons=False)
    try:
        yield Tools.of(info)
    finally:
        cluster.down(layout)


@contextmanager
def temporary_namespace(tools: Tools, prefix: str = "t") -> Iterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    tools.kubectl_run("create", "namespace", name)
    try:
        yield name
    finally:
        tools.kubectl_run("delete", "namespace", name, "--wait=false", check=False)
