"""Blackhole routes for the cluster's pod and Service ranges, so that no packet addressed to them
can leave this machine (the default route goes off-machine). Nothing here dials those addresses
except a real node's pods on its bridge, whose own route is more specific, and Services, which
kube-proxy translates to those pods; these routes make sure of it: a client that tried
would get "network unreachable" at once. Needs root, as the devcluster's machines
give; `up` refuses to start without them."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

from devcluster.build import debian
from devcluster.common.podnet import KWOK_POD_NETWORK, REAL_POD_NETWORK, SERVICE_NETWORK

# A real node's own /24 is routed to its bridge (more specific than these): its pods are here.
RANGES: tuple[ipaddress.IPv4Network, ...] = (REAL_POD_NETWORK, KWOK_POD_NETWORK, SERVICE_NETWORK)


def blackholed() -> set[ipaddress.IPv4Network]:
    """The ranges the kernel's main table drops (`ip route show type blackhole`)."""
    out = subprocess.run(["ip", "-4", "route", "show", "type", "blackhole"], capture_output=True, text=True, check=True)
    found = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "blackhole":
            found.add(ipaddress.IPv4Network(parts[1]))
    return found


def ensure_blackhole_routes() -> None:
    """Idempotent; raises with the reason when a route cannot be added."""
    for network in RANGES:
        if network in blackholed():
            continue
        result = subprocess.run(
            ["ip", "route", "replace", "blackhole", str(network)], check=False, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"cannot add a blackhole route for {network} ({result.stderr.strip()}): the devcluster "
                "needs it so that no packet to its pod or Service ranges leaves this machine (run as root)"
            )


# A table of our own, the guard: (1) the real nodes' pods reach each other and the Services'
# endpoints through this machine, which forwards between the nodes' bridges; whatever it would
# forward out of any other interface is dropped, so forwarding never sends a packet off the
# machine; (2) the API server listens on every address (pods reach it through the `kubernetes`
# Service at the first real node's address), but only loopback and the bridges may connect.
GUARD_TABLE = "recmodel-devcluster"
BRIDGE_PREFIX = "rmcni"  # real node n's bridge is rmcni<n>


API_SERVERS = "api_servers"  # the guard's set of API server ports: every cluster on the machine adds its own


def guard() -> str:
    """nft's script for the guard (pure); `ensure_guard` adds each API server's port to its set."""
    return (
        f"table inet {GUARD_TABLE} {{\n"
        f"  set {API_SERVERS} {{ type inet_service; }}\n"
        "  chain forward {\n"
        "    type filter hook forward priority -10; policy accept;\n"
        f'    oifname != "{BRIDGE_PREFIX}*" counter drop\n'
        "  }\n"
        "  chain input {\n"
        "    type filter hook input priority -10; policy accept;\n"
        f'    tcp dport @{API_SERVERS} iifname != "lo" iifname != "{BRIDGE_PREFIX}*" counter drop\n'
        "  }\n"
        "}\n"
    )


def _nft(*args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *args], input=script, text=True, capture_output=True, check=False)


def ensure_guard(api_server_port: int) -> None:
    """The guard, and `api_server_port` in its set. Idempotent, and additive: a second cluster
    on the machine (the tests' bare one) adds its port without dropping the first one's."""
    debian.install(("nftables",))
    add = ("add", "element", "inet", GUARD_TABLE, API_SERVERS, f"{{ {api_server_port} }}")
    if _nft(*add).returncode == 0:
        return
    _nft("delete", "table", "inet", GUARD_TABLE)  # absent, or an older shape of it
    result = _nft("-f", "-", script=guard())
    if result.returncode == 0:
        result = _nft(*add)
    if result.returncode != 0:
        raise RuntimeError(f"cannot install the devcluster's nftables guard: {result.stderr.strip()}")


def enable_forwarding() -> None:
    """The kernel's IPv4 forwarding, for the real nodes; only behind the guard."""
    if _nft("list", "table", "inet", GUARD_TABLE).returncode != 0:
        raise RuntimeError("refusing to forward without the devcluster's guard (routes.ensure_guard)")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
