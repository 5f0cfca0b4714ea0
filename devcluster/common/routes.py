"""Blackhole routes for the cluster's pod and Service ranges, so that no packet addressed to them
can leave this machine (the default route goes off-machine). Nothing here dials those addresses
by design (process nodes' pods listen on loopback twins, `podnet`; a real node's pods on its
bridge, whose own route is more specific), and these routes make sure of it: a client that tried
would get "network unreachable" at once. Needs root, as the devcluster's machines
give; `up` refuses to start without them."""

from __future__ import annotations

import ipaddress
import subprocess

from devcluster.common.podnet import KWOK_POD_NETWORK, POD_NETWORK, REAL_POD_NETWORK, SERVICE_NETWORK

# A real node's own /24 is routed to its bridge (more specific than these): its pods are here.
RANGES: tuple[ipaddress.IPv4Network, ...] = (POD_NETWORK, REAL_POD_NETWORK, KWOK_POD_NETWORK, SERVICE_NETWORK)


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
