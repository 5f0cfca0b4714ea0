"""A container's probes, run against its process as a kubelet runs them: httpGet and tcpSocket,
with the probe's period, timeout and thresholds."""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


def _port(value: Any, ports: dict[str, int]) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    if value not in ports:
        raise ValueError(f"named port {value!r} is not declared by the container")
    return ports[value]


def check(probe: Obj, address: str, ports: dict[str, int]) -> bool:
    """One attempt: HTTP 200-399 or an accepted TCP connection within timeoutSeconds."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            connection = http.client.HTTPConnection(address, _port(get["port"], ports), timeout=timeout)
            try:
                connection.request("GET", get.get("path", "/"), headers={"User-Agent": "devcluster-node-agent"})
                return 200 <= connection.getresponse().status < 400
            finally:
                connection.close()
        if "tcpSocket" in probe:
            with socket.create_connection((address, _port(probe["tcpSocket"]["port"], ports)), timeout=timeout):
                return True
    except (OSError, http.client.HTTPException, ValueError):
        return False
    return False  # exec and gRPC probes: not run here, so never pass


@dataclass
class Prober:
    """One probe of one container: due times and consecutive results."""

    probe: Obj
    passed: bool = False  # the current verdict
    successes: int = 0
    failures: int = 0
    due: float = field(default=0.0)

    def start(self, now: float) -> None:
        self.due = now + float(self.probe.get("initialDelaySeconds", 0))

    def tick(self, now: float, address: str, ports: dict[str, int]) -> bool | None:
        """Runs the probe if due; the new verdict when it changed, else None."""
        if now < self.due:
            return None
        self.due = now + float(self.probe.get("periodSeconds", 10))
        if check(self.probe, address, ports):
            self.successes, self.failures = self.successes + 1, 0
            if not self.passed and self.successes >= int(self.probe.get("successThreshold", 1)):
                self.passed = True
                return True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.passed and self.failures >= int(self.probe.get("failureThreshold", 3)):
                self.passed = False
                return False
            if not self.passed and self.failures >= int(self.probe.get("failureThreshold", 3)):
                return False
        return None
