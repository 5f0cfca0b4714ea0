"""Free loopback ports for servers the tests start.

Chosen below the kernel's ephemeral range: a port the kernel hands out with `bind(0)` is also
what it hands out as the source port of outgoing connections, so between choosing it and the
server binding it, any client connection (to the API server, KServe, a load generator) could
take it ("Address already in use", seen in CI). Below that range only listeners bind, and
each candidate is checked free before it is returned.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20000
_taken: set[int] = set()  # handed out by this process already


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    high = max(LOWEST + 1000, _ephemeral_start())
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(LOWEST, high)
        if port not in _taken and _bindable(port):
            _taken.add(port)
            ports.append(port)
    return ports


def is_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
