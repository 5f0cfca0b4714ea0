"""The cluster's DNS: CoreDNS (built from the Go module proxy with the plugins it needs, see
`gomod/coredns`) as a process of this machine on the first real node's bridge address, behind
the `kube-dns` Service at 10.96.0.10 as on a kubeadm cluster; kube-proxy sends the Service's
traffic to it. Its kubernetes plugin reads Services and EndpointSlices from the API as
`system:coredns`, with kubeadm's role for it. No forwarding: names outside `cluster.local` are
answered by nobody here (SERVFAIL), since no resolver off this machine may be reached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CLUSTER_DOMAIN = "cluster.local"
USER = "system:coredns"
NAMESPACE = "kube-system"
SERVICE = "kube-dns"
MANAGED_BY = "devcluster.recmodel.dev"  # the EndpointSlice is ours, not the endpoint controller's


def corefile(listen_ip: str, kubeconfig: Path, health_port: int, ready_port: int) -> str:
    return f""".:53 {{
    bind {listen_ip}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
"""


def argv(binary: Path, corefile_path: Path) -> list[str]:
    return [str(binary), "-conf", str(corefile_path)]


def objects(service_ip: str, listen_ip: str) -> list[dict[str, Any]]:
    """kubeadm's RBAC for CoreDNS, and the `kube-dns` Service with an EndpointSlice of ours
    pointing at the process (no selector: it is not a pod)."""
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": USER},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": USER},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": {"k8s-app": SERVICE}},
            "spec": {"clusterIP": service_ip, "ports": [{**p, "targetPort": 53} for p in ports]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{SERVICE}-coredns",
                "namespace": NAMESPACE,
                "labels": {"kubernetes.io/service-name": SERVICE, "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [listen_ip], "conditions": {"ready": True}}],
            "ports": ports,
        },
    ]
