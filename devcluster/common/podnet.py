"""The process nodes' pod network, on one machine without network namespaces.

Kubernetes refuses loopback addresses in EndpointSlices, so each pod on a process node gets a
pod IP from `POD_NETWORK` (10.245.0.0/16: node n owns 10.245.n.0/24), and its processes listen
on that address's *loopback twin*: the same last three bytes under 127.0.0.0/8
(10.245.1.7 -> 127.245.1.7). Linux answers every 127.x.y.z on `lo`, so each pod has an address
of its own and its container ports unchanged, and nothing listens beyond loopback. Whoever
routes to a pod (the ingress controller) dials the twin of the address the API shows.

Services work the same way, standing in for kube-proxy and cluster DNS: the ingress controller's
nginx listens on the twin of each Service's ClusterIP (10.96.3.4 -> 127.96.3.4) and proxies to
its ready pods, and the node agent resolves `<service>.<namespace>.svc[.cluster.local]` in a
container's args and environment to that twin.
"""

from __future__ import annotations

import ipaddress
import threading

POD_NETWORK = ipaddress.IPv4Network("10.245.0.0/16")
# Real nodes' pods (`devcluster.nodes.real`): real addresses on a bridge of this machine, node n
# owns 10.246.n.0/24. Nothing off this machine can be reached from them or sent to them.
REAL_POD_NETWORK = ipaddress.IPv4Network("10.246.0.0/16")
KWOK_POD_NETWORK = ipaddress.IPv4Network("10.244.0.0/16")  # KWOK's fake pods: nothing listens
SERVICE_NETWORK = ipaddress.IPv4Network("10.96.0.0/16")  # kube-apiserver's --service-cluster-ip-range
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def node_cidr(index: int) -> ipaddress.IPv4Network:
    """Node `index` (1-based) owns 10.245.<index>.0/24."""
    if not 1 <= index <= 255:
        raise ValueError(f"node index {index} is outside 1..255")
    return ipaddress.IPv4Network(f"10.245.{index}.0/24")


def real_node_cidr(index: int) -> ipaddress.IPv4Network:
    """Real node `index` (1-based) owns 10.246.<index>.0/24."""
    if not 1 <= index <= 255:
        raise ValueError(f"node index {index} is outside 1..255")
    return ipaddress.IPv4Network(f"10.246.{index}.0/24")


def dial_address(ip: str) -> str | None:
    """Where to send to a pod: a real node's pod at its own address, a process node's at its
    loopback twin; None for KWOK's pods (nothing listens there)."""
    try:
        if ipaddress.IPv4Address(ip) in REAL_POD_NETWORK:
            return ip
    except ValueError:
        return None
    return loopback_twin(ip)


def loopback_twin(ip: str) -> str | None:
    """Where a pod IP of a process node (or a Service's ClusterIP) listens; None for addresses
    of other nodes (KWOK's pods are not processes: there is nothing to dial)."""
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError:
        return None
    if address not in POD_NETWORK and address not in SERVICE_NETWORK:
        return None
    return str(ipaddress.IPv4Address(int(LOOPBACK.network_address) | (int(address) & 0x00FFFFFF)))


def prometheus_twin_relabel() -> tuple[str, str]:
    """The twin as a Prometheus relabelling over `<pod IP>;<port>`: its regex (matching only the
    pod network) and the replacement `<twin>:<port>`."""
    first, second = str(POD_NETWORK.network_address).split(".")[:2]
    return rf"{first}\.{second}\.(\d+)\.(\d+);(\d+)", f"127.{second}.$1.$2:$3"


def prometheus_real_relabel() -> tuple[str, str]:
    """A real node's pod as a Prometheus relabelling over `<pod IP>;<port>`: its regex (matching
    only the real nodes' pod network) and the replacement `<pod IP>:<port>`."""
    first, second = str(REAL_POD_NETWORK.network_address).split(".")[:2]
    return rf"({first}\.{second}\.\d+\.\d+);(\d+)", "$1:$2"


class Allocator:
    """Pod IPs of one node: .1 is the node's own address, pods get .2 to .254, freed ones reused."""

    def __init__(self, cidr: ipaddress.IPv4Network) -> None:
        self.cidr = cidr
        self._free = [str(h) for h in list(cidr.hosts())[1:]]
        self._lock = threading.Lock()

    @property
    def node_ip(self) -> str:
        return str(next(self.cidr.hosts()))

    def take(self) -> str:
        with self._lock:
            if not self._free:
                raise RuntimeError(f"no pod IP left in {self.cidr}")
            return self._free.pop(0)

    def give_back(self, ip: str) -> None:
        with self._lock:
            if ip not in self._free and ipaddress.IPv4Address(ip) in self.cidr:
                self._free.append(ip)
