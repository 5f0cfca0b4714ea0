"""The cluster's address ranges on this machine.

Real nodes' pods (`devcluster.nodes.real`) get real addresses on a bridge of this machine: node n
owns 10.246.n.0/24, the bridge holds .1. Services get ClusterIPs from 10.96.0.0/16, which
kube-proxy (nftables) translates to those pods. KWOK's pods get addresses from 10.244.0.0/16 where
nothing listens. Nothing off this machine can be reached in any of these ranges
(`devcluster.common.routes`).
"""

from __future__ import annotations

import ipaddress

REAL_POD_NETWORK = ipaddress.IPv4Network("10.246.0.0/16")
KWOK_POD_NETWORK = ipaddress.IPv4Network("10.244.0.0/16")  # KWOK's fake pods: nothing listens
SERVICE_NETWORK = ipaddress.IPv4Network("10.96.0.0/16")  # kube-apiserver's --service-cluster-ip-range


def real_node_cidr(index: int) -> ipaddress.IPv4Network:
    """Real node `index` (1-based) owns 10.246.<index>.0/24."""
    if not 1 <= index <= 255:
        raise ValueError(f"node index {index} is outside 1..255")
    return ipaddress.IPv4Network(f"10.246.{index}.0/24")


def on_real_node(ip: str) -> bool:
    """Whether `ip` is a real node's pod (something listens there); KWOK's pods are not."""
    try:
        return ipaddress.IPv4Address(ip) in REAL_POD_NETWORK
    except ValueError:
        return False


def prometheus_real_relabel() -> tuple[str, str]:
    """A real node's pod as a Prometheus relabelling over `<pod IP>;<port>`: its regex (matching
    only the real nodes' pod network) and the replacement `<pod IP>:<port>`."""
    first, second = str(REAL_POD_NETWORK.network_address).split(".")[:2]
    return rf"({first}\.{second}\.\d+\.\d+);(\d+)", "$1:$2"
