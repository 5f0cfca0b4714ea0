"""KEDA in the local control plane: its operator and its metrics API server, built from the Go
module proxy (see `versions.py`) and run as processes on 127.0.0.1.

The operator reconciles ScaledObjects into HPAs and answers metric queries (Prometheus here)
over mutual TLS gRPC; the metrics API server serves `external.metrics.k8s.io` through the API
aggregation layer, which the controller-manager's HPA controller reads. Its APIService points
at a Service of type ExternalName `localhost`: Kubernetes refuses loopback addresses in
Endpoints and EndpointSlices, and the aggregator resolves an ExternalName Service to its host
name instead. The CRDs come from the same module version's `config/crd/bases`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from devcluster.build.versions import KEDA_MODULE, KEDA_VERSION

NAMESPACE = "keda"
API_SERVICE = "v1beta1.external.metrics.k8s.io"
METRICS_SERVICE = "keda-metrics-apiserver"
OPERATOR = f"keda-operator-{KEDA_VERSION}"
ADAPTER = f"keda-adapter-{KEDA_VERSION}"


def module_dir() -> Path:
    from devcluster.build.go import module_source

    return module_source(KEDA_MODULE, KEDA_VERSION, "keda")


def crds() -> list[dict[str, Any]]:
    """ScaledObject, ScaledJob, (Cluster)TriggerAuthentication and the eventing CRDs: the
    operator watches all of them."""
    root = module_dir() / "config" / "crd" / "bases"
    return [d for path in sorted(root.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}


SERVICE_DNS_NAME = f"{METRICS_SERVICE}.{NAMESPACE}.svc"  # what the aggregator checks the cert for


def metrics_service(port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": METRICS_SERVICE, "namespace": NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"name": "https", "port": port}]},
    }


def api_service(port: int, ca_bundle: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": API_SERVICE},
        "spec": {
            "service": {"name": METRICS_SERVICE, "namespace": NAMESPACE, "port": port},
            "group": "external.metrics.k8s.io",
            "version": "v1beta1",
            "caBundle": ca_bundle,
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }


def environment(kubeconfig: Path) -> dict[str, str]:
    return {
        "KUBECONFIG": str(kubeconfig),
        "POD_NAMESPACE": NAMESPACE,
        "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
        "WATCH_NAMESPACE": "",
    }


def operator_argv(binary: Path, cert_dir: Path, metrics_port: int, probe_port: int, grpc_port: int) -> list[str]:
    return [
        str(binary),
        f"--metrics-bind-address=127.0.0.1:{metrics_port}",
        f"--health-probe-bind-address=127.0.0.1:{probe_port}",
        f"--metrics-service-bind-address=127.0.0.1:{grpc_port}",
        f"--cert-dir={cert_dir}",  # ca.crt, tls.crt, tls.key for the gRPC link (devcluster's CA)
        "--enable-cert-rotation=false",
        "--leader-elect=false",
        f"--ca-dir={cert_dir}",
        "--zap-log-level=info",
    ]


def adapter_argv(
    binary: Path, cert_dir: Path, kubeconfig: Path, secure_port: int, grpc_port: int, metrics_port: int
) -> list[str]:
    return [
        str(binary),
        f"--secure-port={secure_port}",
        "--bind-address=127.0.0.1",
        f"--client-ca-file={cert_dir / 'ca.crt'}",
        f"--tls-cert-file={cert_dir / 'tls.crt'}",
        f"--tls-private-key-file={cert_dir / 'tls.key'}",
        f"--cert-dir={cert_dir}",
        f"--lister-kubeconfig={kubeconfig}",  # the custom-metrics-apiserver library's own client
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--metrics-service-address=localhost:{grpc_port}",
        f"--port={metrics_port}",
        "--zap-log-level=info",
    ]
